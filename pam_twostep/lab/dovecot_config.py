"""Dovecot's configuration in the dialect of the installed version: 2.3 or 2.4.

Debian 12 ships Dovecot 2.3 and Debian 13 ships 2.4, whose configuration language changed
(a version line first, named passdb/userdb filters, ``%{user}`` for ``%u``, block-form
``import_environment``) and which has no checkpassword passdb at all. The lab, the tests
and the bench describe what they want once, as a :class:`Passdb` and a few settings; this
module is the one place that knows how each version spells it.

Errors::

    DovecotConfigError        Dovecot is missing, or its version cannot be read
     └── Unsupported          what was asked for does not exist in the installed Dovecot
"""

from __future__ import annotations

import functools
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "LDAP_SEARCH",
    "LDAP_TEMPLATE",
    "DovecotConfigError",
    "DovecotVersion",
    "LdapPassdb",
    "Passdb",
    "Settings",
    "Unsupported",
    "installed_version",
    "parse_version",
    "render",
    "unsupported",
]

LDAP_SEARCH = "search"
"""LDAP passdb that finds the user's DN by a search, then binds as it (the usual setup)."""
LDAP_TEMPLATE = "template"
"""LDAP passdb that binds as a DN built from the name (``auth_bind_userdn``): the fastest."""


class DovecotConfigError(Exception):
    """Dovecot is not installed, or says something this module cannot read."""


class Unsupported(DovecotConfigError):
    """The installed Dovecot cannot do what was asked (checkpassword on 2.4)."""


def unsupported(passdb: Passdb, version: DovecotVersion) -> str | None:
    """Why ``version`` cannot serve ``passdb``, in one sentence, or None."""
    if passdb.driver == "checkpassword" and version.is_24:
        return _NO_CHECKPASSWORD.format(version=version.text or "2.4")
    return None


@dataclass(frozen=True, order=True)
class DovecotVersion:
    major: int
    minor: int
    text: str = ""

    @property
    def is_24(self) -> bool:
        return (self.major, self.minor) >= (2, 4)

    @property
    def config_version(self) -> str:
        """What 2.4's ``dovecot_config_version`` line wants: the release, e.g. 2.4.1."""
        match = re.match(r"\d+\.\d+(\.\d+)?", self.text)
        return match.group(0) if match else f"{self.major}.{self.minor}.0"


def parse_version(text: str) -> DovecotVersion:
    """``dovecot --version`` output ("2.3.19.1 (9b53102964)") as a version."""
    match = re.match(r"\s*(\d+)\.(\d+)", text)
    if match is None:
        raise DovecotConfigError(f"cannot read Dovecot's version from {text.strip()[:60]!r}")
    return DovecotVersion(int(match.group(1)), int(match.group(2)), text.split(maxsplit=1)[0])


