"""twostep.yaml: strict parsing, errors that name the key and the file."""

from __future__ import annotations

import contextlib
import copy
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pam_twostep.config import (
    DEFAULT_PATH,
    config_path,
    load_config,
    load_secrets,
    parse_config,
)
from pam_twostep.core.errors import ConfigError
from pam_twostep.core.totp import Algorithm

GOOD: dict[str, Any] = {
    "ldap": {
        "uris": ["ldap://127.0.0.1:3890/", "ldaps://ldap2.example.org/"],
        "bind_dn": "cn=twostep,ou=services,dc=example,dc=org",
        "bind_password_file": "/etc/twostep/ldap.secret",
    },
    "users": {"base": "ou=people,dc=example,dc=org"},
    "keys": {"current": "k1"},
}


def with_(path: str, value: object) -> dict[str, Any]:
    data = copy.deepcopy(GOOD)
    *parents, last = path.split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    return data


def test_minimal_config_gets_defaults() -> None:
    config = parse_config(GOOD)
    assert config.ldap.timeout == 5.0
    assert config.users.filter == "(&(objectClass=inetOrgPerson)(uid={username}))"
    assert config.totp.params.algorithm is Algorithm.SHA1
    assert config.totp.enrollment_lifetime == 3600
    assert "imap" in config.mail_services
    assert config.audit.facility == "auth"


