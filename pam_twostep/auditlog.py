"""Reading audit events back: the audit file and its rotated, compressed siblings, or a
syslog file such as /var/log/auth.log, as a stream of events.

``twostep report readiness`` reads what twostepd wrote (``audit``) over weeks, which
may be gigabytes: lines are read one at a time and handed on, never kept, and each is
cut at ``MAX_LINE`` bytes however long it runs, so no line, however hostile, costs more
memory than that. Which lines are events, and why the others are not, is the core's
(``core.auditlines``); what is here is files: finding logrotate's siblings
(``file.1``, ``file.2.gz``, and with ``dateext`` ``file-20261201[.gz]``), opening each
compressed or not (told by its first bytes, not its name), counting bytes read for a
progress bar, and saying in one sentence which file could not be read.

Nothing is left out silently, since a report that left a file out would undercount
exactly the users it is meant to find:

- gzip, xz (and .lzma) and bzip2 are read; a copy compressed otherwise (zstd, lz4,
  compress, lzip, brotli: by its first bytes, or by its name when they tell nothing)
  stops the reading with an ``AuditReadError`` saying to decompress it.
- Two copies of one rotation (``file.1`` and ``file.1.gz``: a compression cut short
  leaves both) would count each event twice: the uncompressed one is read, since it is
  the one that was whole. A file named twice (or linked) is read once.
- Every file is opened when the reader is made, before any is read, so one that is
  missing or forbidden fails first; and only a regular file is read: a FIFO or a device
  could block or never end (it is opened with ``O_NONBLOCK``, then looked at).
- A .gz (or .xz, .bz2) that ends early (copied while being written, a disk that filled
  up) loses only its last line, counted as ``cut-short``: every event before it is
  good. Corrupt compressed data is an ``AuditReadError``.

The reader also notes the oldest event it read, so the command can say when the logs
do not reach back to the start of the period, and how many events came from syslog,
which any local user can write to (``core.auditlines``).
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import re
import stat
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Protocol

from .core.auditlines import MAX_LINE, LoggedEvent, SkipReason, parse_line

__all__ = ["AuditReadError", "AuditReader", "rotated_files"]

_PROGRESS_EVERY = 4096
"""Lines between two progress reports (each asks the file where it is)."""

_READABLE: tuple[tuple[bytes, str], ...] = (
    (b"\x1f\x8b", "gzip"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"]\x00\x00", "lzma"),
    (b"BZh", "bzip2"),
)
"""First bytes of the compressed forms read here (no audit or syslog line starts so)."""
_UNREADABLE: tuple[tuple[bytes, str], ...] = (
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"\x04\x22\x4d\x18", "lz4"),
    (b"\x1f\x9d", "compress"),
    (b"LZIP", "lzip"),
    (b"\x89LZO", "lzop"),
)
"""First bytes of compressed forms the standard library cannot read."""
_UNREADABLE_NAMES = {
    "zst": "zstd",
    "lz4": "lz4",
    "Z": "compress",
    "lz": "lzip",
    "lzo": "lzop",
    "br": "brotli",
}
"""Suffixes of compressed forms not read here, for those without first bytes to tell."""
_SUFFIXES = ("gz", "xz", "lzma", "bz2", *_UNREADABLE_NAMES)
"""What logrotate's ``compresscmd`` may add to a rotated copy; the order is which copy
of one rotation is read when there are several (after the uncompressed one)."""
_TOOL = {"zstd": "zstd -d", "lz4": "lz4 -d", "compress": "uncompress", "lzip": "lzip -d"}


class _Lines(Protocol):
    """An open file, plain or decompressing, as far as reading lines goes."""

    def readline(self, size: int, /) -> bytes: ...


class AuditReadError(Exception):
    """A file that cannot be read, or whose compressed data is corrupt."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path


