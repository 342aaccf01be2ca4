"""Dovecot's configuration in both dialects: what the installed Dovecot (2.3 on Debian 12,
2.4 on Debian 13) accepts, checked by its own doveconf, and the shipped conf.d snippet for
that version serving real logins."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import config_data, make_secrets_dir
from support.engines import engine_for
from support.flows import enroll
from support.slapd import USERS, Slapd
from support.stack import MailStack, running_stack, source, world_readable_directory

from pam_twostep.config import parse_config
from pam_twostep.lab.dovecot import Dovecot
from pam_twostep.lab.dovecot_config import (
    LDAP_SEARCH,
    LDAP_TEMPLATE,
    DovecotConfigError,
    DovecotVersion,
    LdapPassdb,
    Passdb,
    Settings,
    Unsupported,
    installed_version,
    parse_version,
    render,
)

REPO = Path(__file__).resolve().parents[1]
V23 = parse_version("2.3.19.1 (9b53102964)")
V24 = parse_version("2.4.1-4 (7d8c0e5759)")

VERSIONS = [
    ("2.3.19.1 (9b53102964)", (2, 3), "2.3.19"),
    ("2.4.1-4 (7d8c0e5759)", (2, 4), "2.4.1"),
    ("2.4.2 (0962ed2104)", (2, 4), "2.4.2"),
    ("2.5.0", (2, 5), "2.5.0"),
]


@pytest.mark.parametrize(("text", "major_minor", "config_version"), VERSIONS)
def test_versions_are_read_from_dovecot_version(
    text: str, major_minor: tuple[int, int], config_version: str
) -> None:
    version = parse_version(text)
    assert (version.major, version.minor) == major_minor
    assert version.config_version == config_version
    assert version.is_24 == (major_minor >= (2, 4))


@pytest.mark.parametrize("text", ["", "dovecot", "v2.4", "\n", "two.four"])
def test_unreadable_versions_are_an_error(text: str) -> None:
    with pytest.raises(DovecotConfigError):
        parse_version(text)


def _passdbs(directory: Path) -> dict[str, Passdb]:
    ldap = LdapPassdb("ldap://127.0.0.1:1", "cn=svc,dc=x", "pw", "ou=people,dc=x")
    return {
        "lua": Passdb.lua(REPO / "config/dovecot/twostep-passdb.lua"),
        "checkpassword": Passdb.checkpassword("/bin/true"),
        "pam": Passdb.pam("twostep-test"),
        "ldap-search": Passdb.native_ldap(ldap),
        "ldap-template": Passdb.native_ldap(
            LdapPassdb(ldap.uri, ldap.service_dn, ldap.service_password, ldap.base, LDAP_TEMPLATE)
        ),
    }


def _settings(directory: Path, passdb: Passdb) -> Settings:
    return Settings(directory, passdb, (("TWOSTEP_SOCKET", "/run/x.sock"),), 10143, 10110)


@pytest.mark.parametrize("version", [V23, V24], ids=["2.3", "2.4"])
def test_each_dialect_spells_the_same_wishes(tmp_path: Path, version: DovecotVersion) -> None:
    for name, passdb in _passdbs(tmp_path).items():
        if name == "checkpassword" and version.is_24:
            with pytest.raises(Unsupported, match=r"no checkpassword passdb.*Lua"):
                render(_settings(tmp_path, passdb), version)
            continue
        text, extra = render(_settings(tmp_path, passdb), version)
        assert "listen = 127.0.0.1" in text and "port = 10143" in text
        assert "TWOSTEP_SOCKET" in text
        if version.is_24:
            assert text.startswith("dovecot_config_version = 2.4.1\n")
            assert "%u" not in text and "disable_plaintext_auth" not in text
            assert not extra  # 2.4 keeps LDAP settings in the main file
        else:
            assert "dovecot_config_version" not in text and "%{user}" not in text
        if name.startswith("ldap") and not version.is_24:
            (conf,) = extra.values()
            assert ("auth_bind_userdn" in conf) == (name == "ldap-template")
        elif name.startswith("ldap"):
            # 2.4.1 refuses every login of an LDAP passdb without a filter, even a template
            assert "  filter = (&(objectClass=inetOrgPerson)" in text
            assert ("bind_userdn = uid=" in text) == (name == "ldap-template")


def test_ldap_modes_are_named() -> None:
    assert {LDAP_SEARCH, LDAP_TEMPLATE} == {"search", "template"}


def test_the_installed_dovecot_accepts_what_is_written(tmp_path: Path) -> None:
    """doveconf of the installed version parses every passdb's configuration."""
    version = installed_version()
    for name, passdb in _passdbs(tmp_path).items():
        directory = tmp_path / name
        directory.mkdir()
        if name == "checkpassword" and version.is_24:
            continue
        text, extra = render(_settings(directory, passdb), version)
        for path, content in extra.items():
            Path(path).write_text(content)
        (directory / "dovecot.conf").write_text(text)
        result = subprocess.run(
            ["doveconf", "-c", str(directory / "dovecot.conf"), "-n"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, (name, version, result.stderr)


# -- the shipped snippet, as a site includes it ----------------------------------------


def _snippets() -> list[object]:
    """The shipped snippets for the installed version (checkpassword exists only in 2.3)."""
    if installed_version().is_24:
        return ["auth-twostep-lua-2.4.conf.ext"]
    return ["auth-twostep-lua.conf.ext", "auth-twostep-checkpassword.conf.ext"]


@pytest.fixture(scope="module")
def clients_group() -> Iterator[str]:
    """The group make install creates for twostepd's socket, made here if missing (and
    removed again): the snippets must get Dovecot's processes into it."""
    import grp

    name = "twostep-clients"
    try:
        grp.getgrnam(name)
        made = False
    except KeyError:
        subprocess.run(["groupadd", "--system", name], check=True)
        made = True
    try:
        yield name
    finally:
        if made:
            subprocess.run(["groupdel", name], check=False)


@pytest.fixture(scope="module")
def stack(
    slapd_server: Slapd, tmp_path_factory: pytest.TempPathFactory, clients_group: str
) -> Iterator[MailStack]:
    """twostepd as installed: socket 0660, group twostep-clients (the default)."""
    secrets = make_secrets_dir(tmp_path_factory.mktemp("snippet") / "etc")
    daemon = {"socket_group": clients_group, "socket_mode": "0660"}
    yield from running_stack(config_data(slapd_server, secrets, daemon=daemon), "lua")


# What Debian's auth-system.conf.ext amounts to for a refused login: another passdb that
# would say yes. The snippets must make twostep's refusal and temporary failure final.
_PERMISSIVE = {
    False: "passdb {\n  driver = static\n  args = nopassword=y\n}\n",
    True: "passdb static {\n  fields {\n    nopassword = yes\n  }\n}\n",
}


def _site_snippet(stack: MailStack, base: Path, name: str) -> Path:
    """The shipped snippet with only its install paths and mail user changed, followed by
    a passdb that accepts anything (as if the site had left auth-system.conf.ext in)."""
    snippet = (REPO / "config/dovecot/conf.d" / name).read_text()
    assert "/usr/local/" in snippet
    assert "vmail" in snippet  # make install creates it; here nobody/nogroup stand in
    site = base / "auth-twostep.conf.ext"
    site.write_text(
        snippet.replace("/usr/local/share/twostep", str(stack.prefix / "share/twostep"))
        .replace("/usr/local/lib/twostep", str(stack.prefix / "lib/twostep"))
        .replace("uid=vmail gid=vmail", "uid=nobody gid=nogroup")
        .replace("uid = vmail", "uid = nobody")
        .replace("gid = vmail", "gid = nogroup")
        .replace("/var/vmail", str(base / "home"))
        + _PERMISSIVE[installed_version().is_24]
    )
    return site


@pytest.mark.parametrize("name", _snippets())
def test_the_shipped_snippet_serves_passcodes(stack: MailStack, slapd: Slapd, name: str) -> None:
    """config/dovecot/conf.d's snippets for the installed version, included as the README
    says: passcodes open mail, the bare password does not once two-step is on, and neither
    a refusal nor an unreachable twostepd falls through to a later passdb."""
    base = world_readable_directory("twostep-snippet-")
    site = _site_snippet(stack, base, name)
    dovecot = Dovecot(
        base / "dovecot", Passdb.included(site), {"TWOSTEP_SOCKET": str(stack.daemon.socket)}
    )
    unreachable = Dovecot(
        base / "unreachable", Passdb.included(site), {"TWOSTEP_SOCKET": str(base / "none")}
    )
    dovecot.start()
    unreachable.start()
    try:
        with engine_for(parse_config(stack.daemon.config)) as admin:
            assert dovecot.imap_login("alice", USERS["alice"], source()) == ("OK", "")
            assert dovecot.imap_login("bob", "wrong", source())[0] == "NO"
            enroll(admin, time.time())
            passcode = admin.add_passcode("alice", "Phone").passcode
        assert dovecot.imap_login("alice", passcode, source()) == ("OK", "")
        assert dovecot.pop3_login("alice", passcode, source()) == ("OK", "")
        status, text = dovecot.imap_login("alice", USERS["alice"], source())
        assert status == "NO" and "AUTHENTICATIONFAILED" in text
        status, text = unreachable.imap_login("bob", USERS["bob"], source())
        assert status == "NO" and "UNAVAILABLE" in text
    finally:
        dovecot.stop()
        unreachable.stop()
    # Without the snippet's extra_groups, Dovecot's processes cannot reach the socket.
    grouped = (REPO / "config/dovecot/conf.d" / name).read_text()
    assert "extra_groups = twostep-clients" in grouped
    # The control: without the snippet's result_* lines, the passdb after it says yes.
    loose = base / "loose.conf.ext"
    loose.write_text(
        "".join(line for line in site.read_text().splitlines(True) if "result_" not in line)
    )
    control = Dovecot(
        base / "control", Passdb.included(loose), {"TWOSTEP_SOCKET": str(stack.daemon.socket)}
    )
    control.start()
    try:
        assert control.imap_login("bob", "wrong", source()) == ("OK", "")
    finally:
        control.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize(
    "hostile",
    [
        "/x\npassdb {\n  driver = static\n  args = nopassword=y\n}",
        "/x\r\nauth_allow_cleartext = yes",
        "/x}",
        '/x"',
        "/x # comment",
        "/with space",
        "/x.sock\\",  # a line continued into the next
        "<file",
        "'quoted",
        "$ENV:HOME",
        "/home/%u",
    ],
)
@pytest.mark.parametrize("version", [V23, V24], ids=["2.3", "2.4"])
def test_values_that_would_add_settings_are_refused(
    tmp_path: Path, version: DovecotVersion, hostile: str
) -> None:
    for settings in (
        Settings(tmp_path, Passdb.lua(hostile), (), 1, 2),
        Settings(tmp_path, Passdb.lua("/ok"), (("TWOSTEP_SOCKET", hostile),), 1, 2),
        Settings(Path(hostile), Passdb.pam("twostep"), (), 1, 2),
    ):
        with pytest.raises(DovecotConfigError):
            render(settings, version)
    if " " not in hostile:  # an LDAP password may hold spaces, nothing else here
        ldap = LdapPassdb("ldap://127.0.0.1:1", "cn=svc", hostile, "ou=people")
        with pytest.raises(DovecotConfigError):
            render(Settings(tmp_path, Passdb.native_ldap(ldap), (), 1, 2), version)