def test_full_config() -> None:
    data = with_(
        "totp",
        {
            "issuer": "Example",
            "algorithm": "SHA256",
            "digits": 8,
            "period": 60,
            "enrollment_lifetime": "2h",
        },
    )
    data["policy"] = {
        "default": "cn=default,ou=policies,dc=example,dc=org",
        "defaults": {"backup_codes": 12, "device_lifetime": "14d"},
    }
    data["services"] = {"mail": ["imap", "smtp"]}
    data["audit"] = {"syslog": False, "file": "/var/log/twostep/audit.log"}
    data["logging"] = {"level": "debug"}
    config = parse_config(data)
    assert config.totp.params.digits == 8
    assert config.totp.enrollment_lifetime == 7200
    assert config.policy.defaults == {"backup_codes": 12, "device_lifetime": 1209600}
    assert config.mail_services == {"imap", "smtp"}


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("ldap.uri", "ldap://x", "ldap.uri: unknown key"),
        ("colour", "blue", "colour: unknown key"),
        ("ldap.timeout", "5", "ldap.timeout: must be a number"),
        ("ldap.timeout", 0, "ldap.timeout: must be between"),
        ("ldap.pool_size", True, "ldap.pool_size: must be a whole number"),
        ("ldap.single_use", "lenient", "ldap.single_use: must be one of"),
        ("ldap.single_use", True, "ldap.single_use: must be"),
        ("ldap.uris", [], "ldap.uris: must be a URI"),
        ("ldap.uris", ["http://x/"], "is not an ldap://"),
        ("ldap.uris", ["ldap://[::1/"], "is not an ldap://"),  # found by tests/fuzz
        ("ldap.uris", ["ldap://127.0.0.1:99999/"], "is not an ldap://"),
        ("ldap.uris", ["ldaps://host:port/"], "is not an ldap://"),
        ("ldap.uris", ["ldap://ldap.example.org/"], "clear text"),
        ("ldap.bind_dn", "twostep", "not a distinguished name"),
        ("ldap.bind_password_file", "ldap.secret", "absolute path"),
        ("users.filter", "(uid=%s)", "{username}"),
        ("users.filter", "(uid={username}", "{username}"),
        ("users.filter", "uid={username}", "{username}"),
        ("users.username_attribute", "u id", "not an attribute name"),
        ("keys.current", "k/1", "keys.current"),
        ("totp.algorithm", "MD5", "totp.algorithm: must be one of"),
        ("totp.digits", 4, "totp.digits"),
        ("totp.enrollment_lifetime", "30s", "between 1 minute"),
        ("policy.defaults", {"backup_codes": 99}, "policy.defaults.backup_codes"),
        ("policy.defaults", {"bogus": 1}, "policy.defaults.bogus: unknown"),
        ("policy.defaults", {"required_from": "2027-02-30"}, "not a date on the calendar"),
        ("policy.defaults", {"required_from": "15.01.2027"}, "policy.defaults.required_from"),
        ("policy.defaults", {"mail_password_until": True}, "must be a date"),
        ("policy.defaults", {"mail_password_until": "1970-01-01"}, "between 2000-01-01"),
        ("services.mail", ["IMAP"], "services.mail"),
        ("audit.facility", "kern", "audit.facility"),
        ("logging.level", "loud", "logging.level"),
        ("ldap", "ldap://x", "ldap: must be a mapping"),
        ("daemon.socket_mode", 0o666, "daemon.socket_mode: must be an octal mode in quotes"),
        ("daemon.socket_mode", "rw-rw----", "daemon.socket_mode"),
        ("daemon.socket_group", "", "daemon.socket_group: must be a non-empty string"),
        ("daemon.socket_group", 108, "daemon.socket_group: must be a non-empty string"),
        ("daemon.socket_group", ["twostep-clients"], "daemon.socket_group"),
        ("daemon.socket_group", "../etc", "daemon.socket_group: '../etc' is not a group name"),
        ("daemon.socket_group", "mail\nroot", "daemon.socket_group"),
        ("daemon.socket_group", "Twostep Clients", "is not a group name"),
        ("daemon.socket_group", "x" * 33, "is not a group name"),
        ("daemon.max_connections_per_uid", 0, "daemon.max_connections_per_uid: must be between"),
        ("daemon.max_connections_per_uid", -5, "must be between 1 and 65536"),
        ("daemon.max_connections_per_uid", 65537, "must be between 1 and 65536"),
        ("daemon.max_connections_per_uid", True, "must be a whole number"),
        ("daemon.max_connections_per_uid", "256", "must be a whole number"),
        ("daemon.max_connections_per_uid", 2.5, "must be a whole number"),
        ("daemon.verify", {"users": ["dovecot", "#105"]}, "'#105' is not a user or group name"),
        ("daemon.verify", {"uids": [105]}, "daemon.verify.uids: unknown key"),
        ("mail_sessions.hosts", {"name": "a"}, "mail_sessions.hosts: must be a list"),
        ("mail_sessions.hosts", ["http://127.0.0.1/"], "must be a mapping"),
        ("mail_sessions.hosts", [{"url": "http://127.0.0.1/"}], "name: required"),
        ("mail_sessions.hosts", [{"name": "a b", "url": "http://[::1]/"}], "name: letters"),
        ("mail_sessions.hosts", [{"name": "a", "url": "http://10.1.1.1/"}], "in clear text"),
        ("mail_sessions.hosts", [{"name": "a", "url": "ftp://127.0.0.1/"}], "not an http"),
        ("mail_sessions.hosts", [{"name": "a", "url": "http://u:p@127.0.0.1/"}], "not an http"),
        ("mail_sessions.hosts", [{"name": "a", "url": "http://127.0.0.1:99999/"}], "not an http"),
        ("mail_sessions.hosts", [{"name": "a", "url": "https://m/", "port": 1}], "port: unknown"),
        ("mail_sessions.hosts", [{"name": "a", "url": "https://m/", "auth_master": "x"}], "absol"),
        (
            "mail_sessions.hosts",
            [{"name": "a", "url": "https://m/"}, {"name": "a", "url": "https://n/"}],
            "same name",
        ),
        ("mail_sessions.timeout", 0, "mail_sessions.timeout: must be between"),
        ("mail_sessions.api_key", "secret", "mail_sessions.api_key: unknown key"),
        ("stale_clients.notify.command", "sendmail -t", "must be a list"),
        ("stale_clients.notify.command", ["sendmail", "-t"], "absolute program path"),
        ("stale_clients.notify.command", ["/bin/x", 3], "must be a non-empty string"),
        ("stale_clients.notify.to", "a@b, c@d", "one address"),
        ("stale_clients.notify.to", "Eve <eve@example.org>", "one address"),
        ("stale_clients.notify.from", "a\nBcc: x@y", "printable characters"),
        ("stale_clients.notify.per_day", 0, "between 1 and 10"),
        ("stale_clients.notify.per_day", 11, "between 1 and 10"),
        ("stale_clients.notify.timeout", 0, "must be between"),
        ("stale_clients.notify.shell", True, "stale_clients.notify.shell: unknown key"),
        ("stale_clients.keep", 3, "stale_clients.keep: unknown key"),
    ],
)
def test_errors_name_the_key(path: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("{", r"\{")):
        parse_config(with_(path, value))


@pytest.mark.parametrize(
    "missing", ["ldap", "users", "keys", "ldap.uris", "ldap.bind_dn", "users.base", "keys.current"]
)
def test_required_keys(missing: str) -> None:
    data = copy.deepcopy(GOOD)
    *parents, last = missing.split(".")
    node = data
    for part in parents:
        node = node[part]
    del node[last]
    with pytest.raises(ConfigError, match="required"):
        parse_config(data)


