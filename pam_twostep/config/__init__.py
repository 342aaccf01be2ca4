"""``/etc/twostep/twostep.yaml``, parsed once into frozen dataclasses.

Unknown keys, duplicate keys and wrong types are errors that name the key and the file:
a typo in a security setting must not silently fall back to a default. Secret files (the
service password, the keys) are not read here but by ``load_secrets``, which runs only in
the process that needs them (the daemon) and refuses files others can read.

Layout: ``model.py`` holds the dataclasses (and every default, once), ``_values.py`` the
strict YAML loader and the readers of single values; this module walks the file section
by section and loads the secrets.
"""

from __future__ import annotations

import ipaddress
import os
import re
import urllib.parse
from collections.abc import Mapping
from pathlib import Path

import yaml

from ..core.errors import ConfigError
from ..core.totp import Algorithm, TotpParams
from ..keyfiles import load_keyring
from ..secretfile import read_secret_file
from ._values import (
    _access_list,
    _attribute_name,
    _bool,
    _choice,
    _command,
    _dn,
    _duration,
    _filter,
    _group_name,
    _integer,
    _is_loopback,
    _key_id,
    _listen,
    _mail_hosts,
    _mode,
    _number,
    _path,
    _policy_defaults,
    _seconds,
    _Section,
    _service_name,
    _services,
    _StrictLoader,
    _string,
    _uris,
    _userdb_fields,
    portal_trust_refused,
)
from .model import (
    DEFAULT_MAIL_SERVICES,
    DEFAULT_PATH,
    MAIL_PORTS,
    AccessList,
    AuditConfig,
    Config,
    DaemonConfig,
    KeysConfig,
    LdapConfig,
    MailHost,
    MailSecurity,
    MailServer,
    MailSessionsConfig,
    MailSettingsConfig,
    PolicyConfig,
    PortalConfig,
    Secrets,
    StaleNoticeConfig,
    TotpConfig,
    UsersConfig,
)

__all__ = [
    "DEFAULT_PATH",
    "DEFAULT_MAIL_SERVICES",
    "AccessList",
    "AuditConfig",
    "Config",
    "DaemonConfig",
    "KeysConfig",
    "LdapConfig",
    "MailHost",
    "MailSessionsConfig",
    "StaleNoticeConfig",
    "PolicyConfig",
    "PortalConfig",
    "Secrets",
    "TotpConfig",
    "UsersConfig",
    "config_from_yaml",
    "config_path",
    "load_config",
    "load_secrets",
    "parse_config",
    "portal_trust_refused",
]

_MAX_CONFIG_BYTES = 1 << 20
_SYSLOG_FACILITIES = (
    "auth",
    "authpriv",
    "daemon",
    "user",
    "mail",
    *(f"local{i}" for i in range(8)),
)
_LOG_LEVELS = ("debug", "info", "warning", "error")
_MAIL_SECURITY: dict[object, MailSecurity] = {"ssl": "ssl", "starttls": "starttls", "none": "none"}
_MAIL_HOST = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)
_ADDRESS = re.compile(
    r"[^\s<>,;:\"()\[\]\\{}@]{1,64}(@[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?)?"
)
"""One address (``{user}`` put in): a local part without what would need quoting, and
optionally a domain."""


