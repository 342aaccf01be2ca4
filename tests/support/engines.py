"""An engine built the way twostepd builds one: for tests that set users up as an
administrator would, or that play a second serving process or host."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from pam_twostep.audit import AuditSink, MemorySink
from pam_twostep.config import Config, load_secrets
from pam_twostep.directory import Directory
from pam_twostep.engine import Engine
from pam_twostep.engine._ports import StaleNotifier

__all__ = ["engine_for"]


@contextmanager
def engine_for(
    config: Config,
    clock: Callable[[], float] = time.time,
    audit: AuditSink | None = None,
    notices: StaleNotifier | None = None,
) -> Iterator[Engine]:
    """An engine on its own directory connections, closed afterwards."""
    loaded = load_secrets(config)
    directory = Directory(config.ldap, config.users, loaded.bind_password)
    try:
        yield Engine(
            config, directory, loaded.keyring, audit or MemorySink(), clock=clock, notices=notices
        )
    finally:
        directory.close()