def _problem(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def rotated_files(path: Path) -> list[Path]:
    """``path`` and the siblings logrotate made of it, oldest first (so a progress bar
    ends on the current file): numbered ones from the highest number, dated ones from
    the earliest date, then ``path`` itself; of two copies of one rotation (``.1`` and
    ``.1.gz``), the uncompressed one. A sibling that is not a file is no copy and is
    left out; ``path`` itself is kept whatever it is, for the reader to refuse. Raises
    ``AuditReadError`` when there is none at all, or the directory cannot be listed."""
    suffixes = "|".join(re.escape(s) for s in _SUFFIXES)
    sibling = re.compile(
        re.escape(path.name) + rf"(?:\.(\d{{1,6}})|-(\d{{8,14}}))(?:\.({suffixes}))?"
    )
    numbered: dict[int, list[tuple[int, Path]]] = {}
    dated: dict[str, list[tuple[int, Path]]] = {}
    try:
        for entry in path.parent.iterdir():
            found = sibling.fullmatch(entry.name)
            if found is None or not entry.is_file():
                continue
            suffix = found.group(3)
            preference = 0 if suffix is None else 1 + _SUFFIXES.index(suffix)
            if found.group(1) is not None:
                numbered.setdefault(int(found.group(1)), []).append((preference, entry))
            else:
                dated.setdefault(found.group(2), []).append((preference, entry))
    except OSError as exc:
        raise AuditReadError(path.parent, f"cannot list the directory: {_problem(exc)}") from None
    files = [min(dated[d])[1] for d in sorted(dated)]
    files += [min(numbered[n])[1] for n in sorted(numbered, reverse=True)]
    if path.exists():  # not a regular file (a FIFO): the reader refuses it, by name
        files.append(path)
    if not files:
        raise AuditReadError(path, "no such file, and no rotated copies of it")
    return files


def _not_regular(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a file"


def _unopened(path: Path, exc: OSError) -> str:
    """Why ``path`` could not be opened: what it is, when that is the reason (a socket
    cannot be opened at all)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        mode = stat.S_IFREG
    if not stat.S_ISREG(mode):
        return f"not a regular file ({_not_regular(mode)})"
    return f"cannot read it: {_problem(exc)}"


def _form(path: Path, head: bytes) -> str:
    """How the file is compressed ("" for not at all), from its first bytes; raises
    ``AuditReadError`` for a form not read here."""
    for magic, form in _READABLE:
        if head.startswith(magic):
            return form
    form = next((f for magic, f in _UNREADABLE if head.startswith(magic)), "")
    suffix = path.name.rpartition(".")[2] if "." in path.name else ""
    form = form or _UNREADABLE_NAMES.get(suffix, "")
    if form:
        tool = _TOOL.get(form, form + " -d")
        raise AuditReadError(
            path,
            f"compressed with {form}, which cannot be read here: decompress it "
            f"({tool}) or pass the decompressed files with --audit",
        )
    return ""


class _Opened:
    """One file, open, checked, and how it is compressed."""

    def __init__(self, path: Path, raw: BinaryIO, size: int, form: str) -> None:
        self.path = path
        self.raw = raw
        self.size = size
        self.form = form

    def stream(self) -> _Lines:
        if self.form == "gzip":
            return gzip.GzipFile(fileobj=self.raw, mode="rb")
        if self.form in ("xz", "lzma"):
            return lzma.LZMAFile(self.raw, "rb")
        if self.form == "bzip2":
            return bz2.BZ2File(self.raw, "rb")
        return self.raw


def _open(path: Path) -> tuple[_Opened, tuple[int, int]]:
    """``path`` open for reading, and its device and inode."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise AuditReadError(path, _unopened(path, exc)) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise AuditReadError(path, f"not a regular file ({_not_regular(info.st_mode)})")
        head = os.pread(fd, 8, 0)
        form = _form(path, head)
        raw = os.fdopen(fd, "rb")
    except OSError as exc:
        os.close(fd)
        raise AuditReadError(path, f"cannot read it: {_problem(exc)}") from None
    except BaseException:
        os.close(fd)
        raise
    return _Opened(path, raw, info.st_size, form), (info.st_dev, info.st_ino)


class AuditReader:
    """The events of ``paths``, in order, with what was skipped counted in ``skipped``.

    ``now`` bounds the times events may carry (``core.auditlines``). ``progress(done,
    total)`` is called now and then with the bytes read so far (of a compressed file,
    its compressed bytes) and the files' total size; it may be set once ``total`` is
    known. Every file is opened when the reader is made (see the module), so one that
    cannot be read fails before any is read; ``paths`` is then the files to be read, a
    file named twice once. Close it (or use it in ``with``) when not reading it all.
    """

    def __init__(
        self,
        paths: Sequence[Path],
        now: int,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        self.now = now
        self.lines = 0
        self.skipped: Counter[SkipReason] = Counter()
        self.progress = progress
        self.oldest: int | None = None
        """The time of the oldest event read (None: none was)."""
        self.syslog_events = 0
        """Events read from a syslog file, which any local user could have written to:
        every event of a file with a syslog line in it, bare JSON lines included (a
        syslog daemon that writes a multi-line message as it comes lets ``logger`` put
        one at the start of a line)."""
        self._done = 0
        self.total = 0
        self._files: list[_Opened] = []
        seen: set[tuple[int, int]] = set()
        try:
            for path in paths:
                opened, identity = _open(path)
                if identity in seen:
                    opened.raw.close()
                    continue
                seen.add(identity)
                self._files.append(opened)
                self.total += opened.size
        except BaseException:
            self.close()
            raise
        self.paths = tuple(f.path for f in self._files)

    def close(self) -> None:
        for opened in self._files:
            opened.raw.close()

    def __enter__(self) -> AuditReader:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def events(self) -> Iterator[LoggedEvent]:
        for opened in self._files:
            events = 0
            syslog = False
            with opened.raw:
                for line in self._lines(opened):
                    self.lines += 1
                    parsed = parse_line(line, self.now)
                    if isinstance(parsed, SkipReason):
                        # another program's line: this is no audit file
                        other = parsed is SkipReason.NOT_TWOSTEP and bool(line.strip())
                        syslog = syslog or other
                        self.skipped[parsed] += 1
                        continue
                    if self.oldest is None or parsed.time < self.oldest:
                        self.oldest = parsed.time
                    events += 1
                    syslog = syslog or parsed.from_syslog
                    yield parsed
            if syslog:  # the file is a syslog file: none of its events is to be trusted
                self.syslog_events += events
        self._report(self.total)

    def _report(self, done: int) -> None:
        if self.progress is not None:
            self.progress(min(done, self.total), self.total)

    def _lines(self, opened: _Opened) -> Iterator[bytes]:
        path, raw = opened.path, opened.raw
        stream = opened.stream()
        count = 0
        while True:
            line = self._read(path, stream)
            if line is None:  # a compressed file cut short: its partial last line is lost
                self.lines += 1
                self.skipped[SkipReason.CUT_SHORT] += 1
                break
            if not line:
                break
            if len(line) > MAX_LINE:
                yield line  # parse_line counts it as too long without reading it
                self._skip_rest(path, stream, line)
            else:
                yield line
            count += 1
            if count % _PROGRESS_EVERY == 0:
                self._report(self._done + raw.tell())
        self._done += raw.tell()
        self._report(self._done)

    def _skip_rest(self, path: Path, stream: _Lines, line: bytes) -> None:
        """Read on to the end of an over-long line, a bounded piece at a time."""
        while line and not line.endswith(b"\n"):
            line = self._read(path, stream) or b""

    @staticmethod
    def _read(path: Path, stream: _Lines) -> bytes | None:
        """The next line, at most ``MAX_LINE + 1`` bytes of it; None when compressed
        data ended before its end marker."""
        try:
            return stream.readline(MAX_LINE + 1)
        except EOFError:
            return None
        except (zlib.error, lzma.LZMAError) as exc:
            raise AuditReadError(path, f"corrupt compressed data ({exc})") from None
        except OSError as exc:
            if exc.errno is None:  # gzip's BadGzipFile, bz2's "Invalid data stream"
                raise AuditReadError(path, f"corrupt compressed data ({exc})") from None
            raise AuditReadError(path, f"cannot read it: {_problem(exc)}") from None