def parse_config(data: object, source: Path | None = None) -> Config:
    """Validate an already-loaded YAML document; every error names the key."""
    top = _Section(data, "")

    ldap = top.section("ldap")
    ldap_config = LdapConfig(
        uris=ldap.require("uris", _uris),
        bind_dn=ldap.require("bind_dn", _dn),
        bind_password_file=ldap.require("bind_password_file", _path),
        start_tls=ldap.take("start_tls", _bool, LdapConfig.start_tls),
        ca_file=ldap.take("ca_file", _path, LdapConfig.ca_file),
        timeout=ldap.take("timeout", _number(0.1, 60), LdapConfig.timeout),
        pool_size=ldap.take("pool_size", _integer(1, 64), LdapConfig.pool_size),
        failback_after=ldap.take(
            "failback_after", _seconds(0, 86400, "0 and 1 day"), LdapConfig.failback_after
        ),
        single_use=ldap.take("single_use", _choice(("strict", "available")), LdapConfig.single_use),
    )
    ldap.done()
    for uri in ldap_config.uris:
        parsed = urllib.parse.urlsplit(uri)
        if (
            parsed.scheme == "ldap"
            and not ldap_config.start_tls
            and not _is_loopback(parsed.hostname or "")
        ):
            raise ConfigError(
                f"ldap.uris: {uri} would send passwords in clear text; use ldaps://, "
                "ldapi:// or set ldap.start_tls: true"
            )

    users = top.section("users")
    users_config = UsersConfig(
        base=users.require("base", _dn),
        filter=users.take("filter", _filter, UsersConfig.filter),
        username_attribute=users.take(
            "username_attribute", _attribute_name, UsersConfig.username_attribute
        ),
    )
    users.done()

    policy = top.section("policy")
    policy_config = PolicyConfig(
        base=policy.take("base", _dn, PolicyConfig.base),
        default=policy.take("default", _dn, PolicyConfig.default),
        defaults=policy.take("defaults", _policy_defaults, {}),
    )
    policy.done()

    keys = top.section("keys")
    keys_config = KeysConfig(
        current=keys.require("current", _key_id),
        directory=keys.take("directory", _path, KeysConfig.directory),
    )
    keys.done()

    totp = top.section("totp")
    issuer = totp.take("issuer", _string, TotpConfig.issuer)
    default_params = TotpParams()
    algorithm = totp.take(
        "algorithm",
        _choice(tuple(a.value for a in Algorithm)),
        default_params.algorithm.value,
    )
    digits = totp.take("digits", _integer(6, 8), default_params.digits)
    period = totp.take("period", _integer(15, 300), default_params.period)
    lifetime = totp.take("enrollment_lifetime", _duration, TotpConfig.enrollment_lifetime)
    totp.done()
    totp_config = TotpConfig(issuer, TotpParams(Algorithm(algorithm), digits, period), lifetime)

    services = top.section("services")
    mail_services = services.take("mail", _services, DEFAULT_MAIL_SERVICES)
    no_fields: Mapping[str, str] = {}
    userdb_fields = services.take("userdb_fields", _userdb_fields, no_fields)
    services.done()

    audit = top.section("audit")
    audit_config = AuditConfig(
        syslog=audit.take("syslog", _bool, AuditConfig.syslog),
        facility=audit.take("facility", _choice(_SYSLOG_FACILITIES), AuditConfig.facility),
        file=audit.take("file", _path, AuditConfig.file),
    )
    audit.done()

    daemon = top.section("daemon")
    defaults = DaemonConfig()
    daemon_config = DaemonConfig(
        socket=daemon.take("socket", _path, defaults.socket),
        socket_mode=daemon.take("socket_mode", _mode, defaults.socket_mode),
        socket_group=daemon.take("socket_group", _group_name, defaults.socket_group),
        verify=daemon.take("verify", _access_list, defaults.verify),
        manage=daemon.take("manage", _access_list, defaults.manage),
        self_service=daemon.take("self_service", _access_list, defaults.self_service),
        processes=daemon.take("processes", _integer(0, 64), defaults.processes),
        workers=daemon.take("workers", _integer(1, 256), defaults.workers),
        max_connections=daemon.take(
            "max_connections", _integer(1, 65536), defaults.max_connections
        ),
        max_connections_per_uid=daemon.take(
            "max_connections_per_uid", _integer(1, 65536), defaults.max_connections_per_uid
        ),
        request_timeout=daemon.take("request_timeout", _number(0.1, 60), defaults.request_timeout),
        idle_timeout=daemon.take("idle_timeout", _number(1, 86400), defaults.idle_timeout),
    )
    daemon.done()

    portal = top.section("portal")
    portal_defaults = PortalConfig()
    portal_config = PortalConfig(
        listen=portal.take("listen", _listen, portal_defaults.listen),
        secret_key_file=portal.take("secret_key_file", _path, portal_defaults.secret_key_file),
        service=portal.take("service", _service_name, portal_defaults.service),
        idle_timeout=portal.take(
            "idle_timeout", _seconds(60, 86400, "1 minute and 1 day"), portal_defaults.idle_timeout
        ),
        session_lifetime=portal.take(
            "session_lifetime",
            _seconds(300, 7 * 86400, "5 minutes and 7 days"),
            portal_defaults.session_lifetime,
        ),
        reauth_window=portal.take(
            "reauth_window",
            _seconds(30, 3600, "30 seconds and 1 hour"),
            portal_defaults.reauth_window,
        ),
        secure_cookies=portal.take("secure_cookies", _bool, portal_defaults.secure_cookies),
        trusted_proxies=portal.take("trusted_proxies", _integer(0, 5), 0),
        socket_mode=portal.take("socket_mode", _mode, portal_defaults.socket_mode),
        socket_group=portal.take("socket_group", _group_name, portal_defaults.socket_group),
    )
    portal.done()
    if portal_config.trusted_proxies and not isinstance(portal_config.listen, Path):
        raise ConfigError(portal_trust_refused(portal_config.listen))

    mail_sessions_config = _mail_sessions(top.section("mail_sessions"))
    stale_clients = top.section("stale_clients")
    stale_notice_config = _stale_notice(stale_clients.section("notify"))
    stale_clients.done()
    mail_settings_config = _mail_settings(top.raw("mail_settings"))

    logging_section = top.section("logging")
    log_level = logging_section.take("level", _choice(_LOG_LEVELS), Config.log_level)
    logging_section.done()

    top.done()
    return Config(
        ldap=ldap_config,
        users=users_config,
        keys=keys_config,
        policy=policy_config,
        totp=totp_config,
        mail_services=mail_services,
        userdb_fields=userdb_fields,
        audit=audit_config,
        daemon=daemon_config,
        portal=portal_config,
        mail_sessions=mail_sessions_config,
        stale_notice=stale_notice_config,
        mail_settings=mail_settings_config,
        log_level=log_level,
        source=source,
    )


