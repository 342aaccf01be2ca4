"""Audit events: one structured record per decision or change, and where they go.

An event says who, through which service, from where, what happened and by which
method; it names a passcode by its label and a device by its id. It never carries a
password, code, passcode, token or secret, and the type below has no field that could.
Events go to syslog (facility ``auth`` by default) as JSON after ``twostep:``, and
optionally to a file, one JSON object per line.

Writing an event must never change an outcome: a sink that fails is reported on stderr
and the decision stands (a deny stays a deny).
"""

from __future__ import annotations

import json
import os
import sys
import syslog
import threading
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Protocol

from .config import AuditConfig

__all__ = ["AuditEvent", "AuditSink", "FileSink", "MemorySink", "SyslogSink", "Sinks", "build_sink"]


@dataclass(frozen=True)
class AuditEvent:
    time: int
    action: str
    """login, enroll-begin, enroll-confirm, passcode-add, device-revoke, unlock, ..."""
    user: str
    outcome: str
    """accept, deny, challenge, tempfail for logins; ok, refused, error for changes."""
    service: str = ""
    remote: str = ""
    method: str | None = None
    reason: str | None = None
    label: str | None = None
    device: str | None = None
    actor: str | None = None
    """Who asked for a change (the peer's user name), when not the user themselves."""
    retry_at: int | None = None
    """A login refused by the lock or a throttle (the reason says which): when it ends."""
    repeat: bool | None = None
    """A denied login repeating a wrong secret the account already counted (a mail client
    retrying a revoked passcode): twostepd does not count it again, nor does fail2ban."""

    def to_json(self) -> str:
        # every field is a plain value: no asdict(), whose deep copy was a third of this
        present = {
            name: value
            for name in _FIELDS
            if (value := getattr(self, name)) is not None and value != ""
        }
        return json.dumps(present, separators=(",", ":"), sort_keys=True)


_FIELDS = tuple(f.name for f in fields(AuditEvent))


class AuditSink(Protocol):
    def emit(self, event: AuditEvent) -> None: ...


_FACILITIES = {
    "auth": syslog.LOG_AUTH,
    "authpriv": syslog.LOG_AUTHPRIV,
    "daemon": syslog.LOG_DAEMON,
    "user": syslog.LOG_USER,
    "mail": syslog.LOG_MAIL,
    **{f"local{i}": getattr(syslog, f"LOG_LOCAL{i}") for i in range(8)},
}


class SyslogSink:
    def __init__(self, facility: str = "auth") -> None:
        self._facility = _FACILITIES[facility]
        syslog.openlog("twostep", syslog.LOG_PID, self._facility)

    def emit(self, event: AuditEvent) -> None:
        priority = (
            syslog.LOG_INFO
            if event.outcome in ("accept", "ok", "challenge")
            else (syslog.LOG_NOTICE)
        )
        syslog.syslog(self._facility | priority, "twostep: " + event.to_json())


class FileSink:
    """Appends JSON lines; opened per event so log rotation needs no signal."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()

    def emit(self, event: AuditEvent) -> None:
        line = (event.to_json() + "\n").encode()
        with self._lock:
            fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)


class MemorySink:
    """Keeps events in a list: what tests assert on."""

    def __init__(self) -> None:
        self.events: list[AuditEvent] = []
        self._lock = threading.Lock()

    def emit(self, event: AuditEvent) -> None:
        with self._lock:
            self.events.append(event)


class Sinks:
    """Every configured sink; a failing one is reported and skipped, never raised."""

    def __init__(self, sinks: Sequence[AuditSink]) -> None:
        self._sinks = tuple(sinks)

    def emit(self, event: AuditEvent) -> None:
        for sink in self._sinks:
            try:
                sink.emit(event)
            except Exception as exc:  # noqa: BLE001 - an audit failure never changes an outcome
                print(f"twostep: audit sink {type(sink).__name__} failed: {exc}", file=sys.stderr)


def build_sink(config: AuditConfig) -> Sinks:
    sinks: list[AuditSink] = []
    if config.syslog:
        sinks.append(SyslogSink(config.facility))
    if config.file is not None:
        sinks.append(FileSink(config.file))
    return Sinks(sinks)
