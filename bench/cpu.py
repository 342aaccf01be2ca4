"""Where a login's CPU goes: seconds used by each component's processes.

Each server the bench starts leads its own process group (``start_new_session``), so a
component is its group: twostepd's supervisor and serving processes, Dovecot's master,
auth and auth-worker processes, slapd. Reaped children count through their parent's
``cutime``/``cstime``. Read from ``/proc``, before and after a measured run.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

__all__ = ["cpu_seconds", "per_login_ms"]

_TICKS = os.sysconf("SC_CLK_TCK")


def _group_seconds(group: int) -> float:
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue  # gone meanwhile
        # after the name: state ppid pgrp session ... utime(12) stime(13) cutime cstime
        if int(fields[2]) == group:
            total += sum(int(x) for x in fields[11:15])
    return total / _TICKS


def cpu_seconds(groups: Mapping[str, int]) -> dict[str, float]:
    """CPU seconds so far of each named process group."""
    return {name: _group_seconds(group) for name, group in groups.items()}


def per_login_ms(
    before: Mapping[str, float], after: Mapping[str, float], logins: int
) -> dict[str, float]:
    return {name: 1000 * (after[name] - before[name]) / max(logins, 1) for name in after}
