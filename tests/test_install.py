"""`make install` stages every part where the README says, and the result runs."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_make_install_into_a_staging_directory(tmp_path: Path) -> None:
    stage = tmp_path / "stage"
    subprocess.run(
        ["make", "-s", "-C", str(REPO), "install", f"DESTDIR={stage}"],
        check=True,
        capture_output=True,
    )
    local = stage / "usr/local"
    assert (local / "sbin/twostepd").readlink() == Path("/usr/local/lib/twostep/venv/bin/twostepd")
    assert (local / "bin/twostep").readlink() == Path("/usr/local/lib/twostep/venv/bin/twostep")
    for path in (
        "lib/twostep/client/twostep-checkpassword",
        "lib/twostep/client/pam_twostep/__pycache__",
        "share/twostep/twostep-passdb.lua",
        "share/doc/twostep/README.md",
        "share/doc/twostep/ldap_schema/twostep.ldif",
    ):
        assert (local / path).exists(), path
    assert (stage / "etc/twostep/twostep.yaml").exists()
    unit = (stage / "lib/systemd/system/twostepd.service").read_text()
    assert "ExecStart=/usr/local/sbin/twostepd" in unit
    portal = (stage / "lib/systemd/system/twostep-portal.service").read_text()
    assert "ExecStart=/usr/local/bin/twostep portal" in portal and "User=twostep-portal" in portal
    help_text = subprocess.run(
        [str(local / "lib/twostep/venv/bin/twostepd"), "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "--check" in help_text