def test_stale_client_notices_are_off_by_default() -> None:
    assert parse_config(GOOD).stale_notice.command == ()
    data = with_("stale_clients.notify", {"command": ["/usr/sbin/sendmail", "-t", "-i"]})
    notice = parse_config(data).stale_notice
    assert notice.command == ("/usr/sbin/sendmail", "-t", "-i") and notice.per_day == 3
    from pam_twostep.core.staleclients import MAX_STALE

    parse_config(with_("stale_clients.notify", {"per_day": MAX_STALE}))  # the most allowed


def test_daemon_defaults_keep_the_socket_to_its_group() -> None:
    """The socket is not world-writable unless asked for, and no uid may take every place."""
    daemon = parse_config(GOOD).daemon
    assert daemon.socket_mode == 0o660
    assert daemon.socket_group == "twostep-clients"
    assert daemon.max_connections_per_uid == 256
    assert daemon.max_connections_per_uid < daemon.max_connections
    assert daemon.verify.users == {"root", "dovecot", "postfix"}  # names, resolved later
    data = with_(
        "daemon",
        {
            "socket_mode": "0600",
            "socket_group": "mail",
            "max_connections_per_uid": 30,
            "verify": {"users": ["dovecot"], "groups": ["mail"]},
        },
    )
    daemon = parse_config(data).daemon
    assert (daemon.socket_mode, daemon.socket_group) == (0o600, "mail")
    assert daemon.max_connections_per_uid == 30
    assert (daemon.verify.users, daemon.verify.groups) == ({"dovecot"}, {"mail"})


def test_portal_listens_on_tcp_or_a_unix_socket() -> None:
    portal = parse_config(GOOD).portal
    assert portal.listen == ("127.0.0.1", 8080) and portal.trusted_proxies == 0
    assert (portal.socket_mode, portal.socket_group) == (0o660, "www-data")
    assert parse_config(with_("portal.listen", "[::1]:8443")).portal.listen == ("::1", 8443)
    data = with_(
        "portal",
        {
            "listen": "unix:/run/twostep-portal/portal.sock",
            "trusted_proxies": 1,
            "socket_mode": "0600",
            "socket_group": "nginx",
        },
    )
    portal = parse_config(data).portal
    assert portal.listen == Path("/run/twostep-portal/portal.sock")
    assert (portal.trusted_proxies, portal.socket_mode, portal.socket_group) == (1, 0o600, "nginx")


