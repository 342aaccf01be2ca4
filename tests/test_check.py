"""``twostep check`` on a directory without the shipped ACLs says what is exposed."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import config_data, make_secrets_dir
from support.slapd import NAMES, USERS, Slapd, user_dn

from pam_twostep.check import run_checks


@pytest.fixture(scope="module")
def open_slapd() -> Iterator[Slapd]:
    directory = Path(tempfile.mkdtemp(prefix="twostep-noacl-"))
    server = Slapd.create(directory / "ldap", names=NAMES, users=USERS, acl=False)
    assert isinstance(server, Slapd)
    try:
        yield server
    finally:
        server.destroy()


def test_without_the_acls_check_names_every_exposure(open_slapd: Slapd, tmp_path: Path) -> None:
    open_slapd.set_attributes(
        user_dn("alice"),
        objectClass=["inetOrgPerson", "twostepAccount"],
        twostepEnabled=["TRUE"],
        twostepBackupCode=["$argon2id$v=19$m=8192,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$" + "A" * 43],
    )
    path = tmp_path / "twostep.yaml"
    path.write_text(yaml.safe_dump(config_data(open_slapd, make_secrets_dir(tmp_path / "etc"))))
    findings = run_checks(path, user="alice", user_password=USERS["alice"], socket="/nonexistent")
    failed = {f.what: f.advice for f in findings if not f.ok}
    assert any("may NOT write two-step attributes" in what for what in failed)
    assert any(what.startswith("anonymous clients can read") for what in failed)
    assert any(what.startswith("alice bound as themselves can read") for what in failed)
    assert all(advice for advice in failed.values())  # every finding says what to do
    assert any("acl.ldif" in advice for advice in failed.values())


def test_names_the_passdb_the_installed_dovecot_can_use(open_slapd: Slapd, tmp_path: Path) -> None:
    """Dovecot 2.4 (Debian 13) has no checkpassword passdb: check says so, in one line."""
    from pam_twostep.lab.dovecot_config import installed_version

    path = tmp_path / "twostep.yaml"
    path.write_text(yaml.safe_dump(config_data(open_slapd, make_secrets_dir(tmp_path / "etc"))))
    findings = [f for f in run_checks(path, socket="/nonexistent") if "Dovecot" in f.what]
    assert len(findings) == 1 and findings[0].ok
    version = installed_version()
    assert version.text in findings[0].what
    if version.is_24:
        assert "auth-twostep-lua-2.4.conf.ext" in findings[0].what
        assert "no checkpassword passdb" in findings[0].what
    else:
        assert "auth-twostep-checkpassword.conf.ext" in findings[0].what
