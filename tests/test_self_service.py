"""Issue 14 M4 and M5 against a real twostepd and slapd: the portal's identity has the
``self-service`` right only, which acts for a user who just signed in (with twostepd's
proof of it) and never with admin semantics; that proof, and so a portal session, ends
with a sign-out, a password change however made, a disable and a reset."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Clock, config_data, make_secrets_dir
from support.cookies import get_cookie, set_cookie
from support.engines import engine_for
from support.slapd import USERS, Slapd
from support.stack import running_twostepd

from pam_twostep.config import parse_config
from pam_twostep.core.totp import decode_secret, totp
from pam_twostep.lab.twostepd import Twostepd
from pam_twostep.portal import create_app

HTTPS = "https://portal.example.org"
COOKIE = "__Host-twostep"


@pytest.fixture(scope="module")
def daemon(slapd_server: Slapd) -> Iterator[Twostepd]:
    """This test process's uid (root) is listed as the portal is by default: verify and
    self_service, not manage."""

    def portal_like(base: Path) -> dict[str, Any]:
        data = config_data(slapd_server, make_secrets_dir(base / "etc"))
        data["daemon"].update(
            verify={"users": ["root"]}, manage={"users": []}, self_service={"users": ["root"]}
        )
        return data

    yield from running_twostepd("twostep-self-service-", portal_like)


@pytest.fixture
def ask(daemon: Twostepd, slapd: Slapd) -> Any:
    daemon.reload_and_wait()
    return daemon.ask


def sign_in(ask: Any, user: str = "alice", **extra: object) -> dict[str, object]:
    request = {"op": "auth", "user": user, "password": USERS[user], "service": "web"}
    reply = ask({**request, "flow": "interactive", **extra})
    assert reply["result"] == "accept", reply
    assert isinstance(reply.get("session"), str), reply
    return reply


def enroll(ask: Any, user: str, session: str) -> tuple[bytes, str]:
    begun = ask({"op": "enroll-begin", "user": user, "password": USERS[user], "session": session})
    assert begun["result"] == "ok", begun
    key = decode_secret(str(begun["secret"]))
    done = ask(
        {"op": "enroll-confirm", "user": user, "code": totp(key, time.time()), "session": session}
    )
    assert done["result"] == "ok", done
    assert isinstance(done.get("session"), str) and done["session"] != session
    return key, str(done["session"])


# -- M5: no admin semantics --------------------------------------------------------------

ADMIN_REQUESTS = [
    {"op": "reset", "user": "bob"},
    {"op": "unlock", "user": "bob"},
    {"op": "disable", "user": "bob"},
    {"op": "policy-list"},
    {"op": "policy-set", "name": "default", "settings": {"required": False}},
    {"op": "policy-assign", "user": "bob"},
    {"op": "keys-status"},
    {"op": "keys-reseal"},
    {"op": "stats"},
    {
        "op": "import-account",
        "match_attribute": "uid",
        "match_value": "bob",
        "secret": "JBSWY3DPEHPK3PXP",
        "apply": True,
        "replace": True,
    },
]


@pytest.mark.parametrize("request_", ADMIN_REQUESTS, ids=lambda r: str(r["op"]))
def test_admin_operations_are_forbidden_to_the_portal(ask: Any, request_: dict[str, Any]) -> None:
    expected = "session-ended" if request_["op"] == "disable" else "forbidden"
    assert ask(request_) == {"result": "error", "error": expected}


@pytest.mark.parametrize("request_", ADMIN_REQUESTS, ids=lambda r: str(r["op"]))
def test_a_session_proof_opens_no_admin_operation(ask: Any, request_: dict[str, Any]) -> None:
    session = sign_in(ask, "bob")["session"]
    assert ask({**request_, "session": session})["result"] == "error"


def test_disable_without_the_password_is_no_admin_disable(ask: Any) -> None:
    session = str(sign_in(ask, "bob")["session"])
    _, session = enroll(ask, "bob", session)
    refused = ask({"op": "disable", "user": "bob", "session": session})
    assert refused == {"result": "error", "error": "malformed"}
    wrong = ask({"op": "disable", "user": "bob", "password": "guess", "session": session})
    assert wrong["result"] == "refused"
    status = ask({"op": "status", "user": "bob", "session": session})
    assert status["result"] == "ok" and status["status"]["enabled"] is True  # type: ignore[index]


@pytest.mark.parametrize(
    "request_",
    [
        {"op": "status", "user": "alice"},
        {"op": "codes-regenerate", "user": "alice"},
        {"op": "passcode-add", "user": "alice", "label": "phone"},
        {"op": "device-revoke-all", "user": "alice"},
        {"op": "enroll-begin", "user": "alice", "password": USERS["alice"]},
        {"op": "password-change", "user": "alice", "old": USERS["alice"], "new": "x-Y-z-1234!"},
        {"op": "session-end", "user": "alice"},
    ],
    ids=lambda r: str(r["op"]),
)
def test_self_service_without_proof_is_refused(ask: Any, request_: dict[str, Any]) -> None:
    assert ask(request_) == {"result": "error", "error": "session-ended"}


@pytest.mark.parametrize(
    "proof",
    ["", "x", "1.AAAA", "9" * 15 + ".AAAA", "1" * 200, "٣٣٣.abc", 17, None, True, ["a"]],
)
def test_hostile_proofs_are_refused(ask: Any, proof: object) -> None:
    reply = ask({"op": "status", "user": "alice", "session": proof})
    assert reply["result"] == "error" and reply["error"] in ("session-ended", "malformed")


def test_a_forged_or_altered_proof_is_refused(ask: Any) -> None:
    session = str(sign_in(ask)["session"])
    issued, _, mac = session.partition(".")
    for forged in (f"{int(issued) + 1}.{mac}", f"{issued}.{mac[:-2]}AA", f"{time.time_ns()}.{mac}"):
        assert ask({"op": "status", "user": "alice", "session": forged})["error"] == "session-ended"


def test_a_proof_for_one_user_cannot_act_for_another(ask: Any) -> None:
    alice = str(sign_in(ask, "alice")["session"])
    sign_in(ask, "bob")
    for request_ in (
        {"op": "status", "user": "bob"},
        {"op": "passcode-add", "user": "bob", "label": "mine now"},
        {"op": "codes-regenerate", "user": "bob"},
        {"op": "session-end", "user": "bob"},
        {"op": "status", "user": "Alice"},
    ):
        reply = ask({**request_, "session": alice})
        assert reply == {"result": "error", "error": "session-ended"}, request_
    assert ask({"op": "status", "user": "alice", "session": alice})["result"] == "ok"


def test_no_proof_for_a_wrong_password_or_a_challenge(ask: Any) -> None:
    wrong = ask({"op": "auth", "user": "alice", "password": "nope", "service": "web"})
    assert wrong["result"] == "deny" and "session" not in wrong
    session = str(sign_in(ask, "carol")["session"])
    enroll(ask, "carol", session)
    challenge = ask(
        {
            "op": "auth",
            "user": "carol",
            "password": USERS["carol"],
            "service": "web",
            "flow": "interactive",
        }
    )
    assert challenge["result"] == "challenge" and "session" not in challenge


# -- M4: the proof, and so the session, can be ended ----------------------------------------


def test_sign_out_ends_that_browsers_session_only(ask: Any) -> None:
    """A copied cookie dies with the sign-out; the same user's other browsers stay signed
    in (a password change, disable, reset or new key ends them all, below)."""
    one, two = str(sign_in(ask)["session"]), str(sign_in(ask)["session"])
    assert one != two
    other = str(sign_in(ask, "bob")["session"])
    assert ask({"op": "session-end", "user": "alice", "session": one})["result"] == "ok"
    assert ask({"op": "status", "user": "alice", "session": one})["error"] == "session-ended"
    assert ask({"op": "status", "user": "alice", "session": two})["result"] == "ok"
    assert ask({"op": "status", "user": "bob", "session": other})["result"] == "ok"
    fresh = str(sign_in(ask)["session"])
    assert ask({"op": "status", "user": "alice", "session": fresh})["result"] == "ok"


def test_a_password_changed_outside_twostep_ends_sessions(ask: Any, slapd: Slapd) -> None:
    session = str(sign_in(ask, "dave")["session"])
    slapd.user_changes_password("dave", "dave-new-pw-Q8&")
    assert ask({"op": "status", "user": "dave", "session": session})["error"] == "session-ended"


def test_a_password_change_renews_only_the_session_that_made_it(ask: Any) -> None:
    mine, other = str(sign_in(ask, "bob")["session"]), str(sign_in(ask, "bob")["session"])
    changed = ask(
        {
            "op": "password-change",
            "user": "bob",
            "old": USERS["bob"],
            "new": "bob-new-pw-W3e@",
            "session": mine,
        }
    )
    assert changed["result"] == "ok", changed
    renewed = str(changed["session"])
    for proof in (mine, other):
        assert ask({"op": "status", "user": "bob", "session": proof})["error"] == "session-ended"
    assert ask({"op": "status", "user": "bob", "session": renewed})["result"] == "ok"


def test_disable_and_reset_end_sessions(ask: Any, daemon: Twostepd) -> None:
    session = str(sign_in(ask, "bob")["session"])
    key, session = enroll(ask, "bob", session)
    code = totp(key, time.time() + 30)  # the confirmation took this step's code
    disabled = ask(
        {"op": "disable", "user": "bob", "password": USERS["bob"], "code": code, "session": session}
    )
    assert disabled["result"] == "ok", disabled
    assert ask({"op": "status", "user": "bob", "session": session})["error"] == "session-ended"

    session = str(disabled["session"])
    assert ask({"op": "status", "user": "bob", "session": session})["result"] == "ok"
    _, session = enroll(ask, "bob", session)
    with engine_for(parse_config(daemon.config), Clock(time.time())) as engine:
        engine.reset("bob", actor="admin")
    assert ask({"op": "status", "user": "bob", "session": session})["error"] == "session-ended"


# -- M4 through the portal: a copied cookie ---------------------------------------------


@pytest.fixture
def portal(daemon: Twostepd, slapd: Slapd) -> Any:
    daemon.reload_and_wait()
    app = create_app(parse_config(daemon.config), secret_key=b"k" * 32)
    app.testing = True
    return app


def _csrf(client: Any, path: str = "/signin") -> str:
    page = client.get(path, base_url=HTTPS, follow_redirects=True).get_data(as_text=True)
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match, page
    return match.group(1)


def _post(client: Any, path: str, **form: Any) -> Any:
    token = _csrf(client, "/signin" if path == "/signin" else "/password")
    return client.post(path, data={"csrf": token, **form}, base_url=HTTPS)


def _copy(portal: Any, client: Any) -> Any:
    cookie = get_cookie(client, COOKIE, "portal.example.org")
    assert cookie is not None
    thief = portal.test_client()
    set_cookie(thief, COOKIE, cookie, "portal.example.org")
    return thief


def _opens_account(client: Any) -> bool:
    response = client.get("/", base_url=HTTPS)
    return response.status_code == 200


def test_a_copied_cookie_dies_with_sign_out(portal: Any) -> None:
    client = portal.test_client()
    assert _post(client, "/signin", user="alice", password=USERS["alice"]).status_code == 302
    thief = _copy(portal, client)
    assert _opens_account(thief)
    assert _post(client, "/signout").status_code == 302
    assert not _opens_account(thief)
    assert thief.get("/", base_url=HTTPS).headers["Location"].endswith("/signin")


def test_a_copied_cookie_dies_with_a_password_change(portal: Any, slapd: Slapd) -> None:
    client = portal.test_client()
    assert _post(client, "/signin", user="dave", password=USERS["dave"]).status_code == 302
    thief = _copy(portal, client)
    assert _opens_account(thief)
    slapd.user_changes_password("dave", "dave-new-pw-Q8&")
    assert not _opens_account(thief)
    assert not _opens_account(client)


def test_the_portal_keeps_its_own_session_through_its_password_change(portal: Any) -> None:
    client = portal.test_client()
    assert _post(client, "/signin", user="bob", password=USERS["bob"]).status_code == 302
    thief = _copy(portal, client)
    new = "bob-new-pw-W3e@"
    changed = _post(client, "/password", old=USERS["bob"], new=new, again=new)
    assert changed.status_code == 302 and changed.headers["Location"] == "/", changed.get_data()
    assert _opens_account(client)
    assert not _opens_account(thief)
