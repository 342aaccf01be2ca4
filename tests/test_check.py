"""``twostep check`` on a directory without the shipped ACLs says what is exposed."""

from __future__ import annotations

import dataclasses
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import config_data, make_secrets_dir
from support.engines import engine_for
from support.flows import interactive_login
from support.slapd import NAMES, USERS, Slapd, user_dn

from pam_twostep.check import _single_use_finding, run_checks
from pam_twostep.config import LdapConfig, parse_config
from pam_twostep.core.decision import Method, Outcome
from pam_twostep.core.errors import DirectoryRefused
from pam_twostep.lab.files import resource

ISSUE_18 = ("twostepRequiredFrom", "twostepMailPasswordUntil")


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
    # (the findings on Dovecot's own configuration, check_dovecot's, start otherwise)
    findings = [
        f for f in run_checks(path, socket="/nonexistent") if f.what.startswith("Dovecot 2.")
    ]
    assert len(findings) == 1 and findings[0].ok
    version = installed_version()
    assert version.text in findings[0].what
    if version.is_24:
        assert "auth-twostep-lua-2.4.conf.ext" in findings[0].what
        assert "no checkpassword passdb" in findings[0].what
    else:
        assert "auth-twostep-checkpassword.conf.ext" in findings[0].what


def test_a_default_policy_that_names_no_entry_is_a_failure(
    open_slapd: Slapd, tmp_path: Path
) -> None:
    """Without it every login is a temporary failure, two-step off included."""
    path = tmp_path / "twostep.yaml"
    data = config_data(open_slapd, make_secrets_dir(tmp_path / "etc"))
    path.write_text(yaml.safe_dump(data))
    [found] = [f for f in run_checks(path, socket="/nonexistent") if "policy.default" in f.what]
    assert found.ok and found.what.endswith(": found")
    data["policy"]["default"] = "cn=nothing,ou=policies," + open_slapd.names.suffix
    path.write_text(yaml.safe_dump(data))
    [missing] = [f for f in run_checks(path, socket="/nonexistent") if "policy.default" in f.what]
    assert not missing.ok and "no such entry, so every login fails" in missing.what
    assert "ldap_schema/README.md" in missing.advice


def _schema_before_issue_18() -> str:
    """The shipped twostep.ldif without the attributes issue 18 added: the schema of a
    site that upgraded twostep and not yet its directory."""
    text = resource("ldap_schema/twostep.ldif").read_text()
    for name in ISSUE_18:
        text = re.sub(
            rf"olcAttributeTypes: \( [^\n]* NAME '{name}'.*?SINGLE-VALUE \)\n", "", text, flags=re.S
        )
    text = re.sub(
        r"\s*\$\s*twostepRequiredFrom\s*\$\s*twostepMailPasswordUntil(?=\s*[$)])", "", text
    )
    assert not any(name in text for name in ISSUE_18)
    return text


@pytest.fixture(scope="module")
def old_slapd() -> Iterator[Slapd]:
    directory = Path(tempfile.mkdtemp(prefix="twostep-oldschema-"))
    schema = directory / "twostep.ldif"
    schema.write_text(_schema_before_issue_18())
    server = Slapd.create(directory / "ldap", names=NAMES, users=USERS, acl=False, schema=schema)
    assert isinstance(server, Slapd)
    try:
        yield server
    finally:
        server.destroy()


def test_a_schema_from_before_the_grace_dates(old_slapd: Slapd, tmp_path: Path) -> None:
    """Logins and status go on; ``check`` names the missing attributes and how to
    upgrade; setting a date is refused by the directory, and said so (not a temporary
    failure an admin would retry for ever), with nothing written."""
    data = config_data(old_slapd, make_secrets_dir(tmp_path / "etc"))
    path = tmp_path / "twostep.yaml"
    path.write_text(yaml.safe_dump(data))
    findings = {f.what: f.advice for f in run_checks(path, socket="/nonexistent") if not f.ok}
    [(what, advice)] = [(w, a) for w, a in findings.items() if w.startswith("twostep schema")]
    assert what == "twostep schema missing: twostepRequiredFrom, twostepMailPasswordUntil"
    assert "upgrade-cn-config.sh" in advice
    with engine_for(parse_config(data)) as engine:
        login = interactive_login(engine, "bob", password=USERS["bob"])
        assert (login.outcome, login.method) == (Outcome.ACCEPT, Method.PASSWORD)
        assert engine.status("bob").required_from is None
        before = engine.show_policy("default").settings
        with pytest.raises(DirectoryRefused):
            engine.set_policy("default", {"required_from": int(time.time()) + 86400})
        assert engine.show_policy("default").settings == before


_REMOTE = "ldaps://ldap2.example.org"


@pytest.mark.parametrize(
    ("first", "local"),
    [
        ("ldapi:///", True),
        ("ldapi://%2Frun%2Fslapd%2Fldapi", True),
        ("ldap://localhost", True),
        ("ldap://LOCALHOST.:389", True),
        ("ldap://ldap.localhost", True),
        ("ldap://127.0.0.1:389", True),
        ("ldap://127.8.9.10", True),
        ("ldap://[::1]:389", True),
        ("ldap:///", True),
        ("LDAP://Localhost.LocalDomain", True),
        ("ldap://ip6-localhost", True),
        ("ldap://127.1", True),
        ("ldap://2130706433", True),
        ("ldap://0x7f000001", True),
        ("ldap://0.0.0.0", True),
        ("ldap://[::]", True),
        ("ldap://[::ffff:127.0.0.1]", True),
        ("ldap://[0:0:0:0:0:0:0:1]", True),
        ("ldap://ldap1", False),
        ("ldap://[::ffff:192.0.2.7]", False),
        ("ldaps://ldap1.example.org", False),
        ("ldap://192.0.2.7", False),
        ("ldap://[2001:db8::1]", False),
    ],
)
def test_check_says_which_server_consumes_codes(first: str, local: bool) -> None:
    """Review of issue 22: with the shipped ``ldapi:///`` first on every host, each host
    consumed codes on its own provider, and one code raced through two was accepted
    twice. The name is the same; the server is not."""
    ldap = LdapConfig(uris=(first, _REMOTE), bind_dn="cn=x", bind_password_file=Path("/x"))
    finding = _single_use_finding(ldap)
    assert finding is not None and finding.ok
    assert finding.what.startswith(f"{first}: consumes every code (ldap.single_use strict)")
    alone = _single_use_finding(dataclasses.replace(ldap, uris=(first,)))
    assert alone is not None and alone.what.startswith(f"{first}: consumes every code;")
    assert ("this host's own slapd" in alone.what) is local
    assert ("this host's own slapd" in finding.what) is local
    assert ("every host reaches" in finding.advice) is local


def test_check_says_nothing_of_single_use_under_available() -> None:
    available = LdapConfig(
        uris=("ldapi:///", _REMOTE),
        bind_dn="cn=x",
        bind_password_file=Path("/x"),
        single_use="available",
    )
    assert _single_use_finding(available) is None
