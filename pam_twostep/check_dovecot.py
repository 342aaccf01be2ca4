"""The Dovecot half of ``twostep check``: what Dovecot's configuration needs of this host.

Two mistakes pass every other check and then fail every mail login: a static userdb
naming a mail user that does not exist (the shipped snippets say ``uid=vmail gid=vmail
home=/var/vmail/%u``, and without that user Dovecot's auth logs ``static userdb: Invalid
uid: vmail``) or a home folder that does not, and twostep's Lua passdb on a host without
lua-socket (the script's ``require "socket.unix"`` fails: ``module 'socket.unix' not
found``). Both are read from the configuration Dovecot itself would use, ``doveconf -n``,
in either dialect: 2.3's ``userdb { driver = static  args = uid=... }`` and
``passdb { driver = lua  args = file=... }``, and 2.4's named filters ``userdb static {
fields { uid = ... } }`` and ``passdb lua { lua_file = ... }``. The text is parsed
leniently (lines it cannot read are skipped), and a doveconf that fails is a finding.

Whether lua-socket is there is decided from files, not by running Lua: the Lua library
Dovecot's Lua modules are linked with (its name, ``liblua5.4.so.0``, stands in the
modules' dynamic section) and ``socket/unix.so`` under that version's C module folders,
as Debian's Lua searches them.
"""

from __future__ import annotations

import grp
import pwd
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .check import Finding

__all__ = [
    "DovecotAuth",
    "MailUser",
    "dovecot_findings",
    "embedded_lua",
    "lua_socket_finding",
    "mail_user_findings",
    "parse_doveconf",
]

_SCRIPT = "twostep-passdb.lua"
_SETTING = re.compile(r"([^\s={}\"]+)\s*=\s*(.*)")
_LUA_LIBRARY = re.compile(rb"liblua(?:jit-)?(5\.\d)\.so")
_MAX_LIBRARY_BYTES = 64 << 20
_DOVECOT_LIBRARIES = "usr/lib/dovecot"


@dataclass(frozen=True)
class MailUser:
    """What one static userdb makes every user: the system user and group its mail
    processes run as, and the home template (None where the userdb sets none)."""

    where: str
    """How the finding names it: ``userdb static``, or ``userdb NAME`` (2.4)."""
    uid: str | None = None
    gid: str | None = None
    home: str | None = None


@dataclass(frozen=True)
class DovecotAuth:
    """What ``doveconf -n`` says that this module checks."""

    mail_users: tuple[MailUser, ...] = ()
    twostep_lua: bool = False
    """A Lua passdb runs twostep's script."""
    twostep_passdb: bool = False
    """Some passdb is twostep's (a setting of it names twostep: the Lua script, the
    checkpassword program, a PAM service)."""
    other_passdbs: tuple[str, ...] = ()
    """Passdbs that are not twostep's, by driver: each may accept a bare password."""


@dataclass
class _Block:
    kind: str
    name: str = ""
    settings: dict[str, str] = field(default_factory=dict)
    children: list[_Block] = field(default_factory=list)

    def walk(self) -> Iterator[_Block]:
        yield self
        for child in self.children:
            yield from child.walk()

    def driver(self) -> str:
        """2.3 says ``driver = static``; in 2.4 a filter named after its driver
        (``userdb static {``) needs no driver line."""
        return self.settings.get("driver") or self.name


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return value


def _parse(text: str) -> _Block:
    """doveconf's output as nested blocks; comments, and lines that are neither a
    setting nor a brace, are skipped, and a stray ``}`` closes nothing."""
    root = _Block("")
    stack = [root]
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line == "}":
            if len(stack) > 1:
                stack.pop()
            continue
        setting = _SETTING.fullmatch(line)
        if setting is not None:
            stack[-1].settings[setting.group(1)] = _unquote(setting.group(2))
        elif line.endswith("{"):
            kind, _, name = line[:-1].strip().partition(" ")
            block = _Block(kind, _unquote(name))
            stack[-1].children.append(block)
            stack.append(block)
    return root


def _static_fields(block: _Block) -> dict[str, str]:
    """A static userdb's fields: 2.3's ``args`` (``uid=vmail gid=vmail home=...``)
    and ``default_fields``/``override_fields``, 2.4's ``fields { uid = vmail }`` (a key
    may carry a modifier, ``uid:default``)."""
    fields: dict[str, str] = {}
    for name in ("default_fields", "args", "override_fields"):
        for word in block.settings.get(name, "").split():
            key, equals, value = word.partition("=")
            if equals:
                fields[key] = value
    for child in block.children:
        if child.kind == "fields":
            fields.update({k.partition(":")[0]: v for k, v in child.settings.items()})
    return fields