def _mail_sessions(section: _Section) -> MailSessionsConfig:
    defaults = MailSessionsConfig()
    config = MailSessionsConfig(
        hosts=section.take("hosts", _mail_hosts, defaults.hosts),
        api_key_file=section.take("api_key_file", _path, defaults.api_key_file),
        timeout=section.take("timeout", _number(0.1, 30), defaults.timeout),
        by_address=section.take("by_address", _bool, defaults.by_address),
    )
    section.done()
    return config


def _stale_notice(section: _Section) -> StaleNoticeConfig:
    defaults = StaleNoticeConfig()
    command = section.take("command", _command, defaults.command)
    to = section.take("to", _string, defaults.to)
    sender = section.take("from", _string, defaults.sender)
    for name, value in (("to", to), ("from", sender)):
        if (
            not 1 <= len(value) <= 254
            or not value.isprintable()
            or any(c in value for c in "<>,; ")
        ):
            raise ConfigError(f"stale_clients.notify.{name}: one address, like user@example.org")
    config = StaleNoticeConfig(
        command=command,
        to=to,
        sender=sender,
        # at most core.staleclients.MAX_STALE: no more new ones are recorded in a day
        per_day=section.take("per_day", _integer(1, 10), defaults.per_day),
        timeout=section.take("timeout", _number(1, 120), defaults.timeout),
    )
    section.done()
    return config


