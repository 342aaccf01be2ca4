"""Whether a service's own user can read its files, judged from owners and modes alone.

``twostepd --check`` and ``twostep check`` run as root, who may read every file; but
twostepd runs as ``twostep`` (the unit's ``User=``) and the portal as ``twostep-portal``.
A key made by root with umask 077 (``root:root 0600``), or an ``/etc/twostep`` without
the group's search bit, passes a check run as root and stops the service at its start.
So the files are judged as that user would meet them: the owner's, group's or others'
bits by the user's uid, primary group and supplementary groups, and the search bit of
every folder on the way. ACLs and capabilities are not considered (twostep's own files
use neither). Nothing is opened or changed: a file that cannot even be looked at is left
to the reading that follows (``load_secrets`` names a missing one).
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .config import Config

__all__ = [
    "DAEMON_USER",
    "PORTAL_USER",
    "Account",
    "Problem",
    "account",
    "daemon_problems",
    "permits",
    "portal_problems",
    "secret_files",
]

DAEMON_USER = "twostep"
"""twostepd's user in the shipped unit (config/systemd/twostepd.service)."""
PORTAL_USER = "twostep-portal"
"""The portal's user in its shipped unit."""

_READ, _SEARCH = 0o4, 0o1
_LETTERS = {_READ: "r", _SEARCH: "x", _READ | _SEARCH: "rx"}


@dataclass(frozen=True)
class Account:
    """A user as the kernel sees its process: uid and every group it holds."""

    name: str
    uid: int
    group: str
    """The primary group's name, for the ``chown user:group`` of a fix."""
    gids: frozenset[int]
    """The primary group and the supplementary ones (``/etc/group``, NSS)."""


@dataclass(frozen=True)
class Problem:
    """What the user cannot do, and its fix: a command, or a sentence if ``command`` is
    false."""

    what: str
    fix: str
    command: bool = True

    def __str__(self) -> str:
        return f"{self.what}; {'run ' if self.command else ''}{self.fix}"


