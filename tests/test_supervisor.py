"""The supervisor forks serving processes and gives up, with their exit code, when they
keep dying at start-up (a configuration that cannot work must not become a fork loop).

Each case runs in a fresh interpreter, single-threaded as twostepd is when it forks:
forking pytest's own (threaded) process could deadlock a child on a lock held by
another thread."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

_SCRIPT = """
import sys
from pam_twostep.core.errors import ConfigError
from pam_twostep.supervisor import Supervisor

def serve():
    kind = sys.argv[1]
    if kind == "config-error":
        raise ConfigError("no such group")
    if kind == "exception":
        raise RuntimeError("a bug")
    return int(kind)

sys.exit(Supervisor(serve, 2).run())
"""


@pytest.mark.parametrize(
    ("kind", "code"),
    [
        ("78", 78),
        ("config-error", 78),
        ("exception", 70),
        ("0", 70),  # a serving process that stops by itself is a fault too
    ],
)
def test_processes_that_keep_dying_end_the_supervisor(kind: str, code: int) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, kind],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == code, done.stderr[-2000:]
    assert "keep dying; giving up" in done.stderr
