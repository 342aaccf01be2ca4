"""`make demo` plays the user guide's story on a fresh lab and succeeds; `make demo-stop`
stops it."""

from __future__ import annotations

import subprocess
from pathlib import Path

from support.stack import world_readable_directory

REPO = Path(__file__).resolve().parents[1]


def test_make_demo() -> None:
    directory = world_readable_directory("twostep-demo-") / "demo"
    demo = subprocess.run(
        ["make", "-s", "-C", str(REPO), "demo", f"DEMO_DIR={directory}"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    try:
        assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
        out = demo.stdout
        for line in (
            "Or type the key:",
            "backup_codes",
            "pamtester: successfully authenticated",
            "pamtester: Authentication failure",
            "IMAP LOGIN alice ****** -> OK",
            "-> refused",
            "SMTP AUTH PLAIN alice ****** -> 235",
            "asked for a code: True, inbox: True",
            "webmail sessions: 1",
            "make demo-stop",
        ):
            assert line in out, line
    finally:
        stop = subprocess.run(
            ["make", "-s", "-C", str(REPO), "demo-stop", f"DEMO_DIR={directory}"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert stop.returncode == 0 and "stopped" in stop.stdout
    assert "php-fpm" in stop.stdout and "webmail-nginx" in stop.stdout
