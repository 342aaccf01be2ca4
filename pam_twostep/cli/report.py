"""``twostep report readiness``: before ``required`` is set, who it would cut off, and
whose mail clients still send the plain password and would break once they enroll.

The accounts come from twostepd (``readiness``, a page at a time: the command never
talks to LDAP), every user the filter finds, enrolled or not. Which services and client
addresses accepted the plain password comes from the audit events twostepd already
writes, read here, on this host: by default the configured ``audit.file`` and the
copies logrotate made of it (``.1``, ``.2.gz``, ``-20261201.gz``); with ``--audit``,
the files named, which may also be syslog files such as /var/log/auth.log. They are read
as a stream, however large, folded per account as they go; lines that are not events
are counted and reported, never fatal. A file that cannot be read, a corrupt .gz, or a
copy compressed in a form not read here (zstd) stops the command with one sentence: a
report without it would undercount exactly the users it looks for.

Two things the report cannot know are said in it rather than left out: that events
were read from syslog, where any local user can write a line tagged ``twostep``
(``logger -t twostep``), while only twostepd writes the audit file; and that the oldest
event read is later than the start of the period (``--since``), so the logs do not
cover all of it.

A page of accounts is bounded by its size on the wire (``engine.readiness``); should
one still come back as a tempfail (an older twostepd, a page over the reply limit), it
is asked for once more at a tenth of the size before the command gives up.

Exit codes as every command's; an audit file from the configuration that cannot be
used is a configuration error (78), one named with ``--audit`` a usage error (64).
"""

from __future__ import annotations

import argparse
import csv
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..auditlog import AuditReader, AuditReadError, rotated_files
from ..config import Config
from ..core.auditlines import SkipReason
from ..core.duration import parse_duration
from ..core.readiness import (
    CSV_HEADER,
    Account,
    PolicyTotals,
    Report,
    ReportRow,
    UsageFold,
    account_from_reply,
    build_report,
    csv_row,
    row_dict,
    totals_dict,
    utc_text,
)
from ._base import (
    EXIT_CONFIG,
    EXIT_OK,
    EXIT_TEMPFAIL,
    EXIT_USAGE,
    CommandError,
    Commands,
    Output,
    _ask,
    _config,
    next_page,
)

__all__ = ["cmd_report", "register"]

_PAGE = 500
"""Accounts per request (the most twostepd gives)."""
_SMALL_PAGE = _PAGE // 10
"""Accounts per request after a page came back as a tempfail."""
_PAGE_TIMEOUT = 600
_MAX_PAGES = 100_000
_PROGRESS_FROM = 64 << 20
"""Audit input of at least this many bytes shows a progress bar on a terminal."""
_MIB = 1 << 20
_DEFAULT_LABEL = "(default)"
"""How text names the accounts under the configured default policy (``policy`` null):
parentheses are not allowed in a policy's name, so no policy can be mistaken for it."""
_SHOWN_ADDRESSES = 3


def _nonsense(what: str) -> CommandError:
    return CommandError(EXIT_TEMPFAIL, f"twostepd answered nonsense ({what})", "daemon")


# -- the accounts, from twostepd ----------------------------------------------------------


def _accounts(args: argparse.Namespace) -> list[Account]:
    """Every page in turn; a page whose cursor does not advance is nonsense, not a loop."""
    accounts: list[Account] = []
    after: str | None = None
    limit = _PAGE
    for _ in range(_MAX_PAGES):
        request: dict[str, object] = {"op": "readiness", "limit": limit}
        if after is not None:
            request["after"] = after
        try:
            reply = _ask(args, request, _PAGE_TIMEOUT)
        except CommandError as exc:
            # what a reply over wire.MAX_REPLY becomes: asked again, smaller, once
            if exc.code != EXIT_TEMPFAIL or exc.reason != "directory" or limit == _SMALL_PAGE:
                raise
            limit = _SMALL_PAGE
            reply = _ask(args, {**request, "limit": limit}, _PAGE_TIMEOUT)
        rows = reply.get("accounts")
        if not isinstance(rows, list):
            raise _nonsense("accounts")
        for row in rows:
            try:
                accounts.append(account_from_reply(row))
            except ValueError as exc:
                raise _nonsense(str(exc)) from None
        after = next_page(reply.get("next"), after, "pages")
        if after is None:
            return accounts
    raise CommandError(EXIT_TEMPFAIL, "twostepd's pages do not end", "daemon")


