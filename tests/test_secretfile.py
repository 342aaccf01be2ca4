"""Secret files that others can read are refused, with the file and the fix named."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pam_twostep.core.errors import ConfigError
from pam_twostep.secretfile import read_secret_file


def write(path: Path, data: bytes, mode: int) -> Path:
    path.write_bytes(data)
    os.chmod(path, mode)
    return path


@pytest.mark.parametrize("mode", [0o600, 0o400, 0o640, 0o440])
def test_private_files_are_read(tmp_path: Path, mode: int) -> None:
    assert read_secret_file(write(tmp_path / "s", b" pw \n", mode), "x") == "pw"


@pytest.mark.parametrize(
    ("mode", "message"),
    [(0o604, "everyone"), (0o602, "everyone"), (0o601, "everyone"), (0o660, "group")],
)
def test_unsafe_modes_are_refused(tmp_path: Path, mode: int, message: str) -> None:
    path = write(tmp_path / "s", b"pw", mode)
    with pytest.raises(ConfigError, match=message) as caught:
        read_secret_file(path, "ldap.bind_password_file")
    assert "ldap.bind_password_file" in str(caught.value)
    assert str(path) in str(caught.value)
    assert "chmod" in str(caught.value)
    assert "pw" not in str(caught.value).replace("password", "")


def test_symlinks_are_refused(tmp_path: Path) -> None:
    target = write(tmp_path / "real", b"pw", 0o600)
    (tmp_path / "link").symlink_to(target)
    with pytest.raises(ConfigError, match="cannot open"):
        read_secret_file(tmp_path / "link", "x")


@pytest.mark.parametrize(
    ("data", "message"),
    [(b"", "empty"), (b" \n", "empty"), (b"\xff\xfe", "UTF-8"), (b"x" * 5000, "larger")],
)
def test_bad_content(tmp_path: Path, data: bytes, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        read_secret_file(write(tmp_path / "s", data, 0o600), "x")


def test_missing_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot open"):
        read_secret_file(tmp_path / "missing", "x")
    (tmp_path / "d").mkdir(mode=0o700)
    with pytest.raises(ConfigError):
        read_secret_file(tmp_path / "d", "x")
