"""The configuration as the rest of the program sees it: frozen dataclasses.

Each default is defined once, here, as the dataclass field's default; the parser
(``config/__init__.py``) falls back to these and never repeats a value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..core.keyring import Keyring
from ..core.totp import TotpParams

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
    "MAIL_PORTS",
    "MailSecurity",
    "MailServer",
    "MailSessionsConfig",
    "MailSettingsConfig",
    "StaleNoticeConfig",
    "PolicyConfig",
    "PortalConfig",
    "Secrets",
    "TotpConfig",
    "UsersConfig",
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
    """Seconds on a later URI before trying the earlier ones again; they must also have
    caught up (contextCSN) before the daemon moves back."""
    single_use: str = "strict"
    """``strict``: single-use writes (codes, backup codes, enrollment) only on the first
    URI, a temporary failure while it is unreachable, and no code ever accepted twice;
    ``available``: writes fail over with reads, and a code can be used twice while hosts
    use different providers, within the replication delay (docs/security.md)."""


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
class MailHost:
    """One Dovecot server whose open sessions twostepd ends when a credential goes."""

    name: str
    url: str
    """Its doveadm HTTP API: ``http://`` on loopback, else ``https://``."""
    auth_master: Path | None = None
    """Its ``auth-master`` socket (same host only), for flushing the auth cache where the
    HTTP API cannot (Dovecot 2.4); None: flushed through the HTTP API (2.3)."""


@dataclass(frozen=True)
class MailSessionsConfig:
    hosts: tuple[MailHost, ...] = ()
    """None: revocations reach the next login only (sessions already open stay)."""
    api_key_file: Path = Path("/etc/twostep/doveadm.key")
    """doveadm_api_key of the hosts, one line, mode 0600 or 0640 (read by twostepd only)."""
    timeout: float = 2.0
    """Seconds for each host to answer each request."""
    by_address: bool = False
    """End only the sessions from where a revoked credential was last seen (the user's
    other clients stay connected), not all of the user's; misses a copy of it used
    from elsewhere before that (core.revocation)."""


@dataclass(frozen=True)
class StaleNoticeConfig:
    """Telling owners of stale clients (``core.staleclients``): off unless a command is
    given. It gets one RFC 5322 message on stdin per new stale client (so
    ``[/usr/sbin/sendmail, -t, -i]`` mails it through the local MTA) and the facts in
    ``TWOSTEP_*`` variables (for a hook)."""

    command: tuple[str, ...] = ()
    to: str = "{user}"
    """The To: address; ``{user}`` is the user name (bare: the MTA's local delivery)."""
    sender: str = "twostep"
    per_day: int = 3
    """At most this many messages per user a day."""
    timeout: float = 10.0


MailSecurity = Literal["ssl", "starttls", "none"]
"""How a mail client reaches a server: TLS from the first byte, STARTTLS, or in clear
(loopback only: the lab)."""

MAIL_PORTS: Mapping[tuple[str, MailSecurity], int] = {
    ("imap", "ssl"): 993,
    ("imap", "starttls"): 143,
    ("imap", "none"): 143,
    ("smtp", "ssl"): 465,
    ("smtp", "starttls"): 587,
    ("smtp", "none"): 587,
}
"""The port a ``mail_settings`` server gets when none is given, by protocol and security."""


@dataclass(frozen=True)
class MailServer:
    """Where a mail client finds one server (``mail_settings.imap``, ``.smtp``)."""

    host: str
    port: int
    """Given, or ``MAIL_PORTS`` for the protocol and security."""
    security: MailSecurity = "ssl"


@dataclass(frozen=True)
class MailSettingsConfig:
    """What the portal puts in a configuration download (``mailprofiles``) besides the
    user name and the new passcode: the servers a mail client should use. Absent, the
    portal offers no download."""

    imap: MailServer
    smtp: MailServer
    address: str = "{user}"
    """The email address; ``{user}`` is the account's user name (``{user}@example.org``)."""
    display_name: str | None = None
    """How the account is named in the mail client; None: by its address."""


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
    mail_sessions: MailSessionsConfig = MailSessionsConfig()
    stale_notice: StaleNoticeConfig = StaleNoticeConfig()
    mail_settings: MailSettingsConfig | None = None
    """Server settings for the portal's configuration downloads; None: none offered."""
    log_level: str = "info"
    source: Path | None = None


@dataclass(frozen=True)
class Secrets:
    """What only the daemon holds. ``repr`` shows no secret."""

    bind_password: str = field(repr=False)
    keyring: Keyring = field(repr=False)
    doveadm_key: str | None = field(default=None, repr=False)
    """The mail servers' doveadm API key, when ``mail_sessions`` lists any."""
