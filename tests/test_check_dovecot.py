"""``twostep check`` on Dovecot's configuration: the static userdb's mail user and the
Lua passdb's lua-socket, read from ``doveconf -n`` of 2.3 and of 2.4."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from support.stack import world_readable_directory

from pam_twostep.check_dovecot import (
    DovecotAuth,
    MailUser,
    dovecot_findings,
    embedded_lua,
    lua_socket_finding,
    mail_user_findings,
    parse_doveconf,
)
from pam_twostep.lab.dovecot_config import installed_version

REPO = Path(__file__).resolve().parents[1]
SCRIPT = "/usr/local/share/twostep/twostep-passdb.lua"
MISSING = "twostep-no-mail-user"

DOVECOT_23 = f"""# 2.3.19.1 (9b53102964): /etc/dovecot/dovecot.conf
# Pigeonhole version 0.5.19 (4eae2f79)
# OS: Linux 6.1.0-37-amd64 x86_64 Debian 12.11
# Hostname: mail
auth_mechanisms = plain login
mail_location = mbox:~/mail:INBOX=/var/mail/%u
mail_privileged_group = mail
namespace inbox {{
  inbox = yes
  location =
  mailbox Drafts {{
    special_use = \\Drafts
  }}
  mailbox "Sent Messages" {{
    special_use = \\Sent
  }}
  prefix =
}}
passdb {{
  args = file={SCRIPT} blocking=yes
  driver = lua
  result_failure = return-fail
  result_internalfail = return-fail
}}
protocols = " imap pop3"
service auth-worker {{
  extra_groups = twostep-clients
}}
service auth {{
  extra_groups = twostep-clients
  unix_listener /var/spool/postfix/private/auth {{
    group = postfix
    mode = 0660
    user = postfix
  }}
}}
ssl_cert = </etc/dovecot/private/dovecot.pem
ssl_key = # hidden, use -P to show it
userdb {{
  args = uid=vmail gid=vmail home=/var/vmail/%u
  driver = static
}}
"""

DOVECOT_24 = f"""# 2.4.1-4 (7d8c0e5759): /etc/dovecot/dovecot.conf
# Pigeonhole version 2.4.1-4 (0a86619f)
# OS: Linux 6.12.38+deb13-amd64 x86_64 Debian 13.0
# Hostname: mail
dovecot_config_version = 2.4.1
auth_mechanisms = plain login
dovecot_storage_version = 2.4.1
mail_driver = mbox
mail_home = /home/%{{user | username}}
mail_inbox_path = /var/mail/%{{user}}
mail_path = ~/mail
namespace inbox {{
  inbox = yes
  mailbox Drafts {{
    special_use = "\\\\Drafts"
  }}
  mailbox "Sent Messages" {{
    special_use = "\\\\Sent"
  }}
}}
passdb lua {{
  lua_file = {SCRIPT}
  result_failure = return-fail
  result_internalfail = return-fail
  use_worker = yes
}}
protocols {{
  imap = yes
  pop3 = yes
}}
service auth-worker {{
  extra_groups = twostep-clients
}}
service auth {{
  extra_groups = twostep-clients
}}
ssl_server_cert_file = /etc/dovecot/private/dovecot.pem
ssl_server_key_file = # hidden, use -P to show it
userdb static {{
  fields {{
    gid = vmail
    home = /var/vmail/%{{user}}
    uid = vmail
  }}
}}
"""

DEBIAN_DEFAULT = """# 2.3.19.1 (9b53102964): /etc/dovecot/dovecot.conf
mail_location = mbox:~/mail:INBOX=/var/mail/%u
passdb {
  driver = pam
}
userdb {
  driver = passwd
}
"""

VMAIL_23 = MailUser("userdb static", "vmail", "vmail", "/var/vmail/%u")
VMAIL_24 = MailUser("userdb static", "vmail", "vmail", "/var/vmail/%{user}")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (DOVECOT_23, DovecotAuth((VMAIL_23,), True, True)),
        (DOVECOT_24, DovecotAuth((VMAIL_24,), True, True)),
        (DEBIAN_DEFAULT, DovecotAuth((), False, False, ("passdb pam",))),
        ("", DovecotAuth((), False)),
        # 2.4: a userdb of another name says its driver; fields may carry a modifier
        (
            "userdb mail {\n  driver = static\n  fields {\n    uid:default = 5000\n"
            '    gid = "vmail"\n  }\n}\n',
            DovecotAuth((MailUser("userdb mail", "5000", "vmail", None),), False),
        ),
        # 2.3: override_fields count as well, after args
        (
            "userdb {\n  args = uid=vmail home=/srv/%d/%n allow_all_users=yes\n"
            "  driver = static\n  override_fields = uid=mail\n}\n",
            DovecotAuth((MailUser("userdb static", "mail", None, "/srv/%d/%n"),), False),
        ),
        # a userdb of another driver, and a Lua passdb running another script
        (
            "userdb passwd {\n}\npassdb lua {\n  lua_file = /etc/dovecot/other.lua\n}\n",
            DovecotAuth((), False, False, ("passdb lua",)),
        ),
        # 2.4: lua_file set outside the filter
        (
            f"lua_file = {SCRIPT}\npassdb lua {{\n  use_worker = yes\n}}\n",
            DovecotAuth((), True, True),
        ),
        # Debian's system passdb left in front of twostep's: it takes the bare password
        (
            f"passdb {{\n  driver = pam\n}}\npassdb {{\n  args = file={SCRIPT}\n"
            "  driver = lua\n}\n",
            DovecotAuth((), True, True, ("passdb pam",)),
        ),
        # what cannot be read is skipped: stray braces, lines of neither kind
        (
            "}\nnonsense without equals\nuserdb {\n  driver = static\n"
            "  args = uid=vmail\n  what is this\n}\n}\n",
            DovecotAuth((MailUser("userdb static", "vmail"),), False),
        ),
    ],
)
def test_doveconf_output_of_either_version_is_read(text: str, expected: DovecotAuth) -> None:
    assert parse_doveconf(text) == expected


def test_a_missing_mail_user_group_and_home_are_named_with_their_fix(tmp_path: Path) -> None:
    user = MailUser("userdb static", MISSING, MISSING, "/var/vmail/%u")
    assert [(f.ok, str(f)) for f in mail_user_findings((user,), tmp_path)] == [
        (
            False,
            f"FAIL Dovecot userdb static: uid {MISSING} and gid {MISSING}: no such user and"
            f' group, so every login fails ("Invalid uid: {MISSING}" in Dovecot\'s log) ->'
            " useradd --system --user-group --home-dir /var/vmail --no-create-home"
            f" --shell /usr/sbin/nologin {MISSING}",
        ),
        (
            False,
            "FAIL Dovecot userdb static: home /var/vmail/%u: /var/vmail does not exist, so no"
            f" mailbox can be made -> install -d -m 770 -o {MISSING} -g {MISSING} /var/vmail",
        ),
    ]
    (tmp_path / "var/vmail").mkdir(parents=True)
    fine = MailUser("userdb static", "nobody", "nogroup", "/var/vmail/%{user}")
    assert [str(f) for f in mail_user_findings((fine,), tmp_path)] == [
        "ok   Dovecot userdb static: user nobody, group nogroup and /var/vmail exist"
    ]


@pytest.mark.parametrize(
    ("user", "advice"),
    [
        # the group exists: --user-group would refuse to make it again
        (MailUser("userdb static", MISSING, "nogroup"), "--gid nogroup"),
        (MailUser("userdb static", MISSING, "5000"), "--gid 5000"),
        (MailUser("userdb static", MISSING), "--user-group"),
    ],
)
def test_the_useradd_fits_the_group(tmp_path: Path, user: MailUser, advice: str) -> None:
    [finding] = mail_user_findings((user,), tmp_path)
    assert not finding.ok and f"useradd --system {advice} " in finding.advice


def test_a_missing_group_of_another_name_comes_first(tmp_path: Path) -> None:
    user = MailUser("userdb static", MISSING, MISSING + "-g")
    group, person = mail_user_findings((user,), tmp_path)
    assert group.advice == f"groupadd --system {MISSING}-g"
    assert f"--gid {MISSING}-g " in person.advice


@pytest.mark.parametrize(
    ("home", "folder"),
    [
        ("/var/vmail/%u", "var/vmail"),
        ("/var/vmail/%d/%n", "var/vmail"),
        ("/srv/mail-%{user}", "srv"),
        ("/var/vmail", "var/vmail"),  # one home for everyone: that folder itself
    ],
)
def test_the_fixed_part_of_home_must_be_a_folder(tmp_path: Path, home: str, folder: str) -> None:
    user = MailUser("userdb static", home=home)
    [missing] = mail_user_findings((user,), tmp_path)
    assert not missing.ok and missing.advice.endswith(f" /{folder}")
    (tmp_path / folder).mkdir(parents=True)
    [present] = mail_user_findings((user,), tmp_path)
    assert present.ok


def test_numbers_and_variables_are_not_looked_up(tmp_path: Path) -> None:
    """Dovecot takes a number as it is, and a %variable differs per user."""
    user = MailUser("userdb static", "5000", "%{ldap:gidNumber}", "~/mail")
    assert mail_user_findings((user,), tmp_path) == []


def _dovecot_libraries(root: Path, lua: str) -> None:
    modules = root / "usr/lib/dovecot/modules/auth"
    modules.mkdir(parents=True)
    # what ldd reads: the library's name in the dynamic section
    (modules / "libauthdb_lua.so").write_bytes(b"\x7fELF\0libdovecot-lua.so.0\0")
    (root / "usr/lib/dovecot/libdovecot-lua.so.0.0.0").write_bytes(
        f"\x7fELF\0{lua}\0libc.so.6\0".encode()
    )


def _lua_socket(root: Path, where: str) -> Path:
    module = root / where / "socket" / "unix.so"
    module.parent.mkdir(parents=True)
    module.write_bytes(b"\x7fELF")
    return module


def test_lua_socket_is_looked_for_in_the_lua_dovecot_embeds(tmp_path: Path) -> None:
    _dovecot_libraries(tmp_path, "liblua5.4.so.0")
    assert embedded_lua(tmp_path) == ["5.4"]
    missing = lua_socket_finding(tmp_path)
    assert str(missing) == (
        "FAIL Dovecot's Lua passdb needs lua-socket (module socket.unix not found for Lua 5.4)"
        " -> apt install lua-socket"
    )
    _lua_socket(tmp_path, "usr/lib/x86_64-linux-gnu/lua/5.3")  # another Lua's does not do
    assert not lua_socket_finding(tmp_path).ok
    module = _lua_socket(tmp_path, "usr/lib/x86_64-linux-gnu/lua/5.4")
    assert str(lua_socket_finding(tmp_path)) == (
        f"ok   Dovecot's Lua passdb: socket.unix found (Lua 5.4: {module})"
    )


@pytest.mark.parametrize(
    ("library", "folder"),
    [
        ("liblua5.3.so.0", "usr/local/lib/lua/5.3"),
        ("libluajit-5.1.so.2", "usr/lib/lua/5.1"),
    ],
)
def test_every_c_folder_and_lua_counts(tmp_path: Path, library: str, folder: str) -> None:
    _dovecot_libraries(tmp_path, library)
    assert not lua_socket_finding(tmp_path).ok
    _lua_socket(tmp_path, folder)
    assert lua_socket_finding(tmp_path).ok


def test_without_dovecots_lua_modules_any_lua_socket_does(tmp_path: Path) -> None:
    assert embedded_lua(tmp_path) == []
    finding = lua_socket_finding(tmp_path)
    assert not finding.ok and "not found for any Lua" in finding.what
    _lua_socket(tmp_path, "usr/lib/aarch64-linux-gnu/lua/5.4")
    assert lua_socket_finding(tmp_path).ok


def test_this_hosts_dovecot_embeds_a_lua_with_lua_socket() -> None:
    """make deps installs dovecot-auth-lua and lua-socket, as the README asks."""
    if not Path("/usr/lib/dovecot/modules/auth/libauthdb_lua.so").exists():
        pytest.skip("no dovecot-auth-lua here")
    assert embedded_lua() and lua_socket_finding().ok


needs_doveconf = pytest.mark.skipif(shutil.which("doveconf") is None, reason="no Dovecot here")


def _config(base: Path, uid: str, gid: str) -> Path:
    """The shipped snippet of the installed version, included as a site would, with
    its mail user and home changed."""
    version = installed_version()
    name = "auth-twostep-lua-2.4.conf.ext" if version.is_24 else "auth-twostep-lua.conf.ext"
    snippet = (REPO / "config/dovecot/conf.d" / name).read_text()
    site = base / name
    site.write_text(
        snippet.replace("uid=vmail gid=vmail", f"uid={uid} gid={gid}")
        .replace("uid = vmail", f"uid = {uid}")
        .replace("gid = vmail", f"gid = {gid}")
        .replace("/var/vmail", str(base / "vmail"))
    )
    head = (
        f"dovecot_config_version = {version.config_version}\n"
        f"dovecot_storage_version = {version.config_version}\n"
        if version.is_24
        else ""
    )
    path = base / "dovecot.conf"
    path.write_text(f"{head}!include {site}\n")
    return path


@needs_doveconf
def test_the_installed_doveconf_is_read_for_the_shipped_snippet() -> None:
    base = world_readable_directory("twostep-check-dovecot-")
    try:
        findings = dovecot_findings(_config(base, MISSING, MISSING))
        failed = [f.what for f in findings if not f.ok]
        assert len(failed) == 2, findings
        assert failed[0].startswith(f"Dovecot userdb static: uid {MISSING} and gid {MISSING}")
        variable = "%{user}" if installed_version().is_24 else "%u"
        assert failed[1] == (
            f"Dovecot userdb static: home {base}/vmail/{variable}: {base}/vmail does not exist,"
            " so no mailbox can be made"
        )
        assert any(f.what.startswith("Dovecot's Lua passdb") for f in findings)
        (base / "vmail").mkdir()
        findings = dovecot_findings(_config(base, "nobody", "nogroup"))
        assert [f.ok for f in findings if "userdb" in f.what] == [True]
    finally:
        shutil.rmtree(base)


@needs_doveconf
def test_a_configuration_doveconf_refuses_is_a_finding(tmp_path: Path) -> None:
    path = tmp_path / "dovecot.conf"
    # 2.4 wants its configuration version first, or names that instead
    first = "dovecot_config_version = 2.4.0\n" if installed_version().is_24 else ""
    path.write_text(f"{first}no_such_setting_of_dovecot = 1\n")
    [finding] = dovecot_findings(path)
    assert not finding.ok
    assert finding.what.startswith(f"Dovecot: doveconf -c {path} -n fails: ")
    assert "no_such_setting_of_dovecot" in finding.what


def test_no_doveconf_no_findings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert dovecot_findings() == []
