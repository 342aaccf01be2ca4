"""Audit events: their shape, and that a failing sink never changes an outcome."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pam_twostep.audit import AuditEvent, FileSink, MemorySink, Sinks, SyslogSink, build_sink
from pam_twostep.config import AuditConfig

EVENT = AuditEvent(
    time=1_800_000_000,
    action="login",
    user="alice",
    outcome="accept",
    service="imap",
    remote="192.0.2.1",
    method="passcode",
    label="Thunderbird",
)


def test_json_has_the_fields_that_are_set() -> None:
    data = json.loads(EVENT.to_json())
    assert data == {
        "time": 1_800_000_000,
        "action": "login",
        "user": "alice",
        "outcome": "accept",
        "service": "imap",
        "remote": "192.0.2.1",
        "method": "passcode",
        "label": "Thunderbird",
    }


def test_control_characters_in_a_username_cannot_forge_lines(tmp_path: Path) -> None:
    sink = FileSink(tmp_path / "audit.log")
    sink.emit(AuditEvent(time=1, action="login", user='x"\n{"user":"root"}', outcome="deny"))
    lines = (tmp_path / "audit.log").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["user"].startswith('x"\n')


def test_file_sink_appends_private_lines(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    sink = FileSink(path)
    sink.emit(EVENT)
    sink.emit(EVENT)
    assert len(path.read_text().splitlines()) == 2
    assert os.stat(path).st_mode & 0o007 == 0


class Broken:
    def emit(self, event: AuditEvent) -> None:
        raise OSError(28, "No space left on device")


def test_a_failing_sink_is_reported_not_raised(capsys: pytest.CaptureFixture[str]) -> None:
    memory = MemorySink()
    Sinks([Broken(), memory]).emit(EVENT)
    assert memory.events == [EVENT]
    assert "No space left" in capsys.readouterr().err


def test_read_only_log_directory_does_not_raise(tmp_path: Path) -> None:
    directory = tmp_path / "ro"
    directory.mkdir()
    Sinks([FileSink(directory / "missing" / "audit.log")]).emit(EVENT)


def test_build_sink() -> None:
    sinks = build_sink(AuditConfig(syslog=True, facility="local3", file=None))
    sinks.emit(EVENT)  # syslog without a listener is silently dropped by the C library
    SyslogSink("authpriv").emit(EVENT)
