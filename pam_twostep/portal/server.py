"""The portal's server: waitress on ``portal.listen``, and whose proxy headers to believe.

Kept apart from the pages (``app.py``) because it is a different question: the pages
decide what a request may do; the server decides which peers and which forwarded
addresses a request is believed to come from, and how its socket is opened.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Any

import waitress
from flask import Flask

from ..config import Config, PortalConfig, portal_trust_refused
from ..core.errors import ConfigError
from ..socketfile import group_id, hand_over
from .app import create_app

__all__ = ["make_server", "proxy_options", "serve"]

log = logging.getLogger(__name__)

_PROXY_HEADERS = frozenset({"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"})
"""What a trusted proxy tells the portal: the browser's address (sign-ins are decided,
throttled and audited by it), that the browser spoke HTTPS, and the host it asked for
(the ``Origin`` check compares the two). Every other proxy header is dropped."""


_UNIX_PEER = "localhost"
"""How waitress (3.x, ``UnixWSGIServer.fix_addr``) reports every peer of a UNIX socket:
REMOTE_ADDR is ``localhost``, whoever connected. So with a UNIX ``listen`` the proxy is
told apart from other local users by who may open the socket file, not by address."""


def proxy_options(portal: PortalConfig) -> dict[str, Any]:
    """waitress's proxy settings for ``portal``.

    waitress, not the application, decides whose X-Forwarded-* to believe, because
    only the server knows the peer. Over TCP it cannot tell the proxy from any local
    user connecting to the same loopback port, who could then choose the address their
    sign-ins are decided, throttled and audited by: so ``trusted_proxies`` is accepted
    only with ``portal.listen: unix:/path``, whose peers are those that may open the
    socket file (``portal.socket_mode``, ``portal.socket_group``: the proxy's). Without
    ``trusted_proxy`` waitress deletes the headers from everybody, which behind a proxy
    left every sign-in recorded from the proxy and every form refused for its
    ``Origin: https://...`` (issue 14 M2).
    """
    if not portal.trusted_proxies:
        return {"clear_untrusted_proxy_headers": True}
    if not isinstance(portal.listen, Path):
        raise ConfigError(portal_trust_refused(portal.listen))
    return {
        "trusted_proxy": _UNIX_PEER,
        "trusted_proxy_count": portal.trusted_proxies,
        "trusted_proxy_headers": set(_PROXY_HEADERS),
        "clear_untrusted_proxy_headers": True,
        # Says why, in the portal's log, when a proxy header comes from elsewhere.
        "log_untrusted_proxy_headers": True,
    }


def make_server(config: Config, app: Flask | None = None) -> Any:
    """The waitress server ``serve`` runs (tests run one in a thread and close it).

    A UNIX socket replaces a stale socket (never another file in the way), is created
    0600 and only then given ``portal.socket_group`` and ``portal.socket_mode``, so it
    is never open to more than it is meant to be, not even for a moment."""
    portal = config.portal
    options = proxy_options(portal)
    application = app or create_app(config)
    if not isinstance(portal.listen, Path):
        host, port = portal.listen
        return waitress.create_server(
            application, host=host, port=port, threads=8, ident="twostep", **options
        )
    gid = group_id(
        "portal.socket_group",
        portal.socket_group,
        "the group the reverse proxy runs as: www-data for Debian's nginx",
    )
    path = portal.listen
    umask = os.umask(0o177)
    try:
        server = waitress.create_server(
            application,
            unix_socket=str(path),
            unix_socket_perms="600",
            threads=8,
            ident="twostep",
            **options,
        )
    finally:
        os.umask(umask)
    try:
        hand_over(path, gid, portal.socket_group, portal.socket_mode, "the portal's user")
    except BaseException:
        server.close()
        with contextlib.suppress(OSError):
            path.unlink()
        raise
    return server


def serve(config: Config) -> None:
    """Run the portal with waitress on ``portal.listen`` until stopped."""
    server = make_server(config)
    listen = config.portal.listen
    where = f"unix:{listen}" if isinstance(listen, Path) else f"{listen[0]}:{listen[1]}"
    log.info(
        "portal listening on %s%s",
        where,
        f", believing X-Forwarded-* from peers of the socket (group "
        f"{config.portal.socket_group}, mode {config.portal.socket_mode:04o})"
        if config.portal.trusted_proxies
        else "",
    )
    # waitress reports a UNIX socket as host "unix" and its path as the port
    server.print_listen(
        "Serving on {}:{}" if isinstance(listen, Path) else "Serving on http://{}:{}"
    )
    server.run()