def parse_doveconf(text: str) -> DovecotAuth:
    """The static userdbs and whether twostep's Lua passdb is in ``doveconf -n``'s
    output, of Dovecot 2.3 or 2.4."""
    root = _parse(text)
    users = []
    lua = False
    ours = False
    others: list[str] = []
    for block in root.walk():
        if block.kind == "passdb":
            named = " ".join(block.settings.values())
            if block.driver() == "lua" and "lua_file" not in block.settings:
                named += " " + root.settings.get("lua_file", "")
            if "twostep" in named:
                ours = True
            else:
                others.append(f"passdb {block.name or block.driver() or '(unnamed)'}")
        if block.kind == "userdb" and block.driver() == "static":
            fields = _static_fields(block)
            users.append(
                MailUser(
                    f"userdb {block.name or 'static'}",
                    fields.get("uid"),
                    fields.get("gid"),
                    fields.get("home"),
                )
            )
        elif block.kind == "passdb" and block.driver() == "lua":
            # 2.4 also takes lua_file from outside the filter
            named = " ".join(block.settings.values())
            if "lua_file" not in block.settings:
                named += " " + root.settings.get("lua_file", "")
            lua = lua or _SCRIPT in named
    return DovecotAuth(tuple(users), lua, ours, tuple(others))


def _fixed(value: str | None) -> str | None:
    """A user or group name to look up; None for none, a number (Dovecot takes it as
    it is) or a %variable (it differs per user)."""
    if not value or value.isdigit() or "%" in value:
        return None
    return value


def _home_folder(home: str | None) -> str | None:
    """The folder that must exist before any home can be made: the part of ``home``
    before its first %variable, up to its last slash (``/var/vmail`` of
    ``/var/vmail/%u``); a home without a variable is that folder itself."""
    if not home or not home.startswith("/"):
        return None
    fixed, variable, _ = home.partition("%")
    if variable:
        fixed = fixed[: fixed.rfind("/") + 1]
    return fixed.rstrip("/") or None


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


def _one_user(user: MailUser, root: Path) -> list[Finding]:
    where = f"Dovecot {user.where}"
    uid, gid = _fixed(user.uid), _fixed(user.gid)
    folder = _home_folder(user.home)
    findings = []
    no_user = uid is not None and not _user_exists(uid)
    no_group = gid is not None and not _group_exists(gid)
    if no_group and not (no_user and gid == uid):
        findings.append(
            Finding(
                False,
                f'{where}: gid {gid}: no such group, so every login fails ("Invalid gid:'
                f" {gid}\" in Dovecot's log)",
                f"groupadd --system {gid}",
            )
        )
    if no_user:
        both = no_group and gid == uid
        what = (
            f"uid {uid} and gid {gid}: no such user and group"
            if both
            else f"uid {uid}: no such user"
        )
        # --user-group makes a group of the user's name too, and refuses if one exists
        if (gid is not None and gid != uid) or (user.gid or "").isdigit():
            group = f"--gid {user.gid}"
        elif _group_exists(str(uid)):
            group = f"--gid {uid}"
        else:
            group = "--user-group"
        findings.append(
            Finding(
                False,
                f'{where}: {what}, so every login fails ("Invalid uid: {uid}" in Dovecot\'s log)',
                f"useradd --system {group} --home-dir {folder or '/var/vmail'} --no-create-home"
                f" --shell /usr/sbin/nologin {uid}",
            )
        )
    place = root / folder.lstrip("/") if folder is not None else None
    if place is not None and not place.is_dir():
        state = "is not a folder" if place.exists() else "does not exist"
        findings.append(
            Finding(
                False,
                f"{where}: home {user.home}: {folder} {state}, so no mailbox can be made",
                f"install -d -m 770 -o {user.uid or 'vmail'} -g {user.gid or 'vmail'} {folder}",
            )
        )
    checked = [f"user {uid}" if uid else "", f"group {gid}" if gid else "", folder or ""]
    checked = [c for c in checked if c]
    if not findings and checked:
        listed = ", ".join(checked[:-1]) + " and " + checked[-1] if len(checked) > 1 else checked[0]
        findings.append(Finding(True, f"{where}: {listed} exist"))
    return findings


