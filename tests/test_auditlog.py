"""auditlog: audit files read back as they lie on disk: rotated, compressed (gzip, xz,
bzip2; zstd and the like refused), in syslog's form, and hostile (over-long lines,
garbage, a .gz cut short or corrupt, a FIFO, two copies of one rotation)."""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from pam_twostep.audit import AuditEvent, FileSink
from pam_twostep.auditlog import AuditReader, AuditReadError, rotated_files
from pam_twostep.core.auditlines import MAX_LINE, LoggedEvent, SkipReason

NOW = 1_800_100_000


def event(n: int, user: str = "bob") -> AuditEvent:
    return AuditEvent(1_800_000_000 + n, "login", user, "accept", "imap", "192.0.2.7", "password")


def lines(*events: AuditEvent) -> bytes:
    return b"".join(e.to_json().encode() + b"\n" for e in events)


def read(*paths: Path) -> tuple[list[LoggedEvent], AuditReader]:
    reader = AuditReader(list(paths), NOW)
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


@pytest.mark.parametrize(
    ("present", "read"),
    [
        # a compression cut short leaves both: the uncompressed copy is the whole one
        (["audit.log.1", "audit.log.1.gz"], ["audit.log.1"]),
        (["audit.log.1.gz", "audit.log.1.xz", "audit.log.1.bz2"], ["audit.log.1.gz"]),
        (["audit.log.2.zst", "audit.log.2"], ["audit.log.2"]),
        (["audit.log-20261201", "audit.log-20261201.gz"], ["audit.log-20261201"]),
        (
            ["audit.log.1", "audit.log.2.gz", "audit.log.2", "audit.log.3.xz"],
            ["audit.log.3.xz", "audit.log.2", "audit.log.1"],
        ),
        # the copies compressed otherwise are found, so that reading them refuses them
        (
            ["audit.log.1.zst", "audit.log.2.lz4", "audit.log.3.bz2", "audit.log.4.Z"],
            ["audit.log.4.Z", "audit.log.3.bz2", "audit.log.2.lz4", "audit.log.1.zst"],
        ),
        (["audit.log.1.gz.1", "audit.log.1.tmp", "audit.log.1.GZ"], []),
    ],
    ids=" ".join,
)
def test_one_copy_of_each_rotation_is_read(
    tmp_path: Path, present: list[str], read: list[str]
) -> None:
    for name in present:
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "audit.log").write_bytes(b"")
    found = [p.name for p in rotated_files(tmp_path / "audit.log")]
    assert found == [*read, "audit.log"]


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
        AuditReader([good, tmp_path / "missing.log"], NOW)
    with pytest.raises(AuditReadError, match=r"not a regular file \(a directory\)"):
        AuditReader([good, tmp_path], NOW)
    if os.geteuid() != 0:  # root reads anything
        forbidden = tmp_path / "audit.log.1"
        forbidden.write_bytes(lines(event(2)))
        forbidden.chmod(0)
        with pytest.raises(
            AuditReadError, match=r"audit\.log\.1: cannot read it: Permission denied"
        ):
            AuditReader([good, forbidden], NOW)  # made, not read: nothing read yet


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _socket(path: Path) -> None:
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.close()


def _link_to_a_fifo(path: Path) -> None:
    os.mkfifo(path.with_name("fifo"))
    path.symlink_to(path.with_name("fifo"))


@pytest.mark.parametrize(
    ("make", "what"),
    [
        (_fifo, "a FIFO"),  # open() would wait for a writer forever
        (_socket, "a socket"),
        (_link_to_a_fifo, "a FIFO"),
        (lambda path: path.mkdir(), "a directory"),
    ],
    ids=["fifo", "socket", "link-to-fifo", "directory"],
)
def test_only_a_regular_file_is_read_and_nothing_blocks(
    tmp_path: Path, make: Callable[[Path], None], what: str
) -> None:
    path = tmp_path / "audit.log"
    make(path)
    try:
        _refused_at_once(path, what)
    finally:  # the session's search of every log for secrets would read a FIFO forever
        for made in (path, path.with_name("fifo")):
            if made.is_symlink() or made.exists():
                made.rmdir() if made.is_dir() and not made.is_symlink() else made.unlink()


