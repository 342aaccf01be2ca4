"""The other systems' own tools, run the way an administrator would."""

from __future__ import annotations

import subprocess
from pathlib import Path

__all__ = ["google_authenticator"]


def google_authenticator(path: Path, *options: str) -> Path:
    """A secret file made by google-authenticator itself, non-interactively: time-based,
    no reuse, rate limit 3 per 30 s, five scratch codes, and ``options`` on top."""
    subprocess.run(
        [
            "google-authenticator",
            "-t",
            "-d",
            "-f",
            "-q",
            "-C",
            "-Q",
            "NONE",
            "-r",
            "3",
            "-R",
            "30",
            "-e",
            "5",
            *options,
            "-s",
            str(path),
        ],
        check=True,
        stdin=subprocess.DEVNULL,
        capture_output=True,
    )
    return path
