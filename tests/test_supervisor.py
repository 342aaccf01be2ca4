"""The supervisor forks serving processes and gives up, with their exit code, when they
keep dying at start-up (a configuration that cannot work must not become a fork loop)."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator

import pytest

from pam_twostep.core.errors import ConfigError
from pam_twostep.supervisor import Supervisor


@pytest.fixture(autouse=True)
def _signals_restored() -> Iterator[None]:
    saved = {n: signal.getsignal(n) for n in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    yield
    for number, handler in saved.items():
        signal.signal(number, handler)


def _refuses_its_configuration() -> int:
    raise ConfigError("no such group")


def _fails() -> int:
    raise RuntimeError("a bug")


@pytest.mark.parametrize(
    ("serve", "code"),
    [
        (lambda: 78, 78),
        (_refuses_its_configuration, 78),
        (_fails, 70),
        (lambda: 0, 70),  # a serving process that stops by itself is a fault too
    ],
    ids=["exit-78", "config-error", "exception", "exit-0"],
)
def test_processes_that_keep_dying_end_the_supervisor(serve: Callable[[], int], code: int) -> None:
    assert Supervisor(serve, 2).run() == code
