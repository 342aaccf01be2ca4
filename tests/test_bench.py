"""A short run of `make bench`, so the benchmark cannot rot: it must measure every path
and print its table. Its figures are not judged here (see docs/performance.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_bench_smoke(tmp_path: Path) -> None:
    output = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "bench.py"), "--smoke", "--output", str(output)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    figures = json.loads(output.read_text())
    assert set(figures["mail"]) == {
        "native LDAP auth_bind",
        "shell checkpassword",
        "empty Python checkpassword",
        "twostep checkpassword",
        "twostep Lua passdb",
        "twostep PAM passdb",
    }
    assert all(
        row["c1"]["rate"] > 0 and row["imap"]["rate"] > 0 for row in figures["mail"].values()
    )
    assert figures["daemon"]["directory operations per login"]["search"] > 0
    assert "| goal | measured | value | met |" in result.stdout
