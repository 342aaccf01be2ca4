"""The local half of ``twostep check``: the accounts, groups and folders this host needs.

A package or ``make install`` creates them, but a Dovecot installed afterwards is not in
twostepd's socket group, and an administrator may have moved the audit file somewhere
that does not exist. Each finding names the command that fixes it; a client outside the
group is only noted, since its service may grant the group when it starts. Only the password
and group databases and the file system are read; nothing is changed.

The files twostepd and the portal read are judged as the users they run as
(:mod:`pam_twostep.service_access`), since this check runs as root, who reads anything.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from pathlib import Path

from .check import Finding
from .config import Config
from .service_access import (
    DAEMON_USER,
    PORTAL_USER,
    account,
    daemon_problems,
    portal_problems,
    secret_files,
)

__all__ = ["host_findings"]


def _members(group: grp.struct_group) -> set[str]:
    primary = {p.pw_name for p in pwd.getpwall() if p.pw_gid == group.gr_gid}
    return primary | set(group.gr_mem)


def _socket_findings(config: Config) -> list[Finding]:
    name = config.daemon.socket_group
    try:
        group = grp.getgrnam(name)
    except KeyError:
        return [
            Finding(
                False,
                f"daemon.socket_group {name}: no such group (twostepd cannot make its socket)",
                f"addgroup --system {name}",
            )
        ]
    members = _members(group)
    if config.daemon.socket_mode & 0o002:
        return [Finding(True, f"socket mode {config.daemon.socket_mode:04o}: anyone may connect")]
    findings = [Finding(True, f"socket group {name}: {', '.join(sorted(members)) or 'nobody'}")]
    # Who must reach the socket: the clients the access lists name (root always can). Not
    # being in the group is no failure: a service may grant it at start (Dovecot's
    # extra_groups, systemd's SupplementaryGroups=, a php-fpm pool's group).
    clients = (config.daemon.verify.users | config.daemon.self_service.users) - {"root"}
    for user in sorted(clients):
        try:
            pwd.getpwnam(user)
        except KeyError:
            continue  # e.g. postfix on a host without Postfix
        if user not in members:
            findings.append(
                Finding(
                    True,
                    f"{user} is not in {name}: it reaches twostepd's socket only if its"
                    " service grants the group (extra_groups, SupplementaryGroups=)",
                    f"adduser {user} {name}",
                )
            )
    return findings


def _audit_finding(config: Config) -> Finding | None:
    path = config.audit.file
    if path is None:
        return None
    folder = Path(path).parent
    if folder.is_dir():
        return Finding(True, f"audit file {path}: its folder exists")
    return Finding(
        False,
        f"audit file {path}: the folder {folder} does not exist",
        f"install -d -m 0750 -o twostep -g adm {folder}",
    )


def _shared_secret_findings(config: Config) -> list[Finding]:
    """Secret files their group may read while the group has members besides the owner:
    twostepd accepts 0640, but on a host where the portal's user is in the group twostep
    (as make install and the package make it, for twostep.yaml), 0640 gives it the
    directory's password."""
    findings = []
    for _label, path in secret_files(config):
        try:
            info = os.stat(path)
            group = grp.getgrgid(info.st_gid)
            owner = pwd.getpwuid(info.st_uid).pw_name
        except (OSError, KeyError):
            continue  # missing or odd: load_secrets reports it
        readers = _members(group) - {owner}
        if info.st_mode & stat.S_IRGRP and readers:
            findings.append(
                Finding(
                    False,
                    f"{path} is readable by the group {group.gr_name}, which has"
                    f" {', '.join(sorted(readers))} in it",
                    f"chmod 0600 {path}",
                )
            )
    return findings


def _runs_as(socket: Path | tuple[str, int], default: str) -> str | None:
    """The user a service runs as: its socket's owner while it runs (it made the
    socket), else the user of the shipped unit. None: a running service whose owner has
    no name."""
    try:
        info = os.stat(socket) if isinstance(socket, Path) else None
    except OSError:
        info = None
    if info is None or not stat.S_ISSOCK(info.st_mode):
        return default
    try:
        return pwd.getpwuid(info.st_uid).pw_name
    except KeyError:
        return None


def _service_user_findings(config: Config) -> list[Finding]:
    """The files twostepd and the portal read, judged as the users they run as (this
    check runs as root, who reads anything); the portal's only where its user exists,
    since a site may run no portal."""
    findings = []
    daemon = _runs_as(config.daemon.socket, DAEMON_USER)
    if daemon is not None:
        problems = daemon_problems(config, daemon)
        findings += [Finding(False, p.what, p.fix) for p in problems]
        if not problems:
            findings.append(Finding(True, f"twostepd's user {daemon} can read its files"))
    portal = _runs_as(config.portal.listen, PORTAL_USER)
    user = account(portal) if portal is not None else None
    if user is not None:
        problems = portal_problems(config, user)
        findings += [Finding(False, p.what, p.fix) for p in problems]
        if not problems:
            findings.append(Finding(True, f"the portal's user {portal} can read its files"))
    return findings


def host_findings(config: Config) -> list[Finding]:
    """What this host lacks for ``config``, each with its fix."""
    findings = _socket_findings(config)
    findings += _service_user_findings(config)
    findings += _shared_secret_findings(config)
    audit = _audit_finding(config)
    if audit is not None:
        findings.append(audit)
    return findings
