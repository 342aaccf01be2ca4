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


def test_make_install_roundcube_lays_the_plugin_out_as_debian_does(tmp_path: Path) -> None:
    stage = tmp_path / "stage"
    subprocess.run(
        ["make", "-s", "-C", str(REPO), "install-roundcube", f"DESTDIR={stage}"],
        check=True,
        capture_output=True,
    )
    plugin = stage / "usr/share/roundcube/plugins/twostep"
    for name in (
        "twostep.php",
        "lib/twostep_client.php",
        "localization/en_US.inc",
        "skins/elastic/templates/code.html",
    ):
        assert (plugin / name).is_file(), name
    assert (plugin / "config.inc.php").readlink() == Path(
        "/etc/roundcube/plugins/twostep/config.inc.php"
    )
    settings = stage / "etc/roundcube/plugins/twostep/config.inc.php"
    assert settings.stat().st_mode & 0o777 == 0o640
    assert "twostep_socket" in settings.read_text()
    assert (stage / "var/lib/roundcube/plugins/twostep").readlink() == Path(
        "/usr/share/roundcube/plugins/twostep"
    )
    # a second install keeps the site's settings
    settings.write_text("<?php // the site's own\n")
    subprocess.run(
        ["make", "-s", "-C", str(REPO), "install-roundcube", f"DESTDIR={stage}"],
        check=True,
        capture_output=True,
    )
    assert settings.read_text() == "<?php // the site's own\n"