def _default_name(config: Config) -> str | None:
    """The ``cn`` of the configured default policy entry, which ``--policy`` may name."""
    default = config.policy.default
    if not default:
        return None
    first = default.split(",", 1)[0]
    attribute, _, value = first.partition("=")
    return value.strip() if attribute.strip().lower() == "cn" and "\\" not in value else None


def _chosen(accounts: list[Account], names: Sequence[str], config: Config) -> list[Account]:
    """The accounts under the policies named; naming the default entry's name (or
    ``(default)``) takes the accounts that name no policy too."""
    if not names:
        return accounts
    wanted = set(names)
    default = _DEFAULT_LABEL in wanted or _default_name(config) in wanted
    return [a for a in accounts if a.policy in wanted or (a.policy is None and default)]


# -- the audit input ----------------------------------------------------------------------


def _audit_files(args: argparse.Namespace, config: Config) -> list[Path]:
    if args.audit:
        return [Path(p) for p in args.audit]
    if config.audit.file is None:
        raise CommandError(
            EXIT_CONFIG,
            "audit.file is not set in the configuration: name the audit input with "
            "--audit (e.g. --audit /var/log/auth.log)",
            "audit",
        )
    try:
        return rotated_files(config.audit.file)
    except AuditReadError as exc:
        raise CommandError(EXIT_CONFIG, f"audit.file {exc}", "audit") from None


def _audit_error(args: argparse.Namespace, exc: AuditReadError) -> CommandError:
    if args.audit:
        return CommandError(EXIT_USAGE, f"--audit {exc}", "audit")
    return CommandError(EXIT_CONFIG, f"audit.file {exc}", "audit")


class _Bar:
    """The progress bar on standard error (as ``keys reseal`` draws it), in MiB read of
    the input's total, redrawn only when what it shows changes."""

    def __init__(self, out: Output) -> None:
        self._out = out
        self._last = ""
        self.shown = False

    def __call__(self, done: int, total: int) -> None:
        filled = min(done, total) * 30 // max(total, 1)
        text = f"\r[{'#' * filled}{' ' * (30 - filled)}] {done / _MIB:.1f}/{total / _MIB:.1f} MiB"
        if text != self._last:
            self._out.err.write(text)
            self._out.err.flush()
            self._last = text
            self.shown = True


def _read(args: argparse.Namespace, out: Output, reader: AuditReader, fold: UsageFold) -> None:
    bar = _Bar(out)
    show = args.progress if args.progress is not None else out.err.isatty()
    if show and (args.progress or reader.total >= _PROGRESS_FROM):
        reader.progress = bar
    try:
        fold.add_all(reader.events())
    except AuditReadError as exc:
        raise _audit_error(args, exc) from None
    finally:
        if bar.shown:
            out.err.write("\n")


# -- printing -----------------------------------------------------------------------------


def _clean(text: str, width: int = 64) -> str:
    """A value from the directory or a log, safe on a terminal: no control character
    (an escape sequence in a user name would be run by the terminal), cut to ``width``."""
    printable = "".join(c if c.isprintable() else "?" for c in text)
    return printable if len(printable) <= width else printable[: width - 1] + "…"


def _day(epoch: int | None) -> str:
    return utc_text(epoch, "%Y-%m-%d") if epoch else "-"


def _moment(epoch: int) -> str:
    """As ``_when`` writes it, for any time (``--since 100y`` reaches before 1970)."""
    return utc_text(epoch, "%Y-%m-%d %H:%M UTC")


def _label(policy: str | None) -> str:
    return _DEFAULT_LABEL if policy is None else _clean(policy, 32)


