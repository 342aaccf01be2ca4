"""google-authenticator files: what is carried, what is said, what is refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from support.tools import google_authenticator

from pam_twostep.core.candidate import Candidate, Problem
from pam_twostep.migrate import google

SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
GOOD = f"""{SECRET}
" RATE_LIMIT 3 30 1800000000
" WINDOW_SIZE 17
" DISALLOW_REUSE 60000000 60000003 60000001
" TOTP_AUTH
" STEP_SIZE 60
12345678
87654321
"""


def test_everything_carried_or_said() -> None:
    candidate = google.parse(GOOD.encode(), "f", "alice")
    assert candidate.match == "alice" and candidate.secret_base32 == SECRET
    assert candidate.params.period == 60 and candidate.params.digits == 6
    assert candidate.last_step == 60000003
    assert candidate.window == 2
    assert candidate.backup_codes == ("12345678", "87654321")
    assert any("RATE_LIMIT 3 30 not carried" in n for n in candidate.notes)
    assert any("WINDOW_SIZE 17 (±8 steps) narrowed to ±2" in n for n in candidate.notes)
    assert SECRET not in repr(candidate) and "12345678" not in repr(candidate)


def test_the_defaults() -> None:
    candidate = google.parse(f'{SECRET}\n" TOTP_AUTH\n'.encode(), "f", "bob")
    assert candidate.params.period == 30 and candidate.window is None
    assert candidate.last_step is None and candidate.backup_codes == ()
    assert any("accepts each code once" in n for n in candidate.notes)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (b"", "first line is not a base32 secret"),
        (b"JBSWY3DP", "no TOTP_AUTH"),  # truncated after the first line
        (b'JBSWY3DP\n" TOTP_AUTH\n', "40 bits"),  # a secret far too short
        (f'{SECRET}\n" HOTP_COUNTER 1\n'.encode(), "counter-based"),
        (f'{SECRET}\n" TOTP_AUTH\n" OTP_DISABLED\n'.encode(), "OTP_DISABLED"),
        (f'{SECRET}\n" TOTP_AUTH\n" AUTH_CACHE 3\n'.encode(), "unknown option AUTH_CACHE"),
        (f"{SECRET}\n12345678\n".encode(), "no TOTP_AUTH"),
        (f'{SECRET}\n" TOTP_AUTH\n" STEP_SIZE 5\n'.encode(), "STEP_SIZE"),
        (f'{SECRET}\n" TOTP_AUTH\n" WINDOW_SIZE x\n'.encode(), "WINDOW_SIZE"),
        (f'{SECRET}\n" TOTP_AUTH\n" TOTP_AUTH\n'.encode(), "given twice"),
        (f'{SECRET}\n" TOTP_AUTH\n1234\n'.encode(), "line 3"),
        (f'{SECRET}\n" TOTP_AUTH\n12345678\n12345678\n'.encode(), "listed twice"),
        (b"\x00\xff\xfe garbage", "not ASCII"),
        (b"A" * 5000, "larger than 4096"),
        (f'{SECRET}\n" DISALLOW_REUSE -5\n" TOTP_AUTH\n'.encode(), "DISALLOW_REUSE"),
    ],
)
def test_refused_with_a_reason(text: bytes, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        google.parse(text, "f", "alice")


def write(path: Path, text: str, mode: int = 0o400) -> Path:
    path.write_text(text)
    os.chmod(path, mode)
    return path


def test_files_that_cannot_be_trusted(tmp_path: Path) -> None:
    home = tmp_path / "alice"
    home.mkdir()
    good = write(home / ".google_authenticator", GOOD)
    assert isinstance(google.read(good, "alice"), Candidate)
    writable = write(tmp_path / "w", GOOD, 0o622)
    assert "writable by others" in _why(google.read(writable, "alice"))
    link = tmp_path / "link"
    link.symlink_to(good)
    assert "cannot open" in _why(google.read(link, "alice"))
    assert "not a regular file" in _why(google.read(tmp_path, "alice"))
    assert "cannot open" in _why(google.read(tmp_path / "missing", "alice"))
    readable = write(tmp_path / "r", GOOD, 0o644)
    candidate = google.read(readable, "alice")
    assert isinstance(candidate, Candidate)
    assert any("readable by others" in n for n in candidate.notes)


def test_user_from_path_wants_the_owner(tmp_path: Path) -> None:
    assert google.user_from_path(Path("/home/alice/.google_authenticator")) == "alice"
    assert google.user_from_path(Path("/srv/ga/bob")) == "bob"
    home = tmp_path / "nobody"
    home.mkdir()
    path = write(home / ".google_authenticator", GOOD)
    os.chown(path, 0, 0)
    assert isinstance(google.read(path), Candidate)  # root's: fine
    os.chown(path, 65534, 65534)  # nobody's own file
    assert isinstance(google.read(path), Candidate)
    os.chown(path, 1, 1)  # daemon's, in nobody's directory
    assert "owned by daemon, not by nobody" in _why(google.read(path))


def test_reads_what_the_real_command_writes(tmp_path: Path) -> None:
    path = google_authenticator(tmp_path / "ga", "-w", "5", "-S", "30")
    candidate = google.read(path, "alice")
    assert isinstance(candidate, Candidate)
    assert len(candidate.backup_codes) == 5 and candidate.window == 2
    assert len(candidate.secret) >= 10


def _why(item: Candidate | Problem) -> str:
    assert isinstance(item, Problem), item
    return item.why
