"""``twostep check``: the configuration, the directory, its ACLs, the keys and the daemon,
each finding with its fix.

The one command that does not go through twostepd: it checks the daemon too, so it
reads the configuration and the secret files itself and talks to the LDAP servers
directly. The checks are in :mod:`pam_twostep.check`, imported by this command alone
(it needs ldap3, whose import alone costs 110-160 ms).
"""

from __future__ import annotations

import argparse

from ..config import config_path
from ._base import EXIT_OK, EXIT_REFUSED, Commands, Output, _secret

__all__ = ["register", "cmd_check"]


def cmd_check(args: argparse.Namespace, out: Output) -> int:
    from ..check import run_checks  # noqa: PLC0415 - ldap3 only for this command

    config_file = config_path(args.config)
    password = _secret(f"Password for {args.user}: ") if args.user else None
    findings = run_checks(config_file, args.user, password, args.socket)
    problems = [f for f in findings if not f.ok]
    out.result(
        {"findings": [f.as_dict() for f in findings], "problems": len(problems)},
        lambda: "\n".join(str(f) for f in findings),
    )
    return EXIT_REFUSED if problems else EXIT_OK


def register(commands: Commands) -> None:
    """check, with --user for the ACL check as that user."""
    check = commands.command(
        "check", cmd_check, "check configuration, directory, ACLs, keys, daemon", user=False
    )
    check.add_argument(
        "--user",
        help="also check that this ordinary user (password from "
        "stdin) cannot read their two-step attributes",
    )