def _password_cells(row: ReportRow) -> tuple[str, str, str]:
    use = row.password
    if use is None:
        return "-", "-", "-"
    services = ",".join(_clean(s, 16) for s in sorted(use.services))
    if use.services_left_out:
        services += ",…"
    shown = sorted(use.addresses)[:_SHOWN_ADDRESSES]
    hidden = len(use.addresses) - len(shown) + (1 if use.addresses_left_out else 0)
    addresses = " ".join(_clean(a, 40) for a in shown) + (f" +{hidden}" if hidden else "")
    return f"{use.logins} (last {_day(use.last)})", services or "-", addresses or "-"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]


def _account_cells(row: ReportRow) -> list[str]:
    account = row.account
    if account.unreadable:
        return [_clean(account.user), _label(account.policy), "unreadable", "-", "-", "-", "-", "-"]
    passcodes = account.passcodes
    used = [p.last_used for p in passcodes if p.last_used]
    passcode_text = f"{len(passcodes)}" + (f" (last {_day(max(used))})" if used else "")
    logins, services, addresses = _password_cells(row)
    return [
        _clean(account.user),
        _label(account.policy),
        "on" if account.enabled else "off",
        _day(row.enrolled) if account.enabled else "-",
        passcode_text,
        logins,
        services,
        addresses,
    ]


def _totals_cells(totals: PolicyTotals, label: str) -> list[str]:
    return [
        label,
        str(totals.accounts),
        str(totals.on),
        str(totals.off),
        f"{totals.cut_off} ({totals.cut_off_active} active)",
        str(totals.mail_breaks),
        str(totals.mail_breaks_at_grace_end),
        str(totals.unreadable),
    ]


def _skipped_text(skipped: dict[str, int]) -> str:
    total = sum(skipped.values())
    if not total:
        return "no lines skipped"
    parts = ", ".join(f"{n} {reason}" for reason, n in sorted(skipped.items()) if n)
    return f"{total} line{'s' if total != 1 else ''} skipped ({parts})"


def _text(report: Report, audit: dict[str, Any]) -> str:
    lines = [
        f"Readiness on {_moment(report.now)}: password logins since {_moment(report.since)}, "
        f"from {len(audit['files'])} audit file(s), {audit['events']} events",
        *(f"warning: {w}" for w in audit["warnings"]),
        "",
    ]
    header = ("USER", "POLICY", "2SV", "ENROLLED", "PASSCODES", "PASSWORD", "VIA", "FROM")
    lines += _table(header, [_account_cells(r) for r in report.rows]) if report.rows else []
    if not report.rows:
        lines.append("no accounts")
    lines.append("")
    columns = ["POLICY", "ACCOUNTS", "ON", "OFF", "CUT OFF IF REQUIRED", "MAIL BREAKS"]
    columns += ["MAIL BREAKS LATER", "UNREADABLE"]
    table = [_totals_cells(t, _label(t.policy)) for t in report.totals]
    table.append(_totals_cells(report.overall, "all"))
    lines += _table(columns, table)
    lines += [
        "",
        textwrap.fill(
            "CUT OFF IF REQUIRED: two-step off, so interactive logins would be refused if "
            "required were set now (active: logged in that way with the password in the "
            "period). MAIL BREAKS: two-step off and mail clients sending the password: "
            "they stop working when the user enrolls, unless mail_password_until allows it. "
            "MAIL BREAKS LATER: two-step on, but mail clients still sending the password: "
            "they stop working when mail_password_until passes.",
            88,
        ),
        _skipped_text(audit["skipped_by_reason"]),
    ]
    return "\n".join(lines)


def _warnings(reader: AuditReader, since: int) -> list[str]:
    """What the report cannot vouch for, in sentences."""
    found = []
    if reader.syslog_events:
        found.append(
            f"{reader.syslog_events} event(s) read from syslog: events there can be forged "
            "by local users (logger -t twostep); the audit file is the trustworthy input"
        )
    if reader.oldest is None:
        found.append("no events in the audit input: password logins in the period are unknown")
    elif reader.oldest > since:
        found.append(
            f"the oldest event read is of {_moment(reader.oldest)}, after the start of the "
            f"period ({_moment(since)}): the logs do not cover all of it"
        )
    return found


