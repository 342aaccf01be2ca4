"""Throttles that slow one address down before anything locks the account for everyone.

Lock-out (``lockout.py``) counts failures per account from anywhere, so on its own it
hands the owner's availability to whoever can guess: ten wrong passcodes from one
address used to lock the account on every service. Two throttles come first:

* **per account and address** (``lockout.address_wait``): computed from the failure
  values stored on the entry, which carry their address, so it holds across serving
  processes and hosts. Past ``throttle_failures`` failures in the window, that address
  waits ``throttle_delay``, doubling with each further failure, before it is checked
  again (NIST SP 800-63B 5.2.2 prefers such delays to locks);
* **per address across accounts** (``SourceThrottle`` here): one address spraying one
  password over many accounts leaves one failure on each, which no account-wide count
  sees. Each twostepd remembers recent failures per address in memory (bounded, lost on
  restart, not shared between processes: the directory holds no such state, and a
  per-address entry would make every guess a write to a shared hot spot). Past
  ``throttle_source_failures`` within the account's window, that address is refused.

A throttled attempt is refused before anything is checked (no bind, no secret compared)
and nothing is written, so it tells the guesser nothing and costs the directory a read.
It is a deny, never anything that could accept.

Addresses are compared by network for IPv6 (the /64 a single host is usually given, so
that hopping inside it buys nothing), as they are for IPv4 and host names. The empty
address (a caller that gave none) is never throttled across accounts: it is every local
caller at once, and one local user must not be able to shut the others out.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque

from .core.lockout import network_of

__all__ = ["MAX_SOURCES", "SourceThrottle"]

MAX_SOURCES = 4096
"""Addresses remembered; the least recently failing is forgotten first. An attacker who
can fail from more addresses than this gains nothing he does not already have (each
address is then new), and memory stays bounded: at most 100 times per address."""
_TIMES_KEPT = 100
"""Failure times kept per address: the most ``throttle_source_failures`` may ask for."""


class SourceThrottle:
    """Recent failures per address across every account, in one process's memory.

    Pure apart from its own memory: time is passed in by the caller (the engine's clock),
    never read here. Safe to share between threads.
    """

    def __init__(self, capacity: int = MAX_SOURCES) -> None:
        self._capacity = capacity
        self._times: OrderedDict[str, deque[int]] = OrderedDict()
        self._lock = threading.Lock()

    def failed(self, address: str, now: int) -> None:
        """Note a counted failure (a wrong secret the account recorded) from ``address``."""
        if not address:
            return
        key = network_of(address)
        with self._lock:
            times = self._times.pop(key, None)
            if times is None:
                times = deque(maxlen=_TIMES_KEPT)
            times.append(now)
            self._times[key] = times
            while len(self._times) > self._capacity:
                self._times.popitem(last=False)

    def until(self, address: str, limit: int, window: int, now: int) -> int | None:
        """When ``address`` may try again, if it is refused now; else None.

        Refused while ``limit`` of its failures fall within the last ``window`` seconds;
        it may try again when the oldest of those leaves the window.
        """
        if not address:
            return None
        with self._lock:
            times = self._times.get(network_of(address))
            recent = sorted(t for t in times if t > now - window) if times else []
        if len(recent) < limit:
            return None
        return recent[-limit] + window

    def __len__(self) -> int:
        with self._lock:
            return len(self._times)
