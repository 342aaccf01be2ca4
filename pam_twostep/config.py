"""``/etc/twostep/twostep.yaml``, parsed once into frozen dataclasses.

Unknown keys, duplicate keys and wrong types are errors that name the key and the file:
a typo in a security setting must not silently fall back to a default. Secret files (the
service password, the keys) are not read here but by ``load_secrets``, which runs only in
the process that needs them (the daemon) and refuses files others can read.
"""

from __future__ import annotations

import ipaddress
import os
import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from .core.duration import parse_duration
from .core.errors import ConfigError
from .core.keyring import Keyring
from .core.policy import overrides_from_mapping
from .core.records import check_service_name
from .core.totp import Algorithm, TotpParams
from .keyfiles import load_keyring
from .secretfile import read_secret_file

__all__ = [
    "DEFAULT_PATH",
    "AccessList",
    "DaemonConfig",
    "DEFAULT_MAIL_SERVICES",
    "AuditConfig",
    "Config",
    "KeysConfig",
    "LdapConfig",
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
]

DEFAULT_PATH = Path("/etc/twostep/twostep.yaml")
DEFAULT_MAIL_SERVICES = frozenset(
    {
        "imap",
        "pop3",
        "smtp",
        "submission",
        "sieve",
        "managesieve",
        "lmtp",
        "activesync",
        "eas",
        "caldav",
        "carddav",
        "dav",
        "dovecot",  # Dovecot's PAM passdb asks as service "dovecot" unless told otherwise
    }
)
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


@dataclass(frozen=True)
class LdapConfig:
    uris: tuple[str, ...]
    bind_dn: str
    bind_password_file: Path
    start_tls: bool = False
    ca_file: Path | None = None
    timeout: float = 5.0
    """Seconds for connecting and for each operation."""
    pool_size: int = 16
    failback_after: int = 60
    """Seconds on a later URI before trying the earlier ones again (replication catches up)."""


@dataclass(frozen=True)
class UsersConfig:
    base: str
    filter: str = "(&(objectClass=inetOrgPerson)(uid={username}))"
    """``{username}`` is replaced by the escaped login name."""
    username_attribute: str = "uid"


@dataclass(frozen=True)
class PolicyConfig:
    base: str | None = None
    """Where ``twostep policy create`` puts class-of-service entries."""
    default: str | None = None
    """DN of the policy entry for accounts that name none."""
    defaults: Mapping[str, bool | int] = field(default_factory=dict)
    """Site-wide overrides of the built-in defaults in ``Policy``."""


@dataclass(frozen=True)
class KeysConfig:
    current: str
    directory: Path = Path("/etc/twostep/keys")


@dataclass(frozen=True)
class TotpConfig:
    issuer: str = "twostep"
    params: TotpParams = TotpParams()
    enrollment_lifetime: int = 3600


@dataclass(frozen=True)
class AuditConfig:
    syslog: bool = True
    facility: str = "auth"
    file: Path | None = None


@dataclass(frozen=True)
class AccessList:
    """Local users and groups, matched against a client's peer credentials."""

    users: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()


