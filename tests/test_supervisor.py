"""The supervisor forks serving processes and gives up, with their exit code, when they
keep dying at start-up (a configuration that cannot work must not become a fork loop).

Each case runs in a fresh interpreter, single-threaded as twostepd is when it forks:
forking pytest's own (threaded) process could deadlock a child on a lock held by
another thread."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

_SCRIPT = """
import sys
import time
START = time.monotonic()
from pam_twostep.core.errors import ConfigError
from pam_twostep.supervisor import Supervisor

def serve():
    kind = sys.argv[1]
    if kind == "config-error":
        raise ConfigError("no such group")
    if kind == "exception":
        raise RuntimeError("a bug")
    if kind == "later":  # the first ones serve a while; then none can start
        if time.monotonic() - START < 0.5:
            time.sleep(1)
        raise RuntimeError("a bug")
    return int(kind)

settle = float(sys.argv[2]) if len(sys.argv) > 2 else 10.0
count = int(sys.argv[3]) if len(sys.argv) > 3 else 2
sys.exit(Supervisor(serve, count, settle=settle).run())
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


def test_processes_that_keep_dying_later_are_replaced_slower_and_slower() -> None:
    """Review of issue 22: past the start-up window the wait went back to nothing, and a
    replacement that could not start was replaced in a tight loop, a traceback each."""
    process = subprocess.Popen(
        [sys.executable, "-c", _SCRIPT, "later", "0.3"],
        cwd=REPO,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(4)
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=20)
    assert "giving up" not in stderr  # not at start-up: the others may be serving
    # from 1 s on, 0.1 + 0.2 + ... s: about 7 deaths in 4 s (a tight loop gave hundreds)
    assert 3 <= stderr.count("starting another") <= 15, stderr[-2000:]
    assert process.returncode is not None


def test_many_processes_that_keep_dying_end_the_supervisor_too() -> None:
    """Review of issue 22: with five processes or more the waits between replacements
    used up the start-up window before 3 x processes deaths, so a configuration that
    cannot work never ended the daemon; the window counts the processes' time only."""
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, "config-error", "10", "5"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 78, done.stderr[-2000:]
    assert "keep dying; giving up" in done.stderr