def _audit_summary(reader: AuditReader, fold: UsageFold) -> dict[str, Any]:
    by_reason = {reason.value: reader.skipped[reason] for reason in SkipReason}
    return {
        "files": [str(p) for p in reader.paths],
        "bytes": reader.total,
        "lines": reader.lines,
        "events": fold.events,
        "syslog_events": reader.syslog_events,
        "oldest_event": reader.oldest,
        "covers_period": reader.oldest is not None and reader.oldest <= fold.since,
        "skipped": sum(by_reason.values()),
        "skipped_by_reason": by_reason,
        "warnings": _warnings(reader, fold.since),
    }


def _write_csv(out: Output, report: Report, audit: dict[str, Any]) -> None:
    writer = csv.writer(out.out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for row in report.rows:
        writer.writerow(csv_row(row))
    for warning in audit["warnings"]:
        out.err.write(f"twostep: warning: {warning}\n")
    out.err.write(f"twostep: {_skipped_text(audit['skipped_by_reason'])}\n")


def cmd_report(args: argparse.Namespace, out: Output) -> int:
    if args.csv and args.json:
        raise CommandError(EXIT_USAGE, "give --csv or --json, not both", "usage")
    try:
        since_seconds = parse_duration(args.since)
    except ValueError as exc:
        raise CommandError(EXIT_USAGE, f"--since: {exc}", "usage") from None
    config = _config(args)
    paths = _audit_files(args, config)
    now = int(time.time())
    try:
        reader = AuditReader(paths, now)  # every file open and usable before twostepd is asked
    except AuditReadError as exc:
        raise _audit_error(args, exc) from None
    with reader:
        every = _accounts(args)
        accounts = _chosen(every, args.policy or (), config)
        # folded over every account, so that --policy changes no login's owner (an
        # alias of a chosen account must not take what is another account's name)
        fold = UsageFold(now - since_seconds, every)
        _read(args, out, reader, fold)
    report = build_report(accounts, fold, config.mail_services, now=now)
    audit = _audit_summary(reader, fold)
    if args.csv:
        _write_csv(out, report, audit)
        return EXIT_OK
    data = {
        "now": report.now,
        "since": report.since,
        "accounts": [row_dict(r) for r in report.rows],
        "totals": [totals_dict(t) for t in report.totals],
        "overall": totals_dict(report.overall),
        "audit": audit,
    }
    out.result(data, lambda: _text(report, audit))
    return EXIT_OK


def register(commands: Commands) -> None:
    """report readiness."""
    report, actions = commands.group("report", "reports: readiness for required two-step")
    readiness = commands.action(
        actions,
        "readiness",
        help="who required two-step would cut off, whose mail clients would break",
        description="Who required two-step would cut off today, and whose mail clients "
        "would break once they enroll: the accounts from twostepd, the password logins "
        "from the audit log.",
    )
    readiness.add_argument(
        "--policy",
        action="append",
        metavar="NAME",
        help="only accounts under this policy (again for more; the default policy's "
        f"name or {_DEFAULT_LABEL} for accounts that name none)",
    )
    readiness.add_argument(
        "--audit",
        action="extend",
        nargs="+",
        metavar="FILE",
        help="audit files to read, plain, .gz, .xz or .bz2, JSON lines or syslog (default: "
        "audit.file and its rotated copies; syslog lines can be forged by local users)",
    )
    readiness.add_argument(
        "--since",
        default="30d",
        metavar="DURATION",
        help="the period of password logins counted, back from now (default 30d)",
    )
    readiness.add_argument("--csv", action="store_true", help="one CSV row per account")
    readiness.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="a progress bar on standard error (default: on a terminal, for large input)",
    )
    report.set_defaults(func=cmd_report)
