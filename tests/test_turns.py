"""Turns per entry: one holder at a time, waiting told, stale reads spotted, bounded."""

from __future__ import annotations

import threading

import pytest

from pam_twostep import turns
from pam_twostep.core.errors import DirectoryUnavailable
from pam_twostep.turns import Turns


def test_an_uncontended_turn_does_not_wait() -> None:
    t = Turns()
    with t.turn("uid=a", 1) as waited:
        assert not waited
    with t.turn("uid=a", 1) as waited:
        assert not waited


def test_a_second_holder_waits_and_is_told() -> None:
    t = Turns()
    inside = threading.Event()
    release = threading.Event()
    seen: list[bool] = []

    def first() -> None:
        with t.turn("uid=a", 5):
            inside.set()
            release.wait(5)

    thread = threading.Thread(target=first)
    thread.start()
    inside.wait(5)
    with t.turn("uid=b", 1) as other:
        assert not other  # other entries are not held up

    def second() -> None:
        with t.turn("uid=a", 5) as waited:
            seen.append(waited)

    waiter = threading.Thread(target=second)
    waiter.start()
    release.set()
    thread.join()
    waiter.join()
    assert seen == [True]


def test_waiting_past_the_timeout_is_a_temporary_failure() -> None:
    t = Turns()
    inside = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with t.turn("uid=a", 5):
            inside.set()
            release.wait(5)

    thread = threading.Thread(target=hold)
    thread.start()
    inside.wait(5)
    with pytest.raises(DirectoryUnavailable), t.turn("uid=a", 0.05):
        pass  # pragma: no cover
    release.set()
    thread.join()
    assert not t._turns  # nothing left behind, even after the timeout


def test_reads_are_stale_after_a_write_of_their_entry() -> None:
    t = Turns()
    mark = t.mark()
    assert not t.stale("uid=a", mark)
    t.wrote("uid=b")
    assert not t.stale("uid=a", mark)
    t.wrote("uid=a")
    assert t.stale("uid=a", mark)
    assert not t.stale("uid=a", t.mark())


def test_forgetting_makes_every_older_read_stale(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(turns, "_TRACKED", 3)
    t = Turns()
    mark = t.mark()
    for name in ("a", "b", "c", "d"):
        t.wrote(f"uid={name}")
    assert len(t._written) <= 3
    assert t.stale("uid=never-written", mark)
    assert not t.stale("uid=never-written", t.mark())