@pytest.mark.parametrize(
    ("portal", "message"),
    [
        ({"listen": "unix:portal.sock"}, "portal.listen: 'unix:portal.sock': give unix:/absolute"),
        ({"listen": "unix:"}, "portal.listen: 'unix:': give unix:/absolute/path.sock"),
        ({"listen": "/run/portal.sock"}, "is not host:port or unix:/path"),
        ({"listen": "8080"}, "is not host:port or unix:/path"),
        ({"socket_mode": 0o660}, "portal.socket_mode: must be an octal mode in quotes"),
        ({"socket_group": "../etc"}, "portal.socket_group: '../etc' is not a group name"),
        # Over TCP any local user connects like the proxy and would choose their address.
        (
            {"listen": "127.0.0.1:8080", "trusted_proxies": 1},
            "portal.trusted_proxies: refused with portal.listen on TCP (127.0.0.1:8080)",
        ),
        (
            {"trusted_proxies": 2},
            "listen on a UNIX socket (portal.listen: unix:/run/twostep-portal",
        ),
    ],
)
def test_portal_errors_name_the_key(portal: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(with_("portal", portal))
    assert message in str(caught.value)


def test_starttls_allows_remote_ldap() -> None:
    data = with_("ldap.uris", ["ldap://ldap.example.org/"])
    data["ldap"]["start_tls"] = True
    assert parse_config(data).ldap.start_tls


def test_load_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "twostep.yaml"
    path.write_text(yaml.safe_dump(with_("ldap.colour", 1)))
    with pytest.raises(ConfigError, match=f"{path}: ldap.colour: unknown key"):
        load_config(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ldap: [\n", "line"),
        ("a: 1\na: 2\n", "duplicate key 'a'"),
        ("? [a, b]\n: 1\n", "a key must be a plain value"),  # found by tests/fuzz
        ("{? {a: 1}: 1}\n", "a key must be a plain value"),
        ("!!python/object/apply:os.system ['true']\n", "could not determine"),
        ("- 1\n- 2\n", "top level: must be a mapping"),
        ("ldap: \x80\x81\n", "not valid YAML"),
        ("\xff\xfe", "required"),
    ],
)
def test_load_bad_yaml(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "twostep.yaml"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_load_missing_and_huge(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
    huge = tmp_path / "huge.yaml"
    huge.write_bytes(b"#" * (1 << 20) + b"\n")
    with pytest.raises(ConfigError, match="larger than 1 MiB"):
        load_config(huge)


def test_billion_laughs_is_refused_quickly(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match="required"):
        load_config(path)


def test_config_path_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TWOSTEP_CONFIG", raising=False)
    assert config_path() == DEFAULT_PATH
    monkeypatch.setenv("TWOSTEP_CONFIG", "/tmp/env.yaml")
    assert config_path() == Path("/tmp/env.yaml")
    assert config_path("/tmp/arg.yaml") == Path("/tmp/arg.yaml")


def test_secrets_are_checked_and_named(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    secret = tmp_path / "ldap.secret"
    secret.write_text("pw")
    os.chmod(secret, 0o644)
    data = with_("ldap.bind_password_file", str(secret))
    data["keys"]["directory"] = str(tmp_path / "keys")
    config = parse_config(data, tmp_path / "twostep.yaml")
    with pytest.raises(ConfigError, match=r"twostep.yaml: ldap.bind_password_file .*everyone"):
        load_secrets(config)
    os.chmod(secret, 0o600)
    with pytest.raises(ConfigError, match=r"no \*\.key"):
        load_secrets(config)


def test_secrets_repr_hides_them(secrets_dir: Path) -> None:
    data = with_("ldap.bind_password_file", str(secrets_dir / "ldap.secret"))
    data["keys"]["directory"] = str(secrets_dir / "keys")
    loaded = load_secrets(parse_config(data))
    assert loaded.bind_password not in repr(loaded)


_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=30)
)
_tree = st.recursive(
    _leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=300)
@given(
    st.dictionaries(
        st.sampled_from(
            ["ldap", "users", "keys", "policy", "totp", "services", "audit", "logging", "other"]
        ),
        _tree,
        max_size=6,
    )
)
def test_arbitrary_documents_give_config_errors_only(document: dict[str, Any]) -> None:
    with contextlib.suppress(ConfigError):
        parse_config(document)


@settings(max_examples=200)
@given(
    st.sampled_from(
        [
            "ldap.timeout",
            "ldap.pool_size",
            "ldap.uris",
            "users.filter",
            "totp.digits",
            "policy.defaults",
            "services.mail",
            "keys.current",
        ]
    ),
    _tree,
)
def test_arbitrary_values_give_config_errors_only(path: str, value: object) -> None:
    try:
        parse_config(with_(path, value))
    except ConfigError as exc:
        assert path.split(".", 1)[0] in str(exc)


# -- mail_settings (the portal's set-up downloads, issue 18) ----------------------------

MAIL = {"imap": {"host": "mail.example.org"}, "smtp": {"host": "mail.example.org"}}


def test_mail_settings_are_off_unless_given() -> None:
    assert parse_config(GOOD).mail_settings is None
    assert parse_config(with_("mail_settings", None)).mail_settings is None


def test_mail_settings_defaults_follow_the_security() -> None:
    settings = parse_config(with_("mail_settings", MAIL)).mail_settings
    assert settings is not None
    assert (settings.imap.port, settings.imap.security) == (993, "ssl")
    assert (settings.smtp.port, settings.smtp.security) == (465, "ssl")
    assert settings.address == "{user}" and settings.display_name is None
    starttls = {
        "address": "{user}@example.org",
        "display_name": "Example Mail",
        "imap": {"host": "imap.example.org", "security": "starttls"},
        "smtp": {"host": "smtp.example.org", "security": "starttls"},
    }
    settings = parse_config(with_("mail_settings", starttls)).mail_settings
    assert settings is not None
    assert (settings.imap.port, settings.smtp.port) == (143, 587)
    assert settings.display_name == "Example Mail"
    lab = {
        "imap": {"host": "127.0.0.1", "port": 10143, "security": "none"},
        "smtp": {"host": "::1", "port": 10025, "security": "none"},
    }
    settings = parse_config(with_("mail_settings", lab)).mail_settings
    assert settings is not None and settings.imap.port == 10143 and settings.smtp.host == "::1"


@pytest.mark.parametrize(
    ("mail", "message"),
    [
        ({"imap": MAIL["imap"]}, r"mail_settings\.smtp: required"),
        ({"smtp": MAIL["smtp"]}, r"mail_settings\.imap: required"),
        ({}, r"mail_settings\.imap: required"),
        ({**MAIL, "adress": "{user}"}, r"mail_settings\.adress: unknown key"),
        ({**MAIL, "imap": {"host": "h.example.org", "tls": True}}, r"imap\.tls: unknown key"),
        ({**MAIL, "imap": {"port": 993}}, r"mail_settings\.imap\.host: required"),
        ({**MAIL, "smtp": "mail.example.org"}, r"mail_settings\.smtp: must be a mapping"),
        ({**MAIL, "imap": {"host": "mail.example.org", "security": "tls"}}, "ssl, starttls"),
        ({**MAIL, "imap": {"host": "mail.example.org", "security": True}}, "ssl, starttls"),
        ({**MAIL, "imap": {"host": "mail.example.org", "port": 0}}, r"imap\.port: must be"),
        ({**MAIL, "smtp": {"host": "mail.example.org", "port": "587"}}, r"smtp\.port: must"),
        ({**MAIL, "imap": {"host": "mail.example.org", "security": "none"}}, "clear text"),
        ({**MAIL, "smtp": {"host": "10.0.0.1", "security": "none"}}, "clear text"),
        ({**MAIL, "imap": {"host": "evil</hostname>"}}, r"imap\.host: .* not a host"),
        ({**MAIL, "imap": {"host": "a b.example.org"}}, r"imap\.host"),
        ({**MAIL, "imap": {"host": "-x.example.org"}}, r"imap\.host"),
        ({**MAIL, "imap": {"host": "10.0.1"}}, r"imap\.host"),  # read as 10.0.0.1
        ({**MAIL, "imap": {"host": "1234"}}, r"imap\.host"),
        ({**MAIL, "imap": {"host": "fe80::1%eth0"}}, r"imap\.host"),
        ({**MAIL, "address": "{user}@{user}.org"}, r"mail_settings\.address"),
        ({**MAIL, "address": "someone@example.org"}, r"mail_settings\.address"),
        ({**MAIL, "address": "{user} <{user}@example.org>"}, r"mail_settings\.address"),
        ({**MAIL, "address": "{user}@exa mple.org"}, r"mail_settings\.address"),
        ({**MAIL, "address": "{user}@example.org\n"}, r"mail_settings\.address"),
        ({**MAIL, "address": "{username}@example.org"}, r"mail_settings\.address"),
        ({**MAIL, "display_name": ""}, r"mail_settings\.display_name"),
        ({**MAIL, "display_name": "x" * 65}, r"mail_settings\.display_name: at most 64"),
        ({**MAIL, "display_name": "Mail\x00"}, r"mail_settings\.display_name"),
        ("yes", r"mail_settings: must be a mapping"),
    ],
)
def test_mail_settings_errors_name_the_key(mail: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(with_("mail_settings", mail))


@settings(max_examples=200)
@given(
    st.sampled_from(
        [
            "mail_settings",
            "mail_settings.address",
            "mail_settings.display_name",
            "mail_settings.imap",
            "mail_settings.imap.host",
            "mail_settings.imap.port",
            "mail_settings.smtp.security",
        ]
    ),
    _tree,
)
def test_arbitrary_mail_settings_give_config_errors_only(path: str, value: object) -> None:
    data = with_("mail_settings", copy.deepcopy(MAIL))
    node: Any = data
    *parents, last = path.split(".")
    for part in parents:
        node = node[part] if isinstance(node.get(part), dict) else node.setdefault(part, {})
    node[last] = value
    try:
        parse_config(data)
    except ConfigError as exc:
        assert "mail_settings" in str(exc)


def test_policy_dates_as_yaml_writes_them() -> None:
    """Issue 18: YAML turns a bare date into a ``datetime.date`` and a time with an
    offset into a ``datetime``; both are taken, a time without its offset is not."""
    base = yaml.safe_dump(GOOD) + "policy:\n  defaults:\n"
    text = (
        base + "    required_from: 2027-01-15\n    mail_password_until: 2027-02-01T09:00:00+01:00\n"
    )
    config = parse_config(yaml.safe_load(text))
    assert config.policy.defaults == {
        "required_from": 1799971200,
        "mail_password_until": 1801468800,
    }
    with pytest.raises(ConfigError, match="UTC offset"):
        parse_config(yaml.safe_load(base + "    required_from: 2027-01-15 09:00:00\n"))