@dataclass(frozen=True)
class DaemonConfig:
    socket: Path = Path("/run/twostep/twostepd.sock")
    socket_mode: int = 0o660
    """Who may connect at all (owner, ``socket_group``; root always can): the first fence.
    What each may ask is decided by ``verify`` and ``manage``. World-writable, any local
    user could open connections, which twostepd must then spend descriptors on."""
    socket_group: str = "twostep-clients"
    """The socket's group; make install creates it with twostep, dovecot, postfix and
    twostep-portal in it. Resolved when the socket is made; a missing group is an error."""
    verify: AccessList = AccessList(frozenset({"root", "dovecot", "postfix"}))
    """May ask whether a login is right (Dovecot, Postfix, PAM as root). Names here are
    resolved to ids at start and reload; peers are matched by uid and gid."""
    manage: AccessList = AccessList(frozenset({"root"}))
    """May change any account, admin operations included (the twostep command as root).
    Not the portal: a self-service peer listed here could administer every account."""
    self_service: AccessList = AccessList(frozenset({"twostep-portal"}))
    """May change an account only for a user who has just signed in through twostepd,
    carrying the proof twostepd issued then (the portal's user); never reset, unlock,
    policy, import, keys, or a disable without the password."""
    processes: int = 0
    """Serving processes sharing the socket; 0 = one per CPU (at most 8). Python runs one
    thread at a time per process, so this is what uses more than one core."""
    workers: int = 16
    max_connections: int = 1024
    """Connections served at once, per serving process; only listed peers count."""
    max_connections_per_uid: int = 256
    """Of those, at most this many from one uid: a greedy client (a runaway Dovecot, a
    script as root) runs into its own limit, not everyone's. 256 is far above what
    Dovecot's auth workers (30 by default) and sshd's pending logins hold."""
    request_timeout: float = 5.0
    """Seconds for a request to arrive in full once it has begun (slow senders are cut)."""
    idle_timeout: float = 300.0
    """Seconds a connection may wait between requests."""


@dataclass(frozen=True)
class PortalConfig:
    """The self-service web portal (``twostep portal``), meant to sit behind a proxy."""

    listen: tuple[str, int] | Path = ("127.0.0.1", 8080)
    """``host:port``, or ``unix:/path`` (a Path): a UNIX socket, the only listen with
    which ``trusted_proxies`` is accepted."""
    socket_mode: int = 0o660
    """The UNIX socket's mode: connecting needs write permission on it."""
    socket_group: str = "www-data"
    """The UNIX socket's group: the reverse proxy's (nginx's on Debian); resolved at start."""
    secret_key_file: Path = Path("/etc/twostep/portal.key")
    """Signs session cookies: 32 random bytes in base64, like a key file."""
    service: str = "web"
    """The service name its sign-ins are decided and audited under."""
    idle_timeout: int = 900
    """A session unused this long ends."""
    session_lifetime: int = 43200
    """A session ends this long after sign-in, used or not."""
    reauth_window: int = 300
    """Sensitive changes need a password and code given at most this long ago."""
    secure_cookies: bool = True
    """Cookies only over HTTPS (``__Host-`` names); off only for a lab on loopback."""
    trusted_proxies: int = 0
    """Reverse proxies in front whose X-Forwarded-For/-Proto/-Host to believe: only with a
    UNIX socket ``listen``, so only peers that may open the socket file are believed."""


@dataclass(frozen=True)
class Config:
    ldap: LdapConfig
    users: UsersConfig
    keys: KeysConfig
    policy: PolicyConfig = PolicyConfig()
    totp: TotpConfig = TotpConfig()
    mail_services: frozenset[str] = DEFAULT_MAIL_SERVICES
    userdb_fields: Mapping[str, str] = field(default_factory=dict)
    """Dovecot userdb field -> LDAP attribute, returned with an accepted mail login."""
    audit: AuditConfig = AuditConfig()
    daemon: DaemonConfig = DaemonConfig()
    portal: PortalConfig = PortalConfig()
    log_level: str = "info"
    source: Path | None = None


@dataclass(frozen=True)
class Secrets:
    """What only the daemon holds. ``repr`` shows no secret."""

    bind_password: str = field(repr=False)
    keyring: Keyring = field(repr=False)


