"""The daemon's one choice of provider, shared by its forked serving processes."""

from __future__ import annotations

import os
from dataclasses import replace

from pam_twostep.directory._choice import ProviderChoice, Record


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