def _refused_at_once(path: Path, what: str) -> None:
    failed: list[str] = []

    def attempt() -> None:
        try:
            AuditReader([path], NOW)
        except AuditReadError as exc:
            failed.append(str(exc))

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), "opening it blocked"
    assert failed == [f"{path}: not a regular file ({what})"]


def test_the_configured_file_is_kept_whatever_it_is_for_the_reader_to_refuse(
    tmp_path: Path,
) -> None:
    path = tmp_path / "audit.log"
    path.mkdir()
    (tmp_path / "audit.log.1").write_bytes(b"")
    assert rotated_files(path) == [tmp_path / "audit.log.1", path]
    with pytest.raises(AuditReadError, match=r"audit\.log: not a regular file \(a directory\)"):
        AuditReader(rotated_files(path), NOW)


def test_a_device_is_not_a_regular_file() -> None:
    with pytest.raises(AuditReadError, match=r"^/dev/null: not a regular file \(a device\)$"):
        AuditReader([Path("/dev/null")], NOW)


def test_a_file_named_twice_or_linked_is_read_once(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    path.write_bytes(lines(event(1), event(2)))
    (tmp_path / "hard").hardlink_to(path)
    (tmp_path / "soft").symlink_to(path)
    events, reader = read(path, tmp_path / "hard", path, tmp_path / "soft")
    assert len(events) == 2
    assert reader.paths == (path,)
    assert reader.total == path.stat().st_size


def test_every_file_is_closed_when_read_or_when_closed(tmp_path: Path) -> None:
    paths = []
    for n in range(3):
        paths.append(tmp_path / f"audit.log.{n}")
        paths[-1].write_bytes(lines(event(n)))
    before = len(os.listdir("/proc/self/fd"))
    with AuditReader(paths, NOW) as reader:
        assert len(os.listdir("/proc/self/fd")) == before + 3  # open up front
    assert len(os.listdir("/proc/self/fd")) == before
    reader = AuditReader(paths, NOW)
    assert len(list(reader.events())) == 3
    assert len(os.listdir("/proc/self/fd")) == before


# -- compressed otherwise -------------------------------------------------------------------

PAYLOAD = lines(*(event(n) for n in range(300)))


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("audit.log.1.gz", gzip.compress(PAYLOAD)),
        ("audit.log.1.xz", lzma.compress(PAYLOAD)),
        ("audit.log.1.lzma", lzma.compress(PAYLOAD, format=lzma.FORMAT_ALONE)),
        ("audit.log.1.bz2", bz2.compress(PAYLOAD)),
        ("audit.log.1", bz2.compress(PAYLOAD)),  # told by its bytes, not its name
        ("audit.log.1.gz", lzma.compress(PAYLOAD)),
        ("two-members.xz", lzma.compress(PAYLOAD[:600]) + lzma.compress(PAYLOAD[600:])),
        ("two-members.bz2", bz2.compress(PAYLOAD[:600]) + bz2.compress(PAYLOAD[600:])),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_gzip_xz_and_bzip2_are_read_alike(tmp_path: Path, name: str, data: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    events, reader = read(path)
    assert [e.time for e in events] == [1_800_000_000 + n for n in range(300)]
    assert reader.skipped == {}


@pytest.mark.parametrize(
    "pack",
    [gzip.compress, lzma.compress, lambda data: bz2.compress(data, 1)],  # 100 kB blocks
    ids=["gzip", "xz", "bzip2"],
)
def test_compressed_cut_short_or_corrupt(tmp_path: Path, pack: Callable[[bytes], bytes]) -> None:
    whole = pack(lines(*(event(n) for n in range(5000))))
    path = tmp_path / "audit.log.2"
    path.write_bytes(whole[: len(whole) // 2])
    events, reader = read(path)
    assert 0 < len(events) < 5000
    assert reader.skipped == {SkipReason.CUT_SHORT: 1}
    path.write_bytes(whole[:40] + bytes(b ^ 0x55 for b in whole[40:200]) + whole[200:])
    with pytest.raises(AuditReadError, match=rf"^{path}: corrupt compressed data \("):
        read(path)


@pytest.mark.parametrize(
    ("name", "data", "form"),
    [
        ("audit.log.3.zst", b"\x28\xb5\x2f\xfd" + b"\0" * 20, "zstd"),
        ("audit.log.3", b"\x28\xb5\x2f\xfd" + b"\0" * 20, "zstd"),  # by its bytes
        ("audit.log.3.gz", b"\x28\xb5\x2f\xfd" + b"\0" * 20, "zstd"),
        ("audit.log.3.zst", b"garbage that has no magic", "zstd"),  # by its name
        ("audit.log.3.lz4", b"\x04\x22\x4d\x18" + b"\0" * 20, "lz4"),
        ("audit.log.3.Z", b"\x1f\x9d\x90" + b"\0" * 20, "compress"),
        ("audit.log.3.lz", b"LZIP\x01" + b"\0" * 20, "lzip"),
        ("audit.log.3.lzo", b"\x89LZO\x00" + b"\0" * 20, "lzop"),
        ("audit.log.3.br", b"\x0b\x02\x80", "brotli"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_other_compressions_are_refused_before_anything_is_read(
    tmp_path: Path, name: str, data: bytes, form: str
) -> None:
    good = tmp_path / "audit.log"
    good.write_bytes(lines(event(1)))
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(AuditReadError) as caught:
        AuditReader([good, path], NOW)
    message = str(caught.value)
    assert message.startswith(f"{path}: compressed with {form}, which cannot be read here: ")
    assert "decompress it" in message and "--audit" in message and "\n" not in message


# -- what the report is told about its input ----------------------------------------------


def test_the_oldest_event_and_the_events_from_syslog_are_noted(tmp_path: Path) -> None:
    path = tmp_path / "auth.log"
    path.write_bytes(
        lines(event(50))
        + b"Dec  2 03:00:01 mx1 twostep[812]: twostep: "
        + event(7).to_json().encode()
        + b"\n"
        + b"Dec  2 03:00:01 mx1 sshd[1]: user=twostep: "
        + event(1).to_json().encode()
        + b"\n"
        + lines(event(9))
    )
    events, reader = read(path)
    assert [e.time - 1_800_000_000 for e in events] == [50, 7, 9]
    assert reader.oldest == 1_800_000_007  # the forged sshd line is no event
    # a syslog file: its bare JSON lines are no more to be trusted than its tagged ones
    # (a multi-line message, written as it comes, puts one at the start of a line)
    assert reader.syslog_events == 3
    assert reader.skipped == {SkipReason.NOT_TWOSTEP: 1}
    audit = tmp_path / "audit.log"
    audit.write_bytes(lines(event(50)) + b"\n" + lines(event(9)))  # a blank line is no syslog
    assert read(audit)[1].syslog_events == 0
    empty = tmp_path / "empty.log"
    empty.write_bytes(b"")
    assert read(empty)[1].oldest is None


def test_a_time_ahead_of_now_is_counted_not_read(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    ahead = AuditEvent(NOW + 2 * 86400, "login", "bob", "accept", "imap", "", "password")
    far = b'{"time":%d,"action":"login","user":"bob","outcome":"accept"}\n' % (1 << 40)
    path.write_bytes(lines(event(1), ahead) + far)
    events, reader = read(path)
    assert [e.time for e in events] == [1_800_000_001]
    assert reader.skipped == {SkipReason.BAD_TIME: 2}


def test_progress_is_reported_in_bytes_up_to_the_total(tmp_path: Path) -> None:
    plain = tmp_path / "audit.log"
    plain.write_bytes(lines(*(event(n) for n in range(10_000))))
    packed = tmp_path / "audit.log.1.gz"
    packed.write_bytes(gzip.compress(lines(*(event(n) for n in range(10_000)))))
    seen: list[tuple[int, int]] = []
    reader = AuditReader([packed, plain], NOW, lambda done, total: seen.append((done, total)))
    assert sum(1 for _ in reader.events()) == 20_000
    total = plain.stat().st_size + packed.stat().st_size
    assert reader.total == total
    assert len(seen) > 3
    assert all(t == total for _, t in seen)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert seen[-1] == (total, total)
