"""Which provider a whole twostepd uses: one record that all its serving processes share.

Each serving process has its own connections, but not its own opinion of where they go.
Left to themselves, two processes of one daemon that saw an outage differently (one busy,
one idle) ended up on different providers, and one code sent to both was accepted twice.
So the record lives in memory mapped before the processes are forked, and says:

- ``index``: the provider every process reads from (and writes to, unless writes have
  their own provider, see ``_providers``); a process follows it before every operation;
- ``moved_at``: when it last moved, or when a fail-back probe last found the earlier
  provider not ready: fail-back waits from there;
- ``probe_until``: one process at a time probes for fail-back, under a lease that runs
  out, so a process that dies while probing does not stop fail-back for good;
- ``writes_down_until``: the write provider just failed: writes fail at once until then,
  instead of each waiting out the timeout;
- ``settings``: a fingerprint of the ``ldap.uris`` (and ``single_use``) the index
  counts in. The first process to start sets it, and a reload (SIGHUP) replaces it; a
  process whose settings differ (its reload failed, or the supervisor forked it after
  the file changed without a reload) serves nothing until it reloads, since its "first
  URI" may be another server. A replacement process forked from an edited file must
  not take the daemon over from the processes that run; but once none of those is left,
  it must, or the daemon would refuse every login until a reload;
- ``generation``: counts the reloads that changed the settings. A ``Providers`` built
  before the last of them (its process's reload was refused) never takes over: the
  administrator reloaded away from its settings;
- ``holders``: every ``Providers`` alive in the daemon's processes, with the settings
  it runs on, so that "none on the record's settings is left" can be told. A holder
  whose process is gone (or whose process ID now names another process: its start
  time differs) does not count.

A process whose provider fails moves the record by compare-and-set from the index it
saw: of two processes that notice one outage, the second finds the record moved and
follows it rather than moving it again. Times are ``time.monotonic()``, one clock for
every process of the machine.

The lock is a POSIX record lock on the memory's file (per process, so the forked
processes exclude each other) taken under a thread lock (so the threads of one process
do too). Private to the directory package.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import NamedTuple

__all__ = ["Holder", "ProviderChoice", "Record", "started"]

_LAYOUT = struct.Struct("<Q d d d Q Q")
"""index, moved_at, probe_until, writes_down_until, settings, generation."""
_INDEX = struct.Struct("<Q")
_SETTINGS_AT = 32
_HOLDERS_AT = 64
_HOLDER = struct.Struct("<i I Q Q")
_SLOTS = 512
"""64 serving processes at most, each with a ``Providers`` or two: room to spare."""
_SIZE = _HOLDERS_AT + _SLOTS * _HOLDER.size


class Holder(NamedTuple):
    """One ``Providers``: its process (ID and start time) and the settings it runs on."""

    pid: int
    serial: int
    started: int
    settings: int


def started(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot), or None if it is gone
    (a zombie is gone): with the ID, it tells a process from a later one that reused
    the ID. Raises ``OSError`` when it cannot tell (no /proc, no descriptor left)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            data = stat.read()
    except (FileNotFoundError, ProcessLookupError):
        if not os.path.exists("/proc/self/stat"):
            raise OSError("no /proc here") from None
        return None
    fields = data.rsplit(b")", 1)[-1].split()
    if b")" in data and fields[:1] in ([b"Z"], [b"X"]):
        return None  # a zombie
    if b")" not in data or len(fields) < 20 or not fields[19].isdigit():
        raise OSError(f"/proc/{pid}/stat: unexpected contents")
    return int(fields[19])


def _alive(holder: Holder) -> bool:
    """Gone only when known to be: a holder wrongly taken for dead could be taken
    over from while it serves."""
    try:
        return started(holder.pid) == holder.started
    except OSError:
        return True


@dataclass(frozen=True)
class Record:
    index: int = 0
    moved_at: float = 0.0
    probe_until: float = 0.0
    writes_down_until: float = 0.0
    settings: int = 0
    generation: int = 0


class ProviderChoice:
    """The shared record. Create it before forking; every process then sees one record."""

    def __init__(self) -> None:
        self._fd = os.memfd_create("twostep-provider-choice", os.MFD_CLOEXEC)
        size = -(-_SIZE // mmap.PAGESIZE) * mmap.PAGESIZE
        os.ftruncate(self._fd, size)
        self._map = mmap.mmap(self._fd, size)
        self._threads = threading.Lock()

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with self._threads:
            fcntl.lockf(self._fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.lockf(self._fd, fcntl.LOCK_UN)

    def _read(self) -> Record:
        return Record(*_LAYOUT.unpack_from(self._map, 0))

    def _write(self, record: Record) -> None:
        _LAYOUT.pack_into(
            self._map,
            0,
            record.index,
            record.moved_at,
            record.probe_until,
            record.writes_down_until,
            record.settings,
            record.generation,
        )

    def read(self) -> Record:
        with self._locked():
            return self._read()

    def index(self) -> int:
        """The index alone, without the lock: read before every operation, so it must
        cost nothing. A write may be seen half done, but indexes (below 16) differ in
        their first byte only, so a read gets the old value or the new; a stale one
        only means the move is followed at the next operation."""
        return int(_INDEX.unpack_from(self._map, 0)[0])

    def settings(self) -> int:
        """The settings fingerprint, likewise unlocked: a half-written one is told from
        a real difference by reading again under the lock."""
        return int(_INDEX.unpack_from(self._map, _SETTINGS_AT)[0])

    def _holders(self) -> list[Holder]:
        found = []
        for slot in range(_SLOTS):
            holder = Holder(*_HOLDER.unpack_from(self._map, _HOLDERS_AT + slot * _HOLDER.size))
            if holder.pid:
                found.append(holder)
        return found

    def _set_holders(self, holders: list[Holder]) -> None:
        empty = Holder(0, 0, 0, 0)
        for slot in range(_SLOTS):
            holder = holders[slot] if slot < len(holders) else empty
            _HOLDER.pack_into(self._map, _HOLDERS_AT + slot * _HOLDER.size, *holder)

    def join(self, holder: Holder, alive: Callable[[Holder], bool] = _alive) -> int | None:
        """Count ``holder`` among the living; returns the generation it is built in, or
        None if there is no room (it must then serve nothing: uncounted, it could be
        taken over from)."""
        with self._locked():
            living = [h for h in self._holders() if h != holder and alive(h)]
            if len(living) >= _SLOTS:
                return None
            self._set_holders([*living, holder])
            return self._read().generation

    def leave(self, holder: Holder) -> None:
        """``holder`` was closed: it no longer counts."""
        with self._locked():
            self._set_holders([h for h in self._holders() if h != holder])

    def adopt(self, settings: int, now: float) -> int:
        """Make ``settings`` the daemon's (a reload that succeeded); new settings start
        again on the first URI, in a new generation, which this returns."""

        def change(record: Record) -> Record:
            if record.settings == settings:
                return record
            return Record(moved_at=now, settings=settings, generation=record.generation + 1)

        return self.update(change).generation

    def take_over(
        self,
        holder: Holder,
        generation: int,
        now: float,
        alive: Callable[[Holder], bool] = _alive,
    ) -> bool:
        """Whether ``holder``'s settings are the daemon's, made so if need be: the record
        has none yet (the first process to start), or no living holder runs on the
        record's and no reload changed them since ``holder`` was built (``generation``)."""
        with self._locked():
            record = self._read()
            if record.settings == holder.settings:
                return True
            if record.settings != 0:
                if generation != record.generation:
                    return False
                others = (h for h in self._holders() if h != holder)
                if any(h.settings == record.settings and alive(h) for h in others):
                    return False
            self._write(
                Record(moved_at=now, settings=holder.settings, generation=record.generation)
            )
            return True

    def update(self, change: Callable[[Record], Record]) -> Record:
        """Apply ``change`` to the record atomically; returns the record as it is after."""
        with self._locked():
            record = change(self._read())
            self._write(record)
            return record

    def move(self, seen: int, to: int, now: float, settings: int | None = None) -> int:
        """Move from ``seen`` to ``to``, unless another process moved it first (or, given
        ``settings``, the record counts in other settings); returns the index in force
        afterwards, which the caller then uses."""

        def change(record: Record) -> Record:
            if record.index != seen or seen == to:
                return record
            if settings is not None and record.settings != settings:
                return record
            return replace(record, index=to, moved_at=now, probe_until=0.0)

        return self.update(change).index

    def lease_probe(
        self,
        now: float,
        wait: float,
        lease: float,
        settings: int | None = None,
        count: int | None = None,
    ) -> int | None:
        """The index in force, if this caller may probe for fail-back now (the record is
        on a later provider, ``wait`` has passed, no other probe holds the lease, and,
        given them, the record counts in ``settings`` within ``count`` URIs); else None.
        The lease runs until ``now + lease``: that value is the caller's token."""
        granted: list[int] = []

        def change(record: Record) -> Record:
            if record.index == 0 or now - record.moved_at < wait or now < record.probe_until:
                return record
            if settings is not None and record.settings != settings:
                return record
            if count is not None and record.index >= count:
                return record
            granted.append(record.index)
            return replace(record, probe_until=now + lease)

        self.update(change)
        return granted[0] if granted else None

    def probed(self, wait_from: float, token: float | None = None) -> None:
        """A probe ended: its lease ends, and unless the probe moved the daemon (a move
        ends the lease itself) the next probe waits from ``wait_from``. With ``token``
        (the lease's end), only if the lease is still that probe's: a probe that outlived
        its lease must not end another's."""

        def change(record: Record) -> Record:
            if record.probe_until == 0.0:
                return record
            if token is not None and record.probe_until != token:
                return record
            return replace(record, moved_at=wait_from, probe_until=0.0)

        self.update(change)

    def claim_write_retry(self, now: float, hold: float) -> tuple[str, float]:
        """Before the service connects to the write provider: ``"up"`` (not known to be
        down: connect), ``"retry"`` (it was down and its wait ran out: this caller, and
        only it, tries it now; the others fail at once for ``hold`` meanwhile) or
        ``"down"`` (fail at once); with the retry's token, for ``writes_up``."""
        answer: list[tuple[str, float]] = []

        def change(record: Record) -> Record:
            if record.writes_down_until == 0.0:
                answer.append(("up", 0.0))
                return record
            if now < record.writes_down_until:
                answer.append(("down", 0.0))
                return record
            answer.append(("retry", now + hold))
            return replace(record, writes_down_until=now + hold)

        self.update(change)
        return answer[0]

    def writes_up(self, token: float) -> None:
        """The retry that holds ``token`` reached the write provider: writes may go to it
        again, unless another writer saw it fail since."""

        def change(record: Record) -> Record:
            if record.writes_down_until != token:
                return record
            return replace(record, writes_down_until=0.0)

        self.update(change)

    def writes_down(self, until: float) -> None:
        """The write provider failed: writes fail at once until ``until``."""
        self.update(lambda record: replace(record, writes_down_until=until))

    def close(self) -> None:
        self._map.close()
        os.close(self._fd)