def account(name: str) -> Account | None:
    """``name`` from the password and group databases; None if there is no such user."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    try:
        group = grp.getgrgid(entry.pw_gid).gr_name
    except KeyError:
        group = str(entry.pw_gid)
    gids = frozenset({entry.pw_gid, *os.getgrouplist(name, entry.pw_gid)})
    return Account(name, entry.pw_uid, group, gids)


def permits(user: Account, owner: int, group: int, mode: int, want: int) -> bool:
    """Whether ``user`` gets every bit of ``want`` (0o4 read, 0o1 search) on a file of
    ``owner``, ``group`` and ``mode``, as the kernel decides it: the owner's bits for
    its owner (even where the group's would give more), else the group's to a member,
    else the others'. Root may do anything (reading and searching need no bit for it)."""
    if user.uid == 0:
        return True
    if owner == user.uid:
        bits = mode >> 6
    elif group in user.gids:
        bits = mode >> 3
    else:
        bits = mode
    return bits & want == want


def secret_files(config: Config) -> list[tuple[str, Path]]:
    """The secret files twostepd reads at its start and at each reload, each with the
    name ``load_secrets`` gives it in its messages; only the key files that can be
    listed now."""
    files = [("ldap.bind_password_file", Path(config.ldap.bind_password_file))]
    keys = Path(config.keys.directory)
    try:
        names = sorted(os.listdir(keys))
    except OSError:
        names = []
    files += [("keys.directory: key file", keys / n) for n in names if n.endswith(".key")]
    if config.mail_sessions.hosts:
        files.append(("mail_sessions.api_key_file", Path(config.mail_sessions.api_key_file)))
    return files


def daemon_problems(config: Config, name: str = DAEMON_USER) -> list[Problem]:
    """What twostepd, run as ``name``, could not read of ``config``'s files."""
    user = account(name)
    if user is None:
        fix = (
            "make install or the Debian package creates it"
            if name == DAEMON_USER
            else "create it, or name the user twostepd runs as with --user"
        )
        return [
            Problem(f"the service user {name} does not exist (twostepd runs as it)", fix, False)
        ]
    password, *keys = [(path, label, _READ, True) for label, path in secret_files(config)]
    return _Judge(user).problems(
        [
            (config.source, "configuration file", _READ, False),
            password,
            (Path(config.keys.directory), "keys.directory", _READ | _SEARCH, True),
            *keys,
        ]
    )


def portal_problems(config: Config, user: Account) -> list[Problem]:
    """What the portal, run as ``user``, could not read: its cookie key and the
    configuration."""
    return _Judge(user).problems(
        [
            (config.source, "configuration file", _READ, False),
            (Path(config.portal.secret_key_file), "portal.secret_key_file", _READ, True),
        ]
    )


class _Judge:
    """One user's view of a list of files. A folder in the way is named once, however
    many files lie behind it, and the files behind it are judged as well: every fix is
    known after one run."""

    def __init__(self, user: Account) -> None:
        self._user = user
        self._blocked: set[Path] = set()

    def problems(self, items: Iterable[tuple[Path | None, str, int, bool]]) -> list[Problem]:
        """``items``: (path, its name in messages, bits wanted, whether it is the
        service's own: then the fix gives it to the user, else to the user's group)."""
        found = []
        for path, label, want, own in items:
            if path is not None:
                found += self._judge(Path(os.path.abspath(path)), label, want, own)
        return found

    def _judge(self, path: Path, label: str, want: int, own: bool) -> list[Problem]:
        name = self._user.name
        found: list[Problem] = []
        for folder in _folders(path):
            try:
                info = os.stat(folder)
            except OSError:
                return found  # cannot be judged from here; reading it says why
            if folder in self._blocked or permits(
                self._user, info.st_uid, info.st_gid, info.st_mode, _SEARCH
            ):
                continue
            self._blocked.add(folder)
            found.append(
                Problem(
                    f"{label} {path}: the service user {name} cannot reach it: {folder} is"
                    f" not searchable for it ({_state(info, _SEARCH)})",
                    _shared_fix(self._user, folder, info, _SEARCH),
                )
            )
        try:
            info = os.stat(path)
        except OSError:
            return found
        if path in self._blocked or permits(
            self._user, info.st_uid, info.st_gid, info.st_mode, want
        ):
            return found
        directory = stat.S_ISDIR(info.st_mode)
        if directory:
            self._blocked.add(path)  # named here, not again for each file in it
        fix = (
            _own_fix(self._user, path, info, want)
            if own
            else _shared_fix(self._user, path, info, want)
        )
        verb = "list" if directory else "read"
        found.append(
            Problem(
                f"{label} {path}: the service user {name} cannot {verb} it ({_state(info, want)})",
                fix,
            )
        )
        return found


def _folders(path: Path) -> list[Path]:
    """The folders from / down to the one holding ``path``, as they really are (a
    symbolic link on the way counts by its target)."""
    parent = Path(os.path.realpath(path.parent))
    return [*reversed(parent.parents), parent]


def _state(info: os.stat_result, want: int) -> str:
    """The owner and mode; the group too when the group's bits would give ``want``."""
    mode = stat.S_IMODE(info.st_mode)
    owner = _user_name(info.st_uid)
    if (mode >> 3) & want:
        return f"owner {owner}, group {_group_name(info.st_gid)}, mode {mode:04o}"
    return f"owner {owner}, mode {mode:04o}"


def _own_fix(user: Account, path: Path, info: os.stat_result, want: int) -> str:
    """The service's own file (a secret, the keys folder): give it to the user, since
    its group may hold others (the portal is in the group twostep)."""
    fix = f"chown {user.name}:{user.group} {path}"
    if (stat.S_IMODE(info.st_mode) >> 6) & want != want:
        fix += f" and chmod {0o700 if stat.S_ISDIR(info.st_mode) else 0o600:04o} {path}"
    return fix


def _shared_fix(user: Account, path: Path, info: os.stat_result, want: int) -> str:
    """A file or folder that is not the service's own (the configuration, /etc/twostep):
    the bit for the user's group, keeping its owner."""
    letters = _LETTERS[want]
    if info.st_uid == user.uid:
        return f"chmod u+{letters} {path}"
    if info.st_gid in user.gids:
        return f"chmod g+{letters} {path}"
    return f"chgrp {user.group} {path} and chmod g+{letters} {path}"


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)
