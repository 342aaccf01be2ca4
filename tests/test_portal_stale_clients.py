"""Account Security's stale clients (``portal.stale_clients``), through Flask's test
client against a real twostepd and slapd: shown in the owner's words, dismissed with
the page's token only, hostile ids refused without a trace."""

from __future__ import annotations

import html
import re
import time
from typing import Any

from support.flows import enroll
from test_portal_app import HTTPS, admin, client, config, daemon, post, sign_in, wall

from pam_twostep.engine import Engine
from pam_twostep.lab.twostepd import Twostepd

__all__ = ["admin", "client", "config", "daemon", "wall"]  # the fixtures used here


def _page(client: Any) -> str:
    return html.unescape(client.get("/", base_url=HTTPS).get_data(as_text=True))


def test_a_stale_client_is_shown_and_dismissed(
    client: Any, admin: Engine, daemon: Twostepd
) -> None:
    _, codes = enroll(admin, time.time(), "alice")
    phone = admin.add_passcode("alice", "Phone").passcode
    admin.revoke_passcode("alice", "Phone")
    request = {"op": "auth", "flow": "mail", "user": "alice", "password": phone}
    reply = daemon.ask({**request, "service": "imap", "remote": "192.0.2.7"})
    assert reply["result"] == "deny"
    deadline = time.monotonic() + 30  # recorded in the background, after the reply
    while not admin.status("alice").stale_clients and time.monotonic() < deadline:
        time.sleep(0.05)
    sign_in(client, "alice")
    assert post(client, "/signin/code", code=codes[0]).headers["Location"] == "/"
    page = _page(client)
    assert "A mail program at 192.0.2.7 (imap) still uses the revoked passcode 'Phone'" in page
    stale_id = re.search(r'name="stale" value="([^"]+)"', page)
    assert stale_id is not None

    refused = post(client, "/stale-clients/dismiss", token="forged", stale=stale_id.group(1))
    assert refused.status_code == 403
    for hostile in ("nosuchid", "x" * 5000, "../../etc", ""):
        response = post(client, "/stale-clients/dismiss", stale=hostile)
        assert response.status_code == 302, hostile
        assert "Traceback" not in _page(client)
    assert "still uses the revoked passcode" in _page(client)

    done = post(client, "/stale-clients/dismiss", stale=stale_id.group(1))
    assert done.headers["Location"] == "/"
    page = _page(client)
    assert "still uses the revoked passcode" not in page and "Dismissed." in page
    assert phone not in page
