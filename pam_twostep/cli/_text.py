"""The text ``twostep`` prints for people: an account's state, policies, backup codes,
a new key to scan, and the reports of ``keys`` and ``import``.

Kept apart from the commands, which only choose what to ask and print, and shared by
them: ``status``, ``passcode list`` and ``device list`` show the same lines, and a
policy's settings read the same in ``status`` and ``policy show``. ``--json`` prints the
data these are made from, never these lines.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..core.dates import format_date
from ..core.duration import format_duration
from ..core.policy import policy_to_text
from ..staletext import describe

if TYPE_CHECKING:  # migrate is imported by ``twostep import`` alone
    from ..migrate.runner import Row

__all__ = [
    "_sessions_text",
    "_when",
    "_policy_line",
    "_policy_text",
    "_passcodes_text",
    "_devices_text",
    "_webmail_text",
    "_stale_text",
    "_status_text",
    "_codes_text",
    "_begin_text",
    "_keys_status_text",
    "_reseal_text",
    "_import_text",
    "_progress_bar",
]


def _sessions_text(sessions: object) -> str:
    """What ending the open mail sessions came to, as a sentence after the change's."""
    if not isinstance(sessions, dict):
        return ""
    ended = sessions.get("ended")
    if sessions.get("failed"):
        return "; open mail sessions: not all could be ended (see the warning)"
    if isinstance(ended, int) and ended:
        return f"; {ended} open mail session{'s' if ended != 1 else ''} ended"
    return "; no mail session was open"