@functools.cache
def installed_version() -> DovecotVersion:
    """The version of the ``dovecot`` on PATH, asked once per process."""
    try:
        out = subprocess.run(
            ["dovecot", "--version"], capture_output=True, text=True, check=True, timeout=10
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise DovecotConfigError(f"Dovecot is not installed or does not run ({exc})") from exc
    return parse_version(out)


@dataclass(frozen=True)
class LdapPassdb:
    """Dovecot's own LDAP passdb with authentication binds, the native reference."""

    uri: str
    service_dn: str
    service_password: str
    base: str
    mode: str = LDAP_SEARCH
    """LDAP_SEARCH or LDAP_TEMPLATE."""


@dataclass(frozen=True)
class Passdb:
    """One passdb: ``driver`` is lua, checkpassword, pam or ldap; ``target`` names its
    script, program or PAM service; ``ldap`` holds the LDAP passdb's settings."""

    driver: str
    target: str = ""
    ldap: LdapPassdb | None = None

    @classmethod
    def lua(cls, script: Path | str) -> Passdb:
        return cls("lua", str(script))

    @classmethod
    def checkpassword(cls, program: Path | str) -> Passdb:
        return cls("checkpassword", str(program))

    @classmethod
    def pam(cls, service: str) -> Passdb:
        return cls("pam", service)

    @classmethod
    def native_ldap(cls, settings: LdapPassdb) -> Passdb:
        return cls("ldap", ldap=settings)

    @classmethod
    def included(cls, snippet: Path | str) -> Passdb:
        """A site's own snippet (passdb and userdb), included as it is: how the shipped
        config/dovecot/conf.d files are tested."""
        return cls("include", str(snippet))


_NO_CHECKPASSWORD = (
    "Dovecot {version} has no checkpassword passdb (removed in 2.4): use the Lua passdb"
)


@dataclass(frozen=True)
class Settings:
    """What the lab's Dovecot needs, independent of the dialect."""

    directory: Path
    passdb: Passdb
    environment: tuple[tuple[str, str], ...]
    imap_port: int
    pop3_port: int
    auth_verbose: bool = True
    doveadm_port: int = 0
    """doveadm's HTTP API on loopback (0: none), for ending sessions (``mailsessions``)."""
    doveadm_api_key: str = ""
    auth_cache: bool = False
    """Dovecot's auth cache on, as a site turns it on for speed."""


def render(settings: Settings, version: DovecotVersion) -> tuple[str, dict[str, str]]:
    """The configuration file's text, and any extra files (path -> text, mode 0600) it
    names, for ``version``. Raises Unsupported for a passdb the version lacks."""
    reason = unsupported(settings.passdb, version)
    if reason is not None:
        raise Unsupported(reason)
    _refuse_injection(settings)
    d = settings.directory
    common = f"""protocols = imap pop3
listen = 127.0.0.1
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
info_log_path = {d}/dovecot.log
ssl = no
auth_mechanisms = plain login
auth_verbose = {"yes" if settings.auth_verbose else "no"}
auth_failure_delay = 0
default_login_user = dovenull
default_internal_user = dovecot
first_valid_uid = 100
service imap-login {{
  inet_listener imap {{
    port = {settings.imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = {settings.pop3_port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
service auth {{
  unix_listener auth-client {{
    mode = 0666
  }}
}}
"""
    common += _admin(settings)
    if version.is_24:
        return _render_24(settings, version, common)
    return _render_23(settings, common)


def _admin(settings: Settings) -> str:
    """The doveadm HTTP API (loopback, by the global ``listen``) and the auth cache;
    both spelled alike in 2.3 and 2.4."""
    text = ""
    if settings.doveadm_port:
        text += (
            f"doveadm_api_key = {settings.doveadm_api_key}\n"
            "service doveadm {\n  inet_listener http {\n"
            f"    port = {settings.doveadm_port}\n  }}\n}}\n"
        )
    if settings.auth_cache:
        text += "auth_cache_size = 1M\nauth_cache_ttl = 1h\nauth_cache_negative_ttl = 0\n"
    return text


def _refuse_injection(settings: Settings) -> None:
    """Every value is written into the file as it is. One with a line break, a brace, a
    quote or a comment sign could add settings (another passdb) of its own; a backslash
    continues a line into the next; a leading ``<`` reads a file, ``'`` quotes and ``$``
    expands (2.4); ``%`` expands variables; a space splits 2.3's ``args`` and
    ``import_environment``; glob characters widen an ``!include``."""
    ldap = settings.passdb.ldap
    spaceless = [
        str(settings.directory),
        settings.passdb.target,
        *(text for pair in settings.environment for text in pair),
    ]
    values = [
        *spaceless,
        settings.doveadm_api_key,
        *((ldap.uri, ldap.service_dn, ldap.service_password, ldap.base) if ldap else ()),
    ]
    for value in values:
        if (
            any(c in value for c in '\r\n{}"#\\%')
            or value[:1] in ("<", "'", "$")
            or (value in spaceless and " " in value)
            or (settings.passdb.driver == "include" and any(c in value for c in "*?["))
        ):
            raise DovecotConfigError(f"{value[:40]!r}: not a value Dovecot's file can hold")


def _render_23(settings: Settings, common: str) -> tuple[str, dict[str, str]]:
    d = settings.directory
    imported = " ".join(["TZ", *(f"{k}={v}" for k, v in settings.environment)])
    extra: dict[str, str] = {}
    passdb = settings.passdb
    if passdb.driver == "lua":
        body = f"driver = lua\n  args = file={passdb.target} blocking=yes"
        if settings.auth_cache:
            body += " cache_key=%u"
    elif passdb.driver == "checkpassword":
        body = f"driver = checkpassword\n  args = {passdb.target}"
    elif passdb.driver == "pam":
        body = f"driver = pam\n  args = {passdb.target}"
    elif passdb.driver == "include":
        return _included(common + _23_BASE.format(d=d, imported=imported), passdb.target), extra
    elif passdb.driver == "ldap" and passdb.ldap is not None:
        ldap = passdb.ldap
        conf = d / "dovecot-ldap.conf.ext"
        lines = [
            f"uris = {ldap.uri}",
            f"dn = {ldap.service_dn}",
            f"dnpass = {ldap.service_password}",
            "auth_bind = yes",
            f"base = {ldap.base}",
        ]
        if ldap.mode == LDAP_TEMPLATE:
            lines.append(f"auth_bind_userdn = uid=%n,{ldap.base}")
        else:
            lines.append("pass_filter = (&(objectClass=inetOrgPerson)(uid=%n))")
        extra[str(conf)] = "\n".join(lines) + "\n"
        body = f"driver = ldap\n  args = {conf}"
    else:
        raise DovecotConfigError(f"unknown passdb {passdb.driver!r}")
    return (
        f"""{common}{_23_BASE.format(d=d, imported=imported)}passdb {{
  {body}
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={d}/home/%u
}}
""",
        extra,
    )


_23_BASE = """disable_plaintext_auth = no
mail_location = maildir:{d}/mail/%u
import_environment = {imported}
"""


def _included(head: str, snippet: str) -> str:
    return f"{head}!include {snippet}\n"


def _render_24(
    settings: Settings, version: DovecotVersion, common: str
) -> tuple[str, dict[str, str]]:
    d = settings.directory
    imported = "".join(f"  {k} = {v}\n" for k, v in settings.environment)
    head = f"""dovecot_config_version = {version.config_version}
dovecot_storage_version = {version.config_version}
{common}auth_allow_cleartext = yes
mail_driver = maildir
mail_path = {d}/mail/%{{user}}
import_environment {{
  TZ = %{{env:TZ}}
{imported}}}
"""
    passdb = settings.passdb
    if passdb.driver == "lua":
        block = f"passdb lua {{\n  lua_file = {passdb.target}\n  use_worker = yes\n}}\n"
    elif passdb.driver == "pam":
        block = f"passdb pam {{\n  service_name = {passdb.target}\n}}\n"
    elif passdb.driver == "include":
        return _included(head, passdb.target), {}
    elif passdb.driver == "ldap" and passdb.ldap is not None:
        ldap = passdb.ldap
        # 2.4.1 refuses every login of a passdb without a filter ("No passdb_ldap_filter
        # given"), even one that binds to a DN built from the name and never searches
        how = "  filter = (&(objectClass=inetOrgPerson)(uid=%{user | username}))\n"
        if ldap.mode == LDAP_TEMPLATE:
            how += f"  bind_userdn = uid=%{{user | username}},{ldap.base}\n"
        block = (
            f"ldap_uris = {ldap.uri}\n"
            f"ldap_auth_dn = {ldap.service_dn}\n"
            f"ldap_auth_dn_password = {ldap.service_password}\n"
            f"ldap_base = {ldap.base}\n"
            f"passdb ldap {{\n  bind = yes\n{how}}}\n"
        )
    else:
        raise DovecotConfigError(f"unknown passdb {passdb.driver!r}")
    return (
        f"""{head}{block}userdb static {{
  fields {{
    uid = nobody
    gid = nogroup
    home = {d}/home/%{{user}}
  }}
}}
""",
        {},
    )