def mail_user_findings(users: tuple[MailUser, ...], root: Path = Path("/")) -> list[Finding]:
    """Each static userdb's user, group and home folder: one finding per missing one
    with the command that makes it, or one saying all are there."""
    findings = []
    for user in users:
        findings += _one_user(user, root)
    return findings


def embedded_lua(root: Path = Path("/")) -> list[str]:
    """The Lua versions (``5.4``) Dovecot's Lua modules are linked with, read from the
    library names in the modules themselves; [] where there are none."""
    versions: set[str] = set()
    for path in sorted((root / _DOVECOT_LIBRARIES).rglob("*lua*.so*")):
        try:
            if not path.is_file() or path.stat().st_size > _MAX_LIBRARY_BYTES:
                continue
            data = path.read_bytes()
        except OSError:
            continue
        versions.update(found.decode() for found in _LUA_LIBRARY.findall(data))
    return sorted(versions)


def _socket_unix(root: Path, version: str) -> Path | None:
    """``socket/unix.so`` in the C module folders Debian's Lua ``version`` searches
    (its package.cpath: /usr/local/lib/lua/V, /usr/lib/<multiarch>/lua/V,
    /usr/lib/lua/V)."""
    folders = [
        root / "usr/local/lib/lua" / version,
        *sorted((root / "usr/lib").glob(f"*/lua/{version}")),
        root / "usr/lib/lua" / version,
    ]
    for folder in folders:
        module = folder / "socket" / "unix.so"
        if module.is_file():
            return module
    return None


def lua_socket_finding(root: Path = Path("/")) -> Finding:
    """Whether the Lua that Dovecot embeds can load ``socket.unix``. Should the
    version not be readable from Dovecot's modules, any Lua's copy will do."""
    versions = embedded_lua(root)
    if versions:
        missing = [v for v in versions if _socket_unix(root, v) is None]
        if missing:
            return Finding(
                False,
                "Dovecot's Lua passdb needs lua-socket (module socket.unix not found for"
                f" Lua {', '.join(missing)})",
                "apt install lua-socket",
            )
        found = ", ".join(f"Lua {v}: {_socket_unix(root, v)}" for v in versions)
        return Finding(True, f"Dovecot's Lua passdb: socket.unix found ({found})")
    anywhere = sorted(
        {*(root / "usr/lib").glob("*/lua/5.*/socket/unix.so")}
        | {*(root / "usr/lib/lua").glob("5.*/socket/unix.so")}
        | {*(root / "usr/local/lib/lua").glob("5.*/socket/unix.so")}
    )
    if not anywhere:
        return Finding(
            False,
            "Dovecot's Lua passdb needs lua-socket (module socket.unix not found for any Lua)",
            "apt install lua-socket",
        )
    return Finding(
        True,
        f"Dovecot's Lua passdb: socket.unix found ({anywhere[0]}; which Lua Dovecot embeds"
        " could not be read from its modules)",
    )


def dovecot_findings(config_file: Path | None = None, root: Path = Path("/")) -> list[Finding]:
    """What Dovecot's configuration (``config_file``, else Dovecot's own) needs of this
    host; nothing where Dovecot is not installed."""
    if shutil.which("doveconf") is None:
        return []
    command = ["doveconf", *(["-c", str(config_file)] if config_file else []), "-n"]
    shown = " ".join(command)
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return [Finding(False, f"Dovecot: {shown} did not run ({exc})", "check dovecot-core")]
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or [f"exit status {done.returncode}"]
        return [
            Finding(
                False,
                f"Dovecot: {shown} fails: {lines[-1]}",
                "fix what it names: Dovecot does not start with this configuration",
            )
        ]
    auth = parse_doveconf(done.stdout)
    findings = mail_user_findings(auth.mail_users, root)
    if auth.twostep_passdb and auth.other_passdbs:
        findings.append(
            Finding(
                False,
                f"Dovecot: {', '.join(auth.other_passdbs)} next to twostep's: a passdb"
                " before it accepts the bare password without asking twostep",
                "comment out its !include in conf.d/10-auth.conf (or its passdb block):"
                " twostep's must be the only passdb",
            )
        )
    if auth.twostep_lua:
        findings.append(lua_socket_finding(root))
    return findings
