"""What a client names (a user, a service, an address), cleaned before it is used.

Logins and management both take these from requests; anything unexpected is replaced or
refused here, so the directory is never asked about, and the audit never records, a
value nobody checked.
"""

from __future__ import annotations

import ipaddress
import re

from ..core.decision import Context

__all__ = ["check_username", "context", "is_loopback"]

_MAX_USERNAME = 256
_SERVICE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,31}")
# An IP address, or the host name sshd passes as PAM_RHOST with UseDNS: kept, so that such
# clients are not all one address "" for lock-out and the audit.
_ADDRESS = re.compile(r"[0-9A-Fa-f.:]{1,45}|[A-Za-z0-9][A-Za-z0-9.-]{0,62}")


def check_username(username: object) -> str | None:
    """The username if it is one we will look up: 1-256 printable characters, trimmed."""
    if (
        not isinstance(username, str)
        or not 0 < len(username) <= _MAX_USERNAME
        or not username.isprintable()
        or username != username.strip()
    ):
        return None
    return username


def context(service: str, remote: str, now: int) -> Context:
    """Service and address as recorded: anything unexpected is replaced, not trusted."""
    service = service.lower() if isinstance(service, str) else ""
    return Context(
        service=service if _SERVICE.fullmatch(service) else "unknown",
        remote=remote.lower() if isinstance(remote, str) and _ADDRESS.fullmatch(remote) else "",
        now=now,
    )


def is_loopback(address: str) -> bool:
    """Loopback speaks for many users (a webmail, a proxy): never throttled as one."""
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address == "localhost"
