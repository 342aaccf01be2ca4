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
    # the administrator's places, which systemd and systemd-tmpfiles read; /lib and
    # /usr/lib are dpkg's
    assert (local / "lib/tmpfiles.d/twostep.conf").exists()
    assert not (stage / "lib").exists() and not (stage / "usr/lib").exists()
    unit = (local / "lib/systemd/system/twostepd.service").read_text()
    assert "ExecStart=/usr/local/sbin/twostepd" in unit
    portal = (local / "lib/systemd/system/twostep-portal.service").read_text()
    assert "ExecStart=/usr/local/bin/twostep portal" in portal and "User=twostep-portal" in portal
    # the script names the installed interpreter; here the staged one runs it
    venv = local / "lib/twostep/venv"
    help_text = subprocess.run(
        [str(venv / "bin/python"), str(venv / "bin/twostepd"), "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "--check" in help_text
    # scripts and bytecode name where they will run, never the staging folder
    staged = [p for p in venv.rglob("*") if p.is_file() and str(stage).encode() in p.read_bytes()]
    assert staged == []
    assert (venv / "bin/twostepd").read_text().startswith("#!/usr/local/lib/twostep/venv/bin/")


def test_make_uninstall_removes_what_install_staged(tmp_path: Path) -> None:
    """What stays is the site's: /etc/twostep with the configuration (no keys are made
    without DESTDIR's users), and a logrotate file the site changed."""
    stage = tmp_path / "stage"
    make = ["make", "-s", "-C", str(REPO), f"DESTDIR={stage}"]
    subprocess.run([*make, "install"], check=True, capture_output=True)
    rotate = stage / "etc/logrotate.d/twostep"
    rotate.write_text(rotate.read_text() + "# the site's own\n")
    subprocess.run([*make, "uninstall"], check=True, capture_output=True)
    left = sorted(str(p.relative_to(stage)) for p in stage.rglob("*") if not p.is_dir())
    assert left == ["etc/logrotate.d/twostep", "etc/twostep/twostep.yaml"]
    subprocess.run([*make, "install"], check=True, capture_output=True)
    rotate.unlink()
    subprocess.run([*make, "uninstall"], check=True, capture_output=True)
    assert not (stage / "etc/logrotate.d/twostep").exists()
    assert not (stage / "usr/local/lib/systemd").exists()


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
