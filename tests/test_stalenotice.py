"""The message that tells an owner of a stale client, and how it is sent: a real
program on stdin, in the background, each attempt audited; never the secret."""

from __future__ import annotations

import email
import stat
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from pam_twostep.audit import MemorySink
from pam_twostep.config import StaleNoticeConfig
from pam_twostep.core.stale_records import StaleClient
from pam_twostep.stalenotice import StaleNotices, notice_message

CLIENT = StaleClient(
    "abcdefgh", "passcode", "abcdefgh", "Thunderbird", 0, "192.0.2.7", "imap", 10, 10, True, False
)
NOW = 1_800_000_000


def test_the_message_is_plain_and_names_no_secret() -> None:
    config = StaleNoticeConfig(command=("/bin/true",), to="{user}@example.org", sender="it@x")
    text = notice_message(config, "alice", CLIENT, NOW)
    parsed = email.message_from_bytes(text)
    assert parsed["To"] == "alice@example.org" and parsed["From"] == "it@x"
    assert parsed["Auto-Submitted"] == "auto-generated"
    body = " ".join(parsed.get_payload(decode=True).decode().split())
    assert "192.0.2.7 (imap) still uses the revoked passcode 'Thunderbird'" in body
    assert parsed["Content-Transfer-Encoding"] == "8bit"
    assert b"\r" not in text


def _wait(audit: MemorySink, count: int) -> list[Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        events = [e for e in audit.events if e.action == "stale-client-notice"]
        if len(events) >= count:
            return events
        time.sleep(0.02)
    return [e for e in audit.events if e.action == "stale-client-notice"]


def test_a_real_program_gets_it_on_stdin(tmp_path: Path) -> None:
    script = tmp_path / "hook"
    script.write_text(f'#!/bin/sh\ncat > {tmp_path}/in\necho "$PATH|$HOME" > {tmp_path}/env\n')
    script.chmod(stat.S_IRWXU)
    audit = MemorySink()
    notices = StaleNotices(StaleNoticeConfig(command=(str(script),)), audit, lambda: NOW)
    notices.tell("alice", CLIENT)
    [event] = _wait(audit, 1)
    notices.close()
    assert (event.outcome, event.user, event.label) == ("ok", "alice", "Thunderbird")
    assert b"Thunderbird" in (tmp_path / "in").read_bytes()
    assert (tmp_path / "env").read_text() == "/usr/sbin:/usr/bin:/sbin:/bin|\n"


def test_not_told_records_and_telling_off_send_nothing(tmp_path: Path) -> None:
    calls: list[object] = []

    def run(*args: object, **kwargs: object) -> subprocess.CompletedProcess[bytes]:
        calls.append(args)
        return subprocess.CompletedProcess(args, 0)

    audit = MemorySink()
    on = StaleNotices(StaleNoticeConfig(command=("/bin/true",)), audit, lambda: NOW, run=run)
    off = StaleNotices(StaleNoticeConfig(), audit, lambda: NOW, run=run)
    on.tell("alice", StaleClient(**{**CLIENT.__dict__, "told": False}))
    off.tell("alice", CLIENT)
    assert off.per_day == 0 and on.per_day == 3
    time.sleep(0.2)
    on.close()
    off.close()
    assert calls == [] and audit.events == []


def test_failures_are_audited_with_why(tmp_path: Path) -> None:
    slow = tmp_path / "slow"
    slow.write_text("#!/bin/sh\nsleep 30\n")
    slow.chmod(stat.S_IRWXU)
    audit = MemorySink()
    cases = [
        (StaleNoticeConfig(command=(str(slow),), timeout=1), "timeout"),
        (StaleNoticeConfig(command=(str(tmp_path / "missing"),)), "cannot-run-2"),
        (StaleNoticeConfig(command=("/bin/false",)), "exit-1"),
        (StaleNoticeConfig(command=("/bin/true",), to="{user}\u2028@x"), None),
    ]
    for index, (config, _) in enumerate(cases, 1):
        notices = StaleNotices(config, audit, lambda: NOW)
        notices.tell("alice", CLIENT)
        _wait(audit, index)
        notices.close()
    reasons = [e.reason for e in _wait(audit, len(cases))]
    assert reasons == ["timeout", "cannot-run-2", "exit-1", "bad-address"]


def test_a_user_name_cannot_add_recipients() -> None:
    config = StaleNoticeConfig(command=("/bin/true",), to="{user}@example.org")
    for name in ("eve,boss", "a b", "x<y>", 'q"uote', "semi;colon", "tab\there"):
        with pytest.raises(ValueError):
            notice_message(config, name, CLIENT, NOW)


def test_a_full_queue_drops_and_says_so() -> None:
    gate = threading.Event()

    def run(*args: object, **kwargs: object) -> subprocess.CompletedProcess[bytes]:
        gate.wait(30)
        return subprocess.CompletedProcess(args, 0)

    audit = MemorySink()
    config = StaleNoticeConfig(command=("/bin/true",), per_day=10)
    notices = StaleNotices(config, audit, lambda: NOW, run=run)
    for _ in range(5):  # one user's share is three
        notices.tell("alice", CLIENT)
    for number in range(105):  # everyone's, a hundred
        notices.tell(f"user{number}", CLIENT)
    dropped = [e.user for e in audit.events if e.reason == "queue-full"]
    gate.set()
    assert dropped == ["alice", "alice", *(f"user{n}" for n in range(97, 105))]
    _wait(audit, 110)
    notices.close()


def test_this_process_holds_the_daily_allowance_too() -> None:
    """Records the entry counted wrongly (a race) cannot make more messages a day."""
    sent: list[object] = []

    def run(*args: object, **kwargs: object) -> subprocess.CompletedProcess[bytes]:
        sent.append(args)
        return subprocess.CompletedProcess(args, 0)

    audit = MemorySink()
    now = [float(NOW)]
    config = StaleNoticeConfig(command=("/bin/true",), per_day=2)
    notices = StaleNotices(config, audit, lambda: now[0], run=run)
    for _ in range(4):
        notices.tell("alice", CLIENT)
    now[0] += 86401
    notices.tell("alice", CLIENT)
    events = _wait(audit, 5)
    notices.close()
    assert sorted(str(e.reason) for e in events) == ["None", "None", "None", "per-day", "per-day"]
