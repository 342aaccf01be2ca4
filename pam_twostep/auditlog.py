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

A .gz that ends early (copied while being written, a disk that filled up) loses only
its last line, counted as ``cut-short``: every event before it is good. A .gz whose
data is corrupt, or a file that cannot be opened, stops the reading with an
``AuditReadError``: a report that silently left a file out would undercount exactly the
users it is meant to find.
"""

from __future__ import annotations

import gzip
import re
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Protocol

from .core.auditlines import MAX_LINE, LoggedEvent, SkipReason, parse_line

__all__ = ["AuditReadError", "AuditReader", "rotated_files"]

_GZIP_MAGIC = b"\x1f\x8b"
_PROGRESS_EVERY = 4096
"""Lines between two progress reports (each asks the file where it is)."""


class _Lines(Protocol):
    """An open file, plain or decompressing, as far as reading lines goes."""

    def readline(self, size: int | None = -1, /) -> bytes: ...


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
    the earliest date, then ``path`` itself. Raises ``AuditReadError`` when there is
    none at all, or the directory cannot be listed."""
    sibling = re.compile(re.escape(path.name) + r"(?:\.(\d{1,6})|-(\d{8,14}))(?:\.gz)?")
    numbered: list[tuple[int, str, Path]] = []
    dated: list[tuple[str, str, Path]] = []
    try:
        for entry in path.parent.iterdir():
            found = sibling.fullmatch(entry.name)
            if found is None or not entry.is_file():
                continue
            if found.group(1) is not None:
                numbered.append((int(found.group(1)), entry.name, entry))
            else:
                dated.append((found.group(2), entry.name, entry))
    except OSError as exc:
        raise AuditReadError(path.parent, f"cannot list the directory: {_problem(exc)}") from None
    files = [p for *_, p in sorted(dated)] + [p for *_, p in sorted(numbered, reverse=True)]
    if path.is_file():
        files.append(path)
    if not files:
        raise AuditReadError(path, "no such file, and no rotated copies of it")
    return files


class AuditReader:
    """The events of ``paths``, in order, with what was skipped counted in ``skipped``.

    ``progress(done, total)`` is called now and then with the bytes read so far (of a
    compressed file, its compressed bytes) and the files' total size; it may be set
    once ``total`` is known. Every file is looked at (``stat``) when the reader is
    made, so one that is missing or cannot be read fails before any is read."""

    def __init__(
        self, paths: Sequence[Path], progress: Callable[[int, int], None] | None = None
    ) -> None:
        self.paths = tuple(paths)
        self.lines = 0
        self.skipped: Counter[SkipReason] = Counter()
        self.progress = progress
        self._done = 0
        self.total = 0
        for path in self.paths:
            try:
                self.total += path.stat().st_size
            except OSError as exc:
                raise AuditReadError(path, f"cannot read it: {_problem(exc)}") from None

    def events(self) -> Iterator[LoggedEvent]:
        for path in self.paths:
            for line in self._lines(path):
                self.lines += 1
                parsed = parse_line(line)
                if isinstance(parsed, SkipReason):
                    self.skipped[parsed] += 1
                else:
                    yield parsed
        self._report(self.total)

    def _report(self, done: int) -> None:
        if self.progress is not None:
            self.progress(min(done, self.total), self.total)

    def _lines(self, path: Path) -> Iterator[bytes]:
        try:
            raw = path.open("rb")
        except OSError as exc:
            raise AuditReadError(path, f"cannot read it: {_problem(exc)}") from None
        with raw:
            try:
                compressed = raw.read(2) == _GZIP_MAGIC
                raw.seek(0)
            except OSError as exc:
                raise AuditReadError(path, f"cannot read it: {_problem(exc)}") from None
            stream: _Lines = gzip.GzipFile(fileobj=raw, mode="rb") if compressed else raw
            count = 0
            while True:
                line = self._read(path, stream)
                if line is None:  # a .gz cut short: its partial last line is lost
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
        """The next line, at most ``MAX_LINE + 1`` bytes of it; None when a .gz ended
        before its end marker."""
        try:
            return stream.readline(MAX_LINE + 1)
        except EOFError:
            return None
        except (gzip.BadGzipFile, zlib.error) as exc:
            raise AuditReadError(path, f"corrupt compressed data ({exc})") from None
        except OSError as exc:
            raise AuditReadError(path, f"cannot read it: {_problem(exc)}") from None
