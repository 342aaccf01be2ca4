"""The daemon's one choice of provider, shared by its forked serving processes."""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import replace

from pam_twostep.directory._choice import Holder, ProviderChoice, Record, started


def _in_child(run: object) -> int:
    """Run ``run`` in a forked process (as the supervisor forks); its exit code."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = int(run())  # type: ignore[operator]
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_a_move_made_in_one_process_is_seen_by_the_others() -> None:
    choice = ProviderChoice()
    assert _in_child(lambda: choice.move(0, 1, 5.0) == 1) == 1
    assert choice.read() == Record(index=1, moved_at=5.0)
    assert choice.index() == 1  # the unlocked read of every operation


def test_the_second_process_to_notice_an_outage_follows_the_first() -> None:
    choice = ProviderChoice()
    assert choice.move(0, 1, 5.0) == 1
    # another process saw provider 0 fail too, and found provider 2 answering
    assert choice.move(0, 2, 5.1) == 1
    assert choice.read().index == 1
    assert choice.move(1, 1, 6.0) == 1 and choice.read().moved_at == 5.0


def test_updates_from_several_processes_are_not_lost() -> None:
    choice = ProviderChoice()

    def count() -> int:
        for _ in range(300):
            choice.update(lambda r: replace(r, moved_at=r.moved_at + 1))
        return 0

    pids = []
    for _ in range(3):
        pid = os.fork()
        if pid == 0:
            os._exit(count())
        pids.append(pid)
    count()
    for pid in pids:
        os.waitpid(pid, 0)
    assert choice.read().moved_at == 1200


def test_one_probe_at_a_time_under_a_lease_that_runs_out() -> None:
    choice = ProviderChoice()
    assert choice.lease_probe(100.0, 60, 3) is None  # on the first provider: nothing to do
    choice.move(0, 1, 100.0)
    assert choice.lease_probe(159.0, 60, 3) is None  # too early
    assert choice.lease_probe(160.0, 60, 3) == 1
    assert _in_child(lambda: choice.lease_probe(161.0, 60, 3) is None) == 1
    assert choice.lease_probe(163.5, 60, 3) == 1  # the prober died: the lease ran out
    choice.probed(163.5)
    assert choice.lease_probe(200.0, 60, 3) is None  # a failed probe waits a period
    assert choice.lease_probe(223.5, 60, 3) == 1


def test_a_move_ends_the_probe_and_writes_down_is_shared() -> None:
    choice = ProviderChoice()
    choice.move(0, 1, 0.0)
    assert choice.lease_probe(60.0, 60, 3) == 1
    assert choice.move(1, 0, 60.5) == 0
    assert choice.read() == Record(index=0, moved_at=60.5)
    assert _in_child(lambda: choice.writes_down(70.0) or 0) == 0
    assert choice.read().writes_down_until == 70.0


def test_a_process_on_other_settings_neither_probes_nor_moves() -> None:
    """Review of issue 22: a process left on old ``ldap.uris`` took the lease and moved
    the record by its own list, onto a server never compared."""
    choice = ProviderChoice()
    choice.adopt(7, 0.0)
    choice.move(0, 2, 0.0, settings=7)
    assert choice.lease_probe(100.0, 60, 3, settings=8) is None
    assert choice.lease_probe(100.0, 60, 3, settings=7, count=2) is None  # fewer URIs
    assert choice.read().probe_until == 0.0  # nothing held by the refused callers
    assert choice.move(2, 0, 100.0, settings=8) == 2
    assert choice.lease_probe(100.0, 60, 3, settings=7, count=3) == 2


def test_a_probe_that_outlived_its_lease_does_not_end_the_next() -> None:
    choice = ProviderChoice()
    choice.move(0, 1, 0.0)
    assert choice.lease_probe(60.0, 60, 3) == 1  # token 63.0
    assert choice.lease_probe(64.0, 60, 3) == 1  # the first ran long: token 67.0
    choice.probed(64.5, token=63.0)  # the first ends now
    assert choice.read().probe_until == 67.0
    choice.probed(65.0, token=67.0)
    assert choice.read().probe_until == 0.0 and choice.read().moved_at == 65.0


def test_new_settings_start_on_the_first_provider() -> None:
    choice = ProviderChoice()
    choice.adopt(7, 0.0)
    choice.move(0, 1, 1.0)
    choice.adopt(7, 2.0)
    assert choice.read().index == 1  # the same settings: nothing changes
    assert choice.adopt(9, 3.0) == 2  # a reload that changed them: a new generation
    assert choice.read() == Record(index=0, moved_at=3.0, settings=9, generation=2)
    assert choice.settings() == 9


def _holder(pid: int, settings: int, serial: int = 1) -> Holder:
    return Holder(pid, serial, 1000 + pid, settings)


def test_only_a_reload_replaces_the_settings_while_their_holders_live() -> None:
    """Review of issue 22: a replacement process forked from an edited file took the
    daemon over, and the processes on the running configuration refused to serve; yet
    once none of those is left, the replacements must serve, not all refuse."""
    choice = ProviderChoice()
    live = {100, 101}

    def alive(holder: Holder) -> bool:
        return holder.pid in live

    a, b = _holder(100, 7), _holder(101, 7)
    for first in (a, b):
        assert choice.join(first, alive) == 0
        assert choice.take_over(first, 0, 0.0, alive)  # the first to start sets them
    choice.move(0, 1, 1.0)
    live = {101, 102}  # a died; its replacement read a file edited to 9
    r1 = _holder(102, 9)
    assert choice.join(r1, alive) == 0
    assert not choice.take_over(r1, 0, 2.0, alive)
    assert choice.read() == Record(index=1, moved_at=1.0, settings=7)
    live = {102, 103}  # b died too: nobody on 7 is left
    r2 = _holder(103, 9)
    assert choice.join(r2, alive) == 0
    assert choice.take_over(r2, 0, 3.0, alive)
    assert choice.read() == Record(index=0, moved_at=3.0, settings=9)
    assert choice.take_over(r1, 0, 3.5, alive)  # r1 serves now: it runs on 9
    # the file is edited to 11; r2 dies: r1, on 9, lives and serves, so the replacement
    # must not take over (a holder counts whether it took over or followed)
    live = {102, 104}
    r3 = _holder(104, 11)
    assert choice.join(r3, alive) == 0
    assert not choice.take_over(r3, 0, 4.0, alive)
    # a closed holder no longer counts, though its process lives
    choice.leave(r1)
    assert choice.take_over(r3, 0, 5.0, alive)
    assert choice.settings() == 11


def test_a_process_whose_reload_was_refused_never_takes_the_daemon_back() -> None:
    """Review of issue 22: the others reloaded onto new settings and died; the one
    whose reload had been refused, still on the old, took the daemon back to them."""
    choice = ProviderChoice()
    live = {100, 101}

    def alive(holder: Holder) -> bool:
        return holder.pid in live

    stale, reloaded = _holder(100, 7), _holder(101, 9)
    assert choice.join(stale, alive) == 0 and choice.take_over(stale, 0, 0.0, alive)
    assert choice.join(reloaded, alive) == 0
    assert choice.adopt(9, 1.0) == 1  # its reload: generation 1
    live = {100}  # the reloaded one died
    assert not choice.take_over(stale, 0, 2.0, alive)
    assert choice.read() == Record(index=0, moved_at=1.0, settings=9, generation=1)
    live = {100, 102}
    replacement = _holder(102, 9)
    assert choice.join(replacement, alive) == 1
    assert choice.take_over(replacement, 1, 3.0, alive)


def test_a_holder_is_its_process_not_a_later_one_with_its_id() -> None:
    """Process IDs are reused: a holder counts only while its process, by ID and start
    time, lives (a zombie does not)."""
    pid = os.getpid()
    me = started(pid)
    assert me is not None
    choice = ProviderChoice()
    running = Holder(pid, 1, me, 7)
    assert choice.join(running) == 0 and choice.take_over(running, 0, 0.0)
    newcomer = Holder(pid, 2, me, 9)
    assert not choice.take_over(newcomer, 0, 1.0)  # this very process holds 7
    choice.leave(running)
    choice.join(Holder(pid, 1, me + 1, 7))  # "this ID, started later": someone else
    assert choice.take_over(newcomer, 0, 2.0)
    child = os.fork()
    if child == 0:
        os._exit(0)
    time.sleep(0.2)  # a zombie until reaped
    assert started(child) is None
    os.waitpid(child, 0)
    assert started(child) is None


def test_a_holder_that_cannot_be_looked_at_counts_as_alive() -> None:
    """Review of issue 22: a process out of descriptors took every holder for dead
    (it could not open their /proc entries), and dropped them all from the record."""
    choice = ProviderChoice()
    me = started(os.getpid())
    assert me is not None
    running = Holder(os.getpid(), 1, me, 7)
    assert choice.join(running) == 0 and choice.take_over(running, 0, 0.0)

    def out_of_descriptors() -> int:
        with contextlib.suppress(OSError):
            while True:
                os.open("/dev/null", os.O_RDONLY)
        try:
            started(os.getpid())
        except OSError:
            pass
        else:
            return 2
        choice.join(Holder(os.getpid(), 1, 1, 7))
        return 0 if choice.take_over(Holder(os.getpid(), 2, 1, 9), 0, 1.0) is False else 3

    assert _in_child(out_of_descriptors) == 0
    assert not choice.take_over(Holder(2**22 + 1, 1, 1, 9), 0, 2.0)  # still counted


def test_there_is_room_for_every_holder_the_daemon_can_have() -> None:
    choice = ProviderChoice()
    holders = [_holder(1000 + n, 7) for n in range(128)]  # 64 processes mid-reload
    assert all(choice.join(h, lambda h: True) == 0 for h in holders)


def test_one_writer_retries_a_write_provider_that_was_down() -> None:
    """Review of issue 22: when the hold ran out, every waiting writer tried the first
    URI at once, each holding a pooled slot for the timeout when it dropped packets."""
    choice = ProviderChoice()
    assert choice.claim_write_retry(10.0, 5) == ("up", 0.0)
    choice.writes_down(15.0)
    assert choice.claim_write_retry(12.0, 5) == ("down", 0.0)
    assert choice.claim_write_retry(15.0, 5) == ("retry", 20.0)
    assert _in_child(lambda: choice.claim_write_retry(15.1, 5)[0] == "down") == 1
    choice.writes_up(19.0)  # not this retry's token: nothing
    assert choice.read().writes_down_until == 20.0
    choice.writes_up(20.0)  # the retry connected
    assert choice.claim_write_retry(15.2, 5) == ("up", 0.0)


def test_a_failure_seen_after_the_retry_claim_is_not_wiped_out() -> None:
    choice = ProviderChoice()
    choice.writes_down(1.0)
    _, token = choice.claim_write_retry(2.0, 5)
    choice.writes_down(3.5)  # another writer saw it fail meanwhile
    choice.writes_up(token)
    assert choice.read().writes_down_until == 3.5
