"""auditlog: audit files read back as they lie on disk: rotated, compressed, in syslog's
form, and hostile (over-long lines, garbage, a .gz cut short or corrupt)."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest

from pam_twostep.audit import AuditEvent, FileSink
from pam_twostep.auditlog import AuditReader, AuditReadError, rotated_files
from pam_twostep.core.auditlines import MAX_LINE, LoggedEvent, SkipReason


def event(n: int, user: str = "bob") -> AuditEvent:
    return AuditEvent(1_800_000_000 + n, "login", user, "accept", "imap", "192.0.2.7", "password")


def lines(*events: AuditEvent) -> bytes:
    return b"".join(e.to_json().encode() + b"\n" for e in events)


def read(*paths: Path) -> tuple[list[LoggedEvent], AuditReader]:
    reader = AuditReader(list(paths))
    return list(reader.events()), reader


def test_logrotate_siblings_oldest_first(tmp_path: Path) -> None:
    names = [
        "audit.log",
        "audit.log.1",
        "audit.log.2.gz",
        "audit.log.10.gz",
        "audit.log-20261130.gz",
        "audit.log-20261201",
        "audit.log.bak",
        "audit.logx",
        "audit.log.1.tmp",
        "other.log.1",
    ]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "audit.log.3").mkdir()  # not a file
    found = [p.name for p in rotated_files(tmp_path / "audit.log")]
    assert found == [
        "audit.log-20261130.gz",
        "audit.log-20261201",
        "audit.log.10.gz",
        "audit.log.2.gz",
        "audit.log.1",
        "audit.log",
    ]


def test_rotated_copies_without_the_current_file_and_none_at_all(tmp_path: Path) -> None:
    (tmp_path / "audit.log.1").write_bytes(b"")
    assert rotated_files(tmp_path / "audit.log") == [tmp_path / "audit.log.1"]
    with pytest.raises(AuditReadError, match="no such file, and no rotated copies"):
        rotated_files(tmp_path / "nothing.log")
    with pytest.raises(AuditReadError, match="cannot list the directory"):
        rotated_files(tmp_path / "missing" / "audit.log")


def test_plain_gz_and_syslog_files_read_alike(tmp_path: Path) -> None:
    plain = tmp_path / "audit.log"
    sink = FileSink(plain)
    sink.emit(event(1))
    sink.emit(event(2, "carol"))
    (tmp_path / "audit.log.1.gz").write_bytes(gzip.compress(lines(event(3))))
    # two gzip members in one file, as `cat a.gz b.gz` makes
    (tmp_path / "audit.log.2.gz").write_bytes(
        gzip.compress(lines(event(4))) + gzip.compress(lines(event(5)))
    )
    syslog = tmp_path / "auth.log"
    syslog.write_bytes(
        b"Dec  2 03:00:00 mx1 sshd[9]: Accepted publickey for root\n"
        b"Dec  2 03:00:01 mx1 twostep[812]: twostep: " + event(6).to_json().encode() + b"\n"
        b"Dec  2 03:00:02 mx1 twostep[812]: twostep: {cut off\n"
    )
    events, reader = read(*rotated_files(plain), syslog)
    assert [e.time - 1_800_000_000 for e in events] == [4, 5, 3, 1, 2, 6]
    assert events[4] == LoggedEvent(
        1_800_000_002, "login", "carol", "accept", "imap", "192.0.2.7", "password"
    )
    assert reader.lines == 8
    assert reader.skipped == {SkipReason.NOT_TWOSTEP: 1, SkipReason.NOT_JSON: 1}


def test_over_long_lines_are_skipped_whole_and_the_next_line_read(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    path.write_bytes(
        b'{"user":"'
        + b"x" * (5 * MAX_LINE)
        + b'"}\n'
        + lines(event(1))
        + b"y" * (MAX_LINE + 1)
        + b"\n"
        + b"z" * MAX_LINE
        + b"\n"
        + lines(event(2))
        + b"\x00\xff garbage \x1b[31m\n"
        + b'{"no":"newline at the end"}'
    )
    events, reader = read(path)
    assert [e.time for e in events] == [1_800_000_001, 1_800_000_002]
    assert reader.skipped == {
        SkipReason.TOO_LONG: 3,  # MAX_LINE counts the newline
        SkipReason.NOT_TWOSTEP: 1,
        SkipReason.NOT_AN_EVENT: 1,
    }
    assert reader.lines == 7


def test_a_gz_cut_short_loses_only_its_last_line(tmp_path: Path) -> None:
    whole = gzip.compress(lines(*(event(n) for n in range(2000))))
    path = tmp_path / "audit.log.2.gz"
    path.write_bytes(whole[: len(whole) // 2])
    events, reader = read(path)
    assert 0 < len(events) < 2000
    assert [e.time for e in events] == [1_800_000_000 + n for n in range(len(events))]
    assert reader.skipped == {SkipReason.CUT_SHORT: 1}
    path.write_bytes(whole[:5])  # not even a whole header
    events, reader = read(path)
    assert events == []
    assert reader.skipped == {SkipReason.CUT_SHORT: 1}


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[:-8] + bytes(b ^ 0xFF for b in data[-8:-4]) + data[-4:],  # CRC
        lambda data: data[:10] + b"\xff" * 40 + data[50:],  # the deflate stream
        lambda data: b"\x1f\x8b\x09" + data[3:],  # not deflate
    ],
    ids=["crc", "stream", "method"],
)
def test_a_corrupt_gz_is_one_clear_error(tmp_path: Path, damage) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "audit.log.3.gz"
    path.write_bytes(damage(gzip.compress(lines(*(event(n) for n in range(200))))))
    with pytest.raises(AuditReadError) as caught:
        read(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: corrupt compressed data (")
    assert "\n" not in message


def test_files_that_cannot_be_read_fail_before_anything_is_read(tmp_path: Path) -> None:
    good = tmp_path / "audit.log"
    good.write_bytes(lines(event(1)))
    with pytest.raises(AuditReadError, match=r"missing\.log: cannot read it: No such file"):
        AuditReader([good, tmp_path / "missing.log"])
    with pytest.raises(AuditReadError, match="cannot read it: Is a directory"):
        read(good, tmp_path)
    if os.geteuid() != 0:  # root reads anything
        good.chmod(0)
        with pytest.raises(AuditReadError, match="Permission denied"):
            read(good)


def test_progress_is_reported_in_bytes_up_to_the_total(tmp_path: Path) -> None:
    plain = tmp_path / "audit.log"
    plain.write_bytes(lines(*(event(n) for n in range(10_000))))
    packed = tmp_path / "audit.log.1.gz"
    packed.write_bytes(gzip.compress(lines(*(event(n) for n in range(10_000)))))
    seen: list[tuple[int, int]] = []
    reader = AuditReader([packed, plain], lambda done, total: seen.append((done, total)))
    assert sum(1 for _ in reader.events()) == 20_000
    total = plain.stat().st_size + packed.stat().st_size
    assert reader.total == total
    assert len(seen) > 3
    assert all(t == total for _, t in seen)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert seen[-1] == (total, total)
