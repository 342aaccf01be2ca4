"""The local half of ``twostep check``: the accounts, groups and folders this host needs.

A package or ``make install`` creates them, but a Dovecot installed afterwards is not in
twostepd's socket group, and an administrator may have moved the audit file somewhere
that does not exist. Each finding names the command that fixes it; a client outside the
group is only noted, since its service may grant the group when it starts. Only the password
and group databases and the file system are read; nothing is changed.
"""

from __future__ import annotations

import grp
import pwd
from pathlib import Path

from .check import Finding
from .config import Config

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


def host_findings(config: Config) -> list[Finding]:
    """What this host lacks for ``config``, each with its fix."""
    findings = _socket_findings(config)
    audit = _audit_finding(config)
    if audit is not None:
        findings.append(audit)
    return findings
