"""``twostep check``: is this installation sound? One finding per line, with the fix.

It runs where the administrator is (as root): it reads the configuration and the secret
files itself, talks to every LDAP server directly as the service identity, and asks the
daemon for a ping. Nothing is changed: the write probe deletes a value that cannot
exist, which the server refuses with "no such value" when writing is allowed and with
"insufficient access" when it is not.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import shutil
import socket as sockets
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from . import wire
from .config import Config, LdapConfig, load_config, load_secrets
from .core.account import ACCOUNT_CLASS, Attr
from .core.changes import Change, Modify
from .core.errors import ConfigError, Conflict, DirectoryUnavailable, TwostepError
from .core.policy import POLICY_ATTRIBUTES
from .directory import Directory

__all__ = ["Finding", "run_checks"]

_PROBE = '{"id":"twostep-check-probe"}'
_PACKAGED = "/usr/share/twostep/dovecot/conf.d"


@dataclass(frozen=True)
class Finding:
    ok: bool
    what: str
    advice: str = ""

    def __str__(self) -> str:
        mark = "ok  " if self.ok else "FAIL"
        return f"{mark} {self.what}" + (f" -> {self.advice}" if self.advice else "")

    def as_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


def _directory(config: Config, password: str, uris: tuple[str, ...]) -> Directory:
    return Directory(dataclasses.replace(config.ldap, uris=uris), config.users, password)


def _ldap_findings(
    config: Config, password: str, user: str | None, user_password: str | None
) -> list[Finding]:
    findings = []
    consumer = _single_use_finding(config.ldap)
    if consumer is not None:
        findings.append(consumer)
    for uri in config.ldap.uris:
        directory = _directory(config, password, (uri,))
        try:
            directory.search(config.users.base, "(objectClass=*)", ["1.1"], limit=1)
            findings.append(Finding(True, f"{uri}: reachable, service identity binds"))
            if len(config.ldap.uris) > 1:
                findings.append(_replication_finding(uri, directory))
        except DirectoryUnavailable as exc:
            findings.append(
                Finding(
                    False,
                    f"{uri}: {exc}",
                    "check the URI, the server, ldap.bind_dn and its password",
                )
            )
        finally:
            directory.close()
    directory = _directory(config, password, config.ldap.uris)
    try:
        schema = directory.read("cn=Subschema", ["attributeTypes", "objectClasses"])
        defined = (
            b" ".join(schema.get("attributeTypes") + schema.get("objectClasses")) if schema else b""
        )
        # the policy attributes too: a schema from before a release that added one
        # (twostepRequiredFrom, ...) takes logins but refuses setting it
        wanted = (*Attr.STATE, *POLICY_ATTRIBUTES, ACCOUNT_CLASS)
        missing = [name for name in wanted if f"'{name}'".encode() not in defined]
        findings.append(
            Finding(
                not missing,
                "twostep schema "
                + ("loaded" if not missing else f"missing: {', '.join(missing[:4])}"),
                ""
                if not missing
                else "load ldap_schema/twostep.ldif, or upgrade a loaded one with "
                "ldap_schema/upgrade-cn-config.sh and apply acl.ldif (see ldap_schema/README.md)",
            )
        )

        findings.append(_policy_finding(directory, config))
        probe_dn = None
        if user:
            found = directory.find_account(user, ["1.1"])
            probe_dn = found.dn if found else None
            if probe_dn is None:
                findings.append(
                    Finding(
                        False,
                        f"user {user!r} not found under {config.users.base}",
                        "check users.base and users.filter",
                    )
                )
        else:
            entries = directory.search(config.users.base, "(objectClass=*)", ["1.1"], limit=2)
            probe_dn = next(
                (e.dn for e in entries if e.dn.lower() != config.users.base.lower()), None
            )
        if probe_dn:
            findings += _access_findings(directory, probe_dn, user, user_password)
    except DirectoryUnavailable as exc:
        findings.append(Finding(False, f"directory: {exc}", "see the server's log"))
    finally:
        directory.close()
    return findings


def _single_use_finding(ldap: LdapConfig) -> Finding | None:
    """Under ``strict`` the first URI decides single use for every host that lists it
    first: a name that means this host's own slapd (ldapi://, loopback) means another
    server on each host, and each would accept the same code once."""
    if ldap.single_use != "strict" and len(ldap.uris) > 1:
        return None  # codes are consumed wherever reads go
    first = ldap.uris[0]
    what = f"{first}: consumes every code" + (
        " (ldap.single_use strict)" if len(ldap.uris) > 1 else ""
    )
    if not _local(first):
        return Finding(True, what + "; every host must list it first")
    return Finding(
        True,
        what + "; it is this host's own slapd",
        "if twostepd on other hosts uses this directory or its replicas, list one "
        "provider first by a name every host reaches, the same on all (docs/security.md)",
    )


_LOCAL_NAMES = ("", "localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")


def _local(uri: str) -> bool:
    """Whether ``uri`` names this host whichever host reads it (no name resolution:
    Debian maps the host's own name to 127.0.1.1, which would flag a sound provider)."""
    parsed = urllib.parse.urlsplit(uri)
    if parsed.scheme == "ldapi":
        return True
    try:
        host = (parsed.hostname or "").rstrip(".").lower()
    except ValueError:
        return False
    if host in _LOCAL_NAMES or host.endswith(".localhost"):
        return True
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(host)
    except ValueError:
        try:  # 127.1, 2130706433, 0x7f000001: libldap's resolver takes these too
            address = ipaddress.IPv4Address(sockets.inet_aton(host))
        except OSError:
            return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback or address.is_unspecified


def _replication_finding(uri: str, directory: Directory) -> Finding:
    """Fail-back compares contextCSNs: without them it can only trust its timer."""
    readable = bool(directory.context_csns())
    return Finding(
        readable,
        f"{uri}: contextCSN {'readable' if readable else 'NOT readable'} (fail-back "
        "waits until a returning provider has caught up)",
        ""
        if readable
        else "load the syncprov overlay on the database, and let the service identity "
        "read the suffix entry's contextCSN (the shipped acl.ldif does)",
    )


def _access_findings(
    directory: Directory, dn: str, user: str | None, user_password: str | None
) -> list[Finding]:
    findings = []
    try:
        # guarded: under strict, where codes are written (the first URI), not elsewhere
        directory.modify(dn, Modify((Change.delete(Attr.USAGE, _PROBE),), guarded=True))
        writable = True  # pragma: no cover - the probe value never exists
    except Conflict:
        writable = True
    except DirectoryUnavailable:
        writable = False
    findings.append(
        Finding(
            writable,
            f"service identity {'may' if writable else 'may NOT'} write two-step attributes ({dn})",
            ""
            if writable
            else "load ldap_schema/acl.ldif or give the service "
            "write access to the twostep attributes",
        )
    )
    entry = directory.read(dn, [Attr.PASSWORD])
    readable = bool(entry and entry.get(Attr.PASSWORD))
    findings.append(
        Finding(
            readable,
            "service identity "
            + (
                "reads userPassword (password changes revoke passcodes)"
                if readable
                else "cannot read userPassword: a password change would NOT revoke passcodes"
            ),
            "" if readable else "grant the service read access to userPassword (acl.ldif rule {0})",
        )
    )
    anonymous = directory.read_as(dn, ["*", Attr.ENABLED, Attr.PASSWORD])
    leaked = sorted(
        a
        for a, v in (anonymous.attributes if anonymous else {}).items()
        if v and a != "objectclass"
    )
    findings.append(
        Finding(
            not leaked,
            "anonymous clients "
            + ("see nothing of the entry" if not leaked else f"can read {', '.join(leaked[:4])}"),
            "" if not leaked else "deny anonymous reads (acl.ldif: 'by * none')",
        )
    )
    if user and user_password is not None:
        try:
            own = directory.read_as(dn, ["*", *Attr.STATE], dn, user_password)
        except DirectoryUnavailable as exc:
            findings.append(Finding(False, f"cannot bind as {user}: {exc}", "check the password"))
            return findings
        service_view = directory.read(dn, list(Attr.STATE))
        stored = sorted(
            a
            for a, v in (service_view.attributes if service_view else {}).items()
            if v and a.startswith("twostep")
        )
        visible = sorted(
            a
            for a, v in (own.attributes if own else {}).items()
            if v and (a.startswith("twostep") or a == Attr.PASSWORD.lower())
        )
        if not stored and not visible:
            findings.append(
                Finding(
                    True,
                    f"{user} has no two-step values yet: enroll them "
                    "and check again to test their access",
                )
            )
        else:
            findings.append(
                Finding(
                    not visible,
                    f"{user} bound as themselves "
                    + (
                        "reads none of their two-step attributes nor their password hash"
                        if not visible
                        else f"can read {', '.join(visible[:4])}"
                    ),
                    "" if not visible else "load ldap_schema/acl.ldif: only the service may",
                )
            )
    return findings


def run_checks(
    path: Path, user: str | None = None, user_password: str | None = None, socket: str | None = None
) -> list[Finding]:
    try:
        config = load_config(path)
    except ConfigError as exc:
        return [Finding(False, str(exc), "fix the configuration file")]
    findings = [Finding(True, f"{path}: valid")]
    from .check_host import host_findings  # noqa: PLC0415 - it imports Finding from here

    findings += host_findings(config)
    try:
        secrets = load_secrets(config)
    except ConfigError as exc:
        # the directory cannot be asked without them; the daemon and Dovecot still can
        findings.append(Finding(False, str(exc), _secret_advice(config, str(exc))))
    else:
        ids = ", ".join(sorted(secrets.keyring.key_ids))
        findings.append(
            Finding(True, f"secret files private; keys {ids} (current {secrets.keyring.current})")
        )
        try:
            findings += _ldap_findings(config, secrets.bind_password, user, user_password)
        except TwostepError as exc:
            findings.append(Finding(False, str(exc)))
    socket_path = socket or str(config.daemon.socket)
    try:
        reply = wire.ask(socket_path, {"op": "ping"}, 5)
        answered = reply.get("result") == "ok"
        findings.append(
            Finding(
                answered,
                f"twostepd at {socket_path}: "
                + ("answers" if answered else f"refuses: {reply.get('error')}"),
                "" if answered else "add this user to daemon.manage or daemon.verify",
            )
        )
    except (OSError, wire.ProtocolError) as exc:
        findings.append(
            Finding(
                False,
                f"twostepd at {socket_path}: not answering ({exc})",
                "systemctl start twostepd; journalctl -u twostepd",
            )
        )
    dovecot = _dovecot_finding()
    if dovecot is not None:
        findings.append(dovecot)
    from .check_dovecot import dovecot_findings  # noqa: PLC0415 - it imports Finding from here

    findings += dovecot_findings()
    return findings


def _policy_finding(directory: Directory, config: Config) -> Finding:
    """policy.default must name an entry: without it every login is a temporary failure
    (the policy in force cannot be known), two-step off or not."""
    default = config.policy.default
    if default is None:
        return Finding(True, "policy.default: none (the site-wide defaults apply)")
    if directory.read(default, ["1.1"]) is not None:
        return Finding(True, f"policy.default {default}: found")
    return Finding(
        False,
        f"policy.default {default}: no such entry, so every login fails",
        "add it (objectClass applicationProcess and twostepPolicy, see ldap_schema/README.md)"
        " or set policy.default to an entry that exists",
    )


def _secret_advice(config: Config, problem: str) -> str:
    """How to make the secret file the problem names."""
    password_file = str(config.ldap.bind_password_file)
    if password_file in problem and "No such file" in problem:
        return (
            f"put the service identity's password in {password_file}: "
            f"install -m 0600 -o twostep -g twostep /dev/null {password_file}, then write it"
        )
    return "fix the file's owner and mode"


def _dovecot_finding() -> Finding | None:
    """Which passdb the installed Dovecot can use: 2.4 removed checkpassword."""
    if shutil.which("dovecot") is None:
        return None
    from .lab.dovecot_config import DovecotConfigError, installed_version  # noqa: PLC0415

    try:
        version = installed_version()
    except DovecotConfigError as exc:
        return Finding(False, f"Dovecot: {exc}", "check the dovecot-core package")
    # the package's copies, else the checkout's
    conf_d = _PACKAGED if Path(_PACKAGED).is_dir() else "conf.d"
    if version.is_24:
        return Finding(
            True,
            f"Dovecot {version.text}: use the Lua passdb ({conf_d}/auth-twostep-lua-2.4.conf.ext);"
            " Dovecot 2.4 has no checkpassword passdb",
        )
    return Finding(
        True,
        f"Dovecot {version.text}: the Lua passdb ({conf_d}/auth-twostep-lua.conf.ext, for busy"
        f" servers) or the checkpassword program ({conf_d}/auth-twostep-checkpassword.conf.ext)",
    )