def _mail_settings(data: object) -> MailSettingsConfig | None:
    """``mail_settings``: absent (or empty), the portal offers no configuration download;
    present, both servers are required, since the profiles set up IMAP and SMTP."""
    if data is None:
        return None
    section = _Section(data, "mail_settings")
    address = section.take("address", _string, MailSettingsConfig.address)
    if address.count("{user}") != 1 or not _ADDRESS.fullmatch(address.replace("{user}", "u")):
        raise ConfigError(
            "mail_settings.address: {user} once, in an address like {user}@example.org"
        )
    display_name = section.take("display_name", _string, MailSettingsConfig.display_name)
    if display_name is not None and len(display_name) > 64:
        raise ConfigError("mail_settings.display_name: at most 64 characters")
    config = MailSettingsConfig(
        imap=_mail_server(section.raw("imap"), "imap"),
        smtp=_mail_server(section.raw("smtp"), "smtp"),
        address=address,
        display_name=display_name,
    )
    section.done()
    return config


def _mail_server(data: object, protocol: str) -> MailServer:
    where = f"mail_settings.{protocol}"
    if data is None:
        raise ConfigError(f"{where}: required (host, and port and security if not the usual)")
    section = _Section(data, where)
    host = section.require("host", _string)
    if not _mail_host(host):
        raise ConfigError(f"{where}.host: {host[:80]!r} is not a host name or address")
    security = section.take("security", _mail_security, MailServer.security)
    port = section.take("port", _integer(1, 65535), MAIL_PORTS[protocol, security])
    section.done()
    if security == "none" and not _is_loopback(host):
        raise ConfigError(
            f"{where}.security: none would send passwords in clear text to {host}; "
            "use ssl or starttls (none is for a loopback host, the lab)"
        )
    return MailServer(host, port, security)


def _is_address(host: str) -> bool:
    """An IP address as written in full: no IPv6 zone (``%eth0``: meaningless on another
    machine), and no all-numeric name that is none (``10.0.1``, which clients read as
    ``10.0.0.1``) passes as a host name either (``_mail_host``)."""
    if "%" in host:
        return False
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _mail_host(host: str) -> bool:
    if _is_address(host):
        return True
    last = host.rsplit(".", 1)[-1]
    return bool(_MAIL_HOST.fullmatch(host)) and not last.isdigit()


def _mail_security(value: object, where: str) -> MailSecurity:
    try:
        return _MAIL_SECURITY[value]
    except (KeyError, TypeError):
        raise ConfigError(f"{where}: must be one of ssl, starttls, none") from None


def config_path(explicit: str | None = None) -> Path:
    """``--config`` wins over ``TWOSTEP_CONFIG``, which wins over the default."""
    return Path(explicit or os.environ.get("TWOSTEP_CONFIG") or DEFAULT_PATH)


def load_config(path: Path) -> Config:
    try:
        with open(path, "rb") as handle:
            text = handle.read(_MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    return config_from_yaml(text, path)


def config_from_yaml(text: bytes, source: Path | None = None) -> Config:
    """The configuration in ``text``; every problem is a ``ConfigError`` naming the place."""
    where = f"{source}" if source is not None else "configuration"
    if len(text) > _MAX_CONFIG_BYTES:
        raise ConfigError(f"{where}: larger than 1 MiB")
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f", line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise ConfigError(f"{where}{line}: {problem}") from None
    except RecursionError:
        raise ConfigError(f"{where}: nested too deeply") from None
    try:
        return parse_config(data, source)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def load_secrets(config: Config) -> Secrets:
    """Read the service password and the keys; refuse files that others can read."""
    try:
        password = read_secret_file(config.ldap.bind_password_file, "ldap.bind_password_file")
        keyring = load_keyring(config.keys.directory, config.keys.current)
        doveadm_key = (
            read_secret_file(config.mail_sessions.api_key_file, "mail_sessions.api_key_file")
            if config.mail_sessions.hosts
            else None
        )
    except ConfigError as exc:
        where = f"{config.source}: " if config.source else ""
        raise ConfigError(f"{where}{exc}") from None
    return Secrets(bind_password=password, keyring=keyring, doveadm_key=doveadm_key)