def _when(epoch: int | None) -> str:
    if not epoch:
        return "never"
    moment = datetime.datetime.fromtimestamp(epoch, datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _policy_line(policy: dict[str, Any]) -> str:
    devices = (
        f"devices trusted for {format_duration(policy['device_lifetime'])}"
        if policy["trusted_devices"]
        else "no trusted devices"
    )
    passcodes = (
        f"up to {policy['passcode_limit']} passcodes" if policy["passcodes"] else "no passcodes"
    )
    duration = (
        format_duration(policy["lockout_duration"])
        if policy["lockout_duration"]
        else "until unlocked"
    )
    offered = (
        "required" if policy["required"] else "available" if policy["available"] else "unavailable"
    )
    if policy["required"] and policy.get("required_from"):
        offered += f" from {format_date(policy['required_from'])}"
    grace = (
        f", mail takes the password until {format_date(policy['mail_password_until'])}"
        if policy.get("mail_password") and policy.get("mail_password_until")
        else ""
    )
    return (
        f"{offered}, "
        f"{policy['backup_codes']} backup codes, {passcodes}, {devices}, lock after "
        f"{policy['lockout_max_failures']} failures in {format_duration(policy['lockout_window'])} "
        f"for {duration}{grace}"
    )


def _setting(name: str, value: Any) -> str:
    try:
        return policy_to_text(name, value)
    except (KeyError, TypeError, ValueError):  # a newer daemon's setting: as it came
        return str(value)


def _policy_text(policy: dict[str, Any]) -> str:
    settings = (
        ", ".join(f"{k}={_setting(k, v)}" for k, v in sorted(policy["settings"].items())) or "none"
    )
    return (
        f"{policy['name']}{' (default)' if policy['default'] else ''}: {policy['dn']}\n"
        f"  sets: {settings}\n  in force: {_policy_line(policy['effective'])}"
    )


def _passcodes_text(passcodes: list[dict[str, Any]]) -> str:
    lines = [f"application passcodes: {len(passcodes)}"]
    for p in passcodes:
        used = (
            f"last used {_when(p['last_used'])} from {p['last_address'] or '?'}"
            if p["last_used"]
            else "never used"
        )
        lines.append(
            f"  {p['label']}  [{','.join(p['services']) or 'all mail services'}]  "
            f"created {_when(p['created'])}  {used}  expires {_when(p['expires'])}"
        )
    return "\n".join(lines)


def _devices_text(devices: list[dict[str, Any]]) -> str:
    lines = [f"trusted devices: {len(devices)}"]
    for d in devices:
        seen = (
            f"last seen {_when(d['last_seen'])} from {d['last_address'] or '?'}"
            if d["last_seen"]
            else "not seen since trusted"
        )
        lines.append(
            f"  {d['id']}  {d['label']}  created {_when(d['created'])}  {seen}  "
            f"expires {_when(d['expires'])}"
        )
    return "\n".join(lines)


def _webmail_text(sessions: list[dict[str, Any]]) -> str:
    """Open webmail sessions (issue 16), as ``twostep status`` and ``webmail list`` show them."""
    lines = [f"webmail sessions: {len(sessions)}"]
    for web in sessions:
        used = _when(web["last_used"]) if web["last_used"] else "not since"
        lines.append(
            f"  {web['id']}  from {web['browser'] or '?'}  signed in "
            f"{_when(web['started'])}  last used {used}"
        )
    return "\n".join(lines)


def _stale_text(clients: list[dict[str, Any]]) -> str:
    """Stale clients (issue 17), as ``twostep status`` and ``stale-clients list`` show
    them: one sentence each, as the owner reads it, after its id."""
    lines = [f"stale clients: {len(clients)}"]
    lines += [f"  {c['id']}  {describe(c)}" for c in clients]
    return "\n".join(lines)


def _status_text(status: dict[str, Any]) -> str:
    lines = [
        f"{status['user']}: two-step verification is {'ON' if status['enabled'] else 'OFF'}",
        f"policy: {status['policy_dn'] or 'site defaults'}",
        f"  {_policy_line(status['policy'])}",
    ]
    if status["enabled"]:
        lines.append(f"backup codes left: {status['backup_codes']}")
    if status["pending_enrollment_expires"]:
        lines.append(f"enrollment pending until {_when(status['pending_enrollment_expires'])}")
    if status.get("required_from"):
        lines.append(f"two-step becomes required on {format_date(status['required_from'])}")
    if status.get("mail_password_until"):
        lines.append(
            "mail services take the password until "
            f"{format_date(status['mail_password_until'])}, then passcodes only"
        )
    lines.append(_passcodes_text(status["passcodes"]))
    lines.append(_devices_text(status["devices"]))
    if status.get("webmail_sessions"):
        lines.append(_webmail_text(status["webmail_sessions"]))
    if status.get("stale_clients"):
        lines.append(_stale_text(status["stale_clients"]))
    if status["locked"]:
        until = _when(status["locked_until"]) if status["locked_until"] else "an admin unlocks"
        lines.append(f"LOCKED until {until} (twostep unlock {status['user']})")
    else:
        lines.append(f"not locked ({status['recent_failures']} recent failures)")
    return "\n".join(lines)


def _codes_text(codes: list[str]) -> str:
    lines = ["Backup codes (each works once; keep them somewhere safe, away from your phone):"]
    lines += [
        f"  {a}    {b}" if b else f"  {a}"
        for a, b in zip(codes[::2], [*codes[1::2], ""], strict=False)
    ]
    return "\n".join(lines)


def _begin_text(begin: dict[str, Any], qr_text: str) -> str:
    return "\n".join(
        [
            "Scan this with your authenticator app (Google Authenticator, FreeOTP, Aegis, ...):",
            "",
            qr_text,
            "",
            f"Or type the key: {begin['key']}",
            f"URI: {begin['uri']}",
            f"({begin['algorithm']}, {begin['digits']} digits, every {begin['period']} s; "
            f"set up before {_when(begin['expires'])})",
        ]
    )


def _keys_status_text(usage: dict[str, Any]) -> str:
    lines = [f"current key: {usage['current']}; loaded: {', '.join(usage['loaded'])}"]
    for key_id in sorted(set(usage["loaded"]) | set(usage["values"])):
        count = usage["values"].get(key_id, 0)
        note = "" if key_id in usage["loaded"] else " (NOT LOADED: those logins fail)"
        if count == 0 and key_id != usage["current"] and not usage["unreadable"]:
            note = " (no value needs it: its file may be removed)"
        lines.append(f"  {key_id}: {count} sealed values{note}")
    lines += [f"  unreadable: {dn}" for dn in usage["unreadable"]]
    if usage["unreadable"]:
        lines.append("  (unreadable accounts may hold values under any key: keep every key file)")
    return "\n".join(lines)


def _progress_bar(done: int, total: int) -> str:
    """One redraw of a 30-column progress bar on a terminal line: ``\r[###   ] 3/7``."""
    filled = min(done, total) * 30 // max(total, 1)
    return f"\r[{'#' * filled}{' ' * (30 - filled)}] {done}/{total}"


def _reseal_text(report: dict[str, Any]) -> str:
    current = report["current"]
    lines = [
        f"re-sealed {report['resealed']} accounts under {current}; "
        f"{report['already_current']} were under it already"
    ]
    lines += [f"  not re-sealed: {f.get('account')}: {f.get('why')}" for f in report["failed"]]
    for key_id, count in sorted(report["remaining"].items()):
        lines.append(
            f"  still sealed with {key_id}: {count} values; keep its key file, make sure "
            "every twostepd has reloaded, and run it again"
        )
    lines += [
        f"  unreadable: {dn} (reset it, or keep every key file)" for dn in report["unreadable"]
    ]
    if not (report["failed"] or report["remaining"] or report["unreadable"]):
        lines.append(
            f"every value is now sealed with {current}; once twostep keys status on every "
            f"host says so too, the other key files may go"
        )
    return "\n".join(lines)


def _import_text(
    policy_rows: Sequence[Row], rows: Sequence[Row], counts: dict[str, int], applied: bool
) -> str:
    lines = [f"policy {r.match}: {r.outcome} ({r.why})" for r in policy_rows]
    for row in rows:
        who = row.user or row.match
        line = f"{who}: {row.outcome}" + (f": {row.why}" if row.why else "")
        lines.append(line + f"  [{row.source}]")
        lines += [f"    not carried: {note}" for note in row.notes]
    summary = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items()))
    dry = "" if applied else " (dry run: --apply writes)"
    lines.append(f"{summary or 'nothing to import'}{dry}")
    return "\n".join(lines)
