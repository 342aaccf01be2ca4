"""Each fuzz target runs briefly on every `make test`, so none can rot.

The long runs (100,000 inputs and more per target) are `make fuzz`; their figures are
recorded in docs/security.md.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

RUNNER = Path(__file__).resolve().parent / "fuzz" / "run.py"


@pytest.mark.parametrize("target", ["checkpassword", "protocol", "config", "records"])
def test_fuzz_target_finds_nothing_in_a_short_run(target: str) -> None:
    result = subprocess.run(
        [sys.executable, str(RUNNER), target, "--runs", "3000"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert f"{target}: 3000 inputs" in result.stdout