# ---------------------------------------------------------------------------------------
# Reading YAML strictly


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys instead of keeping the last one."""


def _mapping_without_duplicates(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        try:
            repeated = key in seen
        except TypeError:  # a list or mapping as a key
            raise yaml.constructor.ConstructorError(
                None, None, "a key must be a plain value", key_node.start_mark
            ) from None
        if repeated:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates
)

_T = TypeVar("_T")


class _Section:
    """One mapping of the file, read key by key; leftover keys are errors."""

    def __init__(self, data: object, where: str) -> None:
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"{where or 'top level'}: must be a mapping")
        self._data: dict[Any, Any] = dict(data)
        self._where = where

    def _name(self, key: str) -> str:
        return f"{self._where}.{key}" if self._where else key

    def take(self, key: str, parse: Callable[[object, str], _T], default: _T) -> _T:
        if key not in self._data:
            return default
        return parse(self._data.pop(key), self._name(key))

    def require(self, key: str, parse: Callable[[object, str], _T]) -> _T:
        if key not in self._data:
            raise ConfigError(f"{self._name(key)}: required")
        return parse(self._data.pop(key), self._name(key))

    def section(self, key: str) -> _Section:
        return _Section(self._data.pop(key, None), self._name(key))

    def raw(self, key: str) -> object:
        return self._data.pop(key, None)

    def done(self) -> None:
        if self._data:
            key = sorted(map(str, self._data))[0]
            raise ConfigError(f"{self._name(key)}: unknown key")


def _string(value: object, where: str) -> str:
    if not isinstance(value, str) or not value or len(value) > 1024 or not value.isprintable():
        raise ConfigError(f"{where}: must be a non-empty string of printable characters")
    return value


def _bool(value: object, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: must be true or false")
    return value


def _number(low: float, high: float) -> Callable[[object, str], float]:
    def parse(value: object, where: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: must be a number")
        if not low <= value <= high:
            raise ConfigError(f"{where}: must be between {low:g} and {high:g}")
        return float(value)

    return parse


def _integer(low: int, high: int) -> Callable[[object, str], int]:
    def parse(value: object, where: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: must be a whole number")
        if not low <= value <= high:
            raise ConfigError(f"{where}: must be between {low} and {high}")
        return value

    return parse


def _path(value: object, where: str) -> Path:
    text = _string(value, where)
    if not text.startswith("/"):
        raise ConfigError(f"{where}: must be an absolute path")
    return Path(text)


def _choice(options: tuple[str, ...]) -> Callable[[object, str], str]:
    def parse(value: object, where: str) -> str:
        if value not in options:
            raise ConfigError(f"{where}: must be one of {', '.join(options)}")
        return str(value)

    return parse


_DN = re.compile(r"[^=,]+=[^,]+(,[^=,]+=[^,]+)*")


def _dn(value: object, where: str) -> str:
    text = _string(value, where)
    if not _DN.fullmatch(text.replace("\\,", "").replace("\\=", "")):
        raise ConfigError(f"{where}: {text!r} is not a distinguished name")
    return text


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _uris(value: object, where: str) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or len(items) > 16:
        raise ConfigError(f"{where}: must be a URI or a list of 1 to 16 URIs")
    uris = []
    for item in items:
        uri = _string(item, where)
        try:
            parsed = urllib.parse.urlsplit(uri)
            _ = parsed.port  # raises for a port that is not a number from 0 to 65535
        except ValueError:
            parsed = None
        if (
            parsed is None
            or parsed.scheme not in ("ldap", "ldaps", "ldapi")
            or (parsed.scheme != "ldapi" and not parsed.hostname)
        ):
            raise ConfigError(f"{where}: {uri[:200]!r} is not an ldap://, ldaps:// or ldapi:// URI")
        uris.append(uri)
    return tuple(uris)


def portal_trust_refused(listen: tuple[str, int]) -> str:
    """Why ``portal.trusted_proxies`` is refused with a TCP ``portal.listen``."""
    return (
        f"portal.trusted_proxies: refused with portal.listen on TCP ({listen[0]}:{listen[1]}): "
        "any local user can connect to a TCP port and forge X-Forwarded-For; listen on a "
        "UNIX socket (portal.listen: unix:/run/twostep-portal/portal.sock, portal.socket_group "
        "the proxy's group) and proxy to it"
    )


def _listen(value: object, where: str) -> tuple[str, int] | Path:
    text = _string(value, where)
    if text.startswith("unix:"):
        path = text[len("unix:") :]
        if not path.startswith("/") or any(c.isspace() or c == "\0" for c in path):
            raise ConfigError(f"{where}: {text[:80]!r}: give unix:/absolute/path.sock")
        return Path(path)
    host, _, port = text.rpartition(":")
    host = host.strip("[]")
    if (
        not host
        or not port.isdigit()
        or not 0 < int(port) < 65536
        or any(c.isspace() or c in "/@?#" for c in host)
    ):
        raise ConfigError(f"{where}: {text[:80]!r} is not host:port or unix:/path")
    return host, int(port)


def _service_name(value: object, where: str) -> str:
    text = _string(value, where)
    if not re.fullmatch(r"[a-z0-9][a-z0-9_.-]{0,31}", text):
        raise ConfigError(f"{where}: 1-32 lower-case letters, digits, '.', '_' or '-'")
    return text


def _filter(value: object, where: str) -> str:
    text = _string(value, where)
    depth = 0
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0:
            break
    if (
        text.count("{username}") != 1
        or depth != 0
        or not (text.startswith("(") and text.endswith(")"))
    ):
        raise ConfigError(
            f"{where}: must be a parenthesised LDAP filter containing {{username}} once"
        )
    return text


def _attribute_name(value: object, where: str) -> str:
    text = _string(value, where)
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9-]{0,63}", text):
        raise ConfigError(f"{where}: not an attribute name")
    return text


def _key_id(value: object, where: str) -> str:
    text = _string(value, where)
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", text):
        raise ConfigError(f"{where}: use 1 to 32 letters, digits, - and _")
    return text


def _services(value: object, where: str) -> frozenset[str]:
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{where}: must be a non-empty list of service names")
    try:
        return frozenset(check_service_name(_string(item, where)) for item in value)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _policy_defaults(value: object, where: str) -> Mapping[str, bool | int]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: must be a mapping")
    try:
        return overrides_from_mapping({str(k): v for k, v in value.items()})
    except ValueError as exc:
        raise ConfigError(f"{where}.{exc}") from None


_NAME = re.compile(r"[a-z_][a-z0-9_.-]{0,31}")


def _access_list(value: object, where: str) -> AccessList:
    section = _Section(value, where)
    lists = []
    for key in ("users", "groups"):
        none: list[str] = []
        items = section.take(key, _list_of_strings, none)
        for item in items:
            if not _NAME.fullmatch(item):
                raise ConfigError(f"{where}.{key}: {item[:40]!r} is not a user or group name")
        lists.append(frozenset(items))
    section.done()
    return AccessList(lists[0], lists[1])


def _group_name(value: object, where: str) -> str:
    text = _string(value, where)
    if not _NAME.fullmatch(text):
        raise ConfigError(f"{where}: {text[:40]!r} is not a group name")
    return text


def _list_of_strings(value: object, where: str) -> list[str]:
    if not isinstance(value, list):
        raise ConfigError(f"{where}: must be a list")
    return [_string(item, where) for item in value]


def _mode(value: object, where: str) -> int:
    text = value if isinstance(value, str) else None
    if text is None or not re.fullmatch(r"0?[0-7]{3}", text):
        raise ConfigError(f'{where}: must be an octal mode in quotes, like "0660"')
    return int(text, 8)


_USERDB_FIELD = re.compile(r"[a-z][a-z0-9_]{0,31}")


def _userdb_fields(value: object, where: str) -> Mapping[str, str]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: must be a mapping of userdb field to LDAP attribute")
    result = {}
    for key, attribute in value.items():
        if not isinstance(key, str) or not _USERDB_FIELD.fullmatch(key):
            raise ConfigError(f"{where}: {str(key)[:40]!r} is not a userdb field name")
        result[key] = _attribute_name(attribute, f"{where}.{key}")
    return result


def _seconds(low: int, high: int, bounds: str) -> Callable[[object, str], int]:
    def check(value: object, where: str) -> int:
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        if not low <= seconds <= high:
            raise ConfigError(f"{where}: must be between {bounds}")
        return seconds

    return check


_duration = _seconds(60, 7 * 86400, "1 minute and 7 days")


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
        log_level=log_level,
        source=source,
    )


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
    except ConfigError as exc:
        where = f"{config.source}: " if config.source else ""
        raise ConfigError(f"{where}{exc}") from None
    return Secrets(bind_password=password, keyring=keyring)
