"""A directory with something slipped in just before one of its operations.

Contract tests give the engine this instead of a bare ``Directory`` (through the
engine's public constructor, so they never reach into it): a hook armed on, say,
``modify`` runs once, right before the engine's write reaches slapd. The hook can let
another engine change the entry first (a lost race between read and write) or stop
slapd (the directory going away mid-call); the real operation then runs and fails or
succeeds as it would.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, cast

from pam_twostep.audit import AuditSink
from pam_twostep.config import Config, load_secrets
from pam_twostep.directory import Directory
from pam_twostep.engine import Engine

__all__ = ["Interposed", "interposed_engine"]


class Interposed:
    """Delegates everything to ``real``; runs an armed hook once before its operation."""

    def __init__(self, real: Directory) -> None:
        self._real = real
        self._hooks: dict[str, Callable[[], None]] = {}
        self.ran: list[str] = []
        """The operations whose hook has run, in order."""

    def before(self, operation: str, hook: Callable[[], None]) -> None:
        """Run ``hook`` once, just before the next call of ``operation``."""
        if not callable(getattr(self._real, operation, None)):
            raise AttributeError(f"Directory has no operation {operation!r}")
        self._hooks[operation] = hook

    def armed(self) -> set[str]:
        return set(self._hooks)

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._real, name)
        if not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            hook = self._hooks.pop(name, None)
            if hook is not None:
                self.ran.append(name)
                hook()
            return attribute(*args, **kwargs)

        return call


@contextmanager
def interposed_engine(
    config: Config, clock: Callable[[], float], audit: AuditSink
) -> Iterator[tuple[Engine, Interposed]]:
    """An engine built as twostepd builds one, on an ``Interposed`` directory."""
    loaded = load_secrets(config)
    real = Directory(config.ldap, config.users, loaded.bind_password)
    directory = Interposed(real)
    try:
        engine = Engine(config, cast(Directory, directory), loaded.keyring, audit, clock=clock)
        yield engine, directory
    finally:
        real.close()
