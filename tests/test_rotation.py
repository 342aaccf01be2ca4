"""Key rotation: re-sealing under the current key, online, and through the command."""

from __future__ import annotations

import base64
import json
import os
import secrets
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from conftest import Clock, config_data, make_secrets_dir
from hypothesis import given
from hypothesis import strategies as st
from support.flows import enroll, interactive_login
from support.slapd import Slapd, user_dn
from support.stack import world_readable_directory
from support.states import enabled_state, plain_state

from pam_twostep import cli
from pam_twostep.audit import MemorySink
from pam_twostep.config import Config, load_secrets, parse_config
from pam_twostep.core.account import Attr
from pam_twostep.core.decision import Outcome
from pam_twostep.core.errors import CorruptEntry, KeyUnavailable
from pam_twostep.core.keyring import Keyring
from pam_twostep.core.records import Pending
from pam_twostep.core.rotation import batch, reseal, sealed_with
from pam_twostep.core.totp import TotpParams, totp
from pam_twostep.directory import Directory
from pam_twostep.engine import Engine
from pam_twostep.keyfiles import write_key_file
from pam_twostep.lab.twostepd import Twostepd

K1, K2 = bytes(range(32)), bytes(range(1, 33))
OLD = Keyring({"k1": K1}, "k1")
BOTH = Keyring({"k1": K1, "k2": K2}, "k2")
NONCE = b"\x05" * 12


# -- the pure part ---------------------------------------------------------------------


def sealed_state(keys: Keyring = OLD, pending: bool = False) -> Any:
    state = enabled_state()
    context = state.uuid.encode()
    state = replace(state, secret=keys.seal(b"k" * 20, context=context, nonce=NONCE))
    if pending:
        sealed = keys.seal(b"p" * 20, context=context, nonce=NONCE)
        state = replace(state, pending=Pending(sealed, TotpParams(), 1, 2))
    return state


def test_values_under_another_key_are_resealed_under_the_current_one() -> None:
    state = sealed_state(pending=True)
    assert sealed_with(state, BOTH) == {"k1": 2}
    modify = reseal(state, BOTH, lambda n: b"\x09" * n)
    assert modify.guarded
    deleted = {c.attribute: c.values for c in modify.changes if c.op.name == "DELETE"}
    added = {c.attribute: c.values[0] for c in modify.changes if c.op.name == "ADD"}
    assert deleted == {Attr.SECRET: (state.secret,), Attr.PENDING: (state.pending.dump(),)}
    context = state.uuid.encode()
    assert BOTH.key_of(added[Attr.SECRET]) == "k2"
    assert BOTH.open(added[Attr.SECRET], context=context) == b"k" * 20
    pending = Pending.load(added[Attr.PENDING])
    assert BOTH.open(pending.sealed, context=context) == b"p" * 20
    assert replace(pending, sealed="") == replace(state.pending, sealed="")


def test_current_values_are_left_alone() -> None:
    assert not reseal(sealed_state(BOTH, pending=True), BOTH, secrets.token_bytes)
    assert not reseal(plain_state(), BOTH, secrets.token_bytes)


def test_values_that_do_not_open_are_reported_not_rewritten() -> None:
    with pytest.raises(KeyUnavailable):
        reseal(sealed_state(), Keyring({"k2": K2}, "k2"), secrets.token_bytes)
    moved = replace(sealed_state(), uuid="another-entry")
    with pytest.raises(CorruptEntry):
        reseal(moved, BOTH, secrets.token_bytes)
    with pytest.raises(CorruptEntry):
        sealed_with(replace(sealed_state(), secret="garbage"), BOTH)


# (dns, after, limit) -> (chosen, done, next)
BATCHES = [
    (["b", "a", "c"], None, None, (["a", "b", "c"], 3, None)),
    (["b", "a", "c"], None, 2, (["a", "b"], 2, "b")),
    (["b", "a", "c"], "b", 2, (["c"], 3, None)),
    (["b", "a", "c"], "c", 2, ([], 3, None)),
    (["uid=B,o=x", "uid=a,o=x"], None, 1, (["uid=a,o=x"], 1, "uid=a,o=x")),
    (["uid=B,o=x", "uid=a,o=x"], "uid=a,o=x", 1, (["uid=B,o=x"], 2, None)),
    # the cursor in another case than the listing: at worst one account again
    (["uid=B,o=x", "uid=a,o=x"], "UID=A,O=X", 1, (["uid=a,o=x"], 1, "uid=a,o=x")),
    ([], None, 5, ([], 0, None)),
    (["a", "c"], "b", 5, (["c"], 2, None)),  # "b" went away between batches
    # fold alike, yet two accounts: a batch ending on one skips neither
    (["uid=straße", "uid=strasse", "uid=z"], None, 1, (["uid=strasse"], 1, "uid=strasse")),
    (["uid=straße", "uid=strasse", "uid=z"], "uid=strasse", 1, (["uid=straße"], 2, "uid=straße")),
    (["uid=Bob", "uid=bob"], "uid=Bob", 1, (["uid=bob"], 2, None)),
]


@pytest.mark.parametrize(("dns", "after", "limit", "expected"), BATCHES)
def test_batches(dns: list[str], after: str | None, limit: int | None, expected: Any) -> None:
    assert batch(dns, after, limit) == expected


@given(
    st.lists(st.text(min_size=1, max_size=6), unique=True, max_size=40),
    st.integers(1, 7),
    st.data(),
)
def test_chained_batches_cover_every_account_that_stays(
    dns: list[str], limit: int, data: st.DataObject
) -> None:
    """Accounts come and go between batches: each one present throughout is covered,
    exactly once, and the run ends."""
    present = list(dns)
    covered: list[str] = []
    after: str | None = None
    for _ in range(len(dns) + 50):
        chosen, done, after = batch(present, after, limit)
        assert len(chosen) <= limit and done <= len(present)
        covered += chosen
        if after is None:
            break
        if present and data.draw(st.booleans()):
            present.remove(data.draw(st.sampled_from(present)))
        if data.draw(st.booleans()):
            present.append(data.draw(st.text(min_size=1, max_size=6)))
    else:
        raise AssertionError("the batches did not end")
    stayed = {d for d in dns if d in present}
    assert stayed <= set(covered)
    assert len([d for d in covered if d in stayed]) == len(stayed)


# -- online, against slapd -------------------------------------------------------------


def engine_with(config: Config, keys: Keyring, clock: Clock) -> Engine:
    loaded = load_secrets(config)
    directory = Directory(config.ldap, config.users, loaded.bind_password)
    return Engine(config, directory, keys, MemorySink(), clock=clock)


@pytest.fixture
def people(slapd: Slapd) -> list[str]:
    names = [f"rot{n}" for n in range(20)]
    slapd.add_users(names)
    return names


def test_resealing_online_fails_no_login(config: Config, clock: Clock, people: list[str]) -> None:
    before = engine_with(config, OLD, clock)
    keys = {name: enroll(before, clock.now, name)[0] for name in people}
    before.directory.close()
    # every serving process reloaded with k2 current; one of them re-seals meanwhile
    serving, admin = engine_with(config, BOTH, clock), engine_with(config, BOTH, clock)
    assert admin.key_usage().values == {"k1": len(people)}
    reports = []
    resealer = threading.Thread(target=lambda: reports.append(admin.reseal_keys(actor="root")))
    outcomes = []
    resealer.start()
    while resealer.is_alive() or not outcomes:
        clock.advance(30)
        for name in people:
            decision = interactive_login(serving, name, totp(keys[name], clock.now))
            outcomes.append(decision.outcome)
    resealer.join()
    assert set(outcomes) == {Outcome.ACCEPT}
    assert reports[0].resealed == len(people) and not reports[0].failed
    assert admin.key_usage().values == {"k2": len(people)}
    assert admin.reseal_keys().already_current == len(people)
    # the old key can go: logins need k2 only now
    after = engine_with(config, Keyring({"k2": K2}, "k2"), clock)
    clock.advance(30)
    assert interactive_login(after, people[0], totp(keys[people[0]], clock.now)).outcome is (
        Outcome.ACCEPT
    )
    for engine in (serving, admin, after):
        engine.directory.close()


def test_a_corrupt_account_is_reported_and_the_others_resealed(
    config: Config, clock: Clock, people: list[str], slapd: Slapd
) -> None:
    engine = engine_with(config, OLD, clock)
    for name in people[:3]:
        enroll(engine, clock.now, name)
    engine.directory.close()
    slapd.set_attributes(user_dn(people[0]), twostepSecret=["aes256gcm:k1:bad:bad"])
    admin = engine_with(config, BOTH, clock)
    report = admin.reseal_keys()
    assert report.resealed == 2 and [dn for dn, _ in report.failed] == [user_dn(people[0])]
    assert admin.key_usage().unreadable == (user_dn(people[0]),)
    admin.directory.close()


# -- the command, against twostepd -------------------------------------------------------


@pytest.fixture
def daemon(slapd: Slapd) -> Iterator[Twostepd]:
    base = world_readable_directory("twostep-rotation-")
    instance = Twostepd(base / "daemon", config_data(slapd, make_secrets_dir(base / "etc")))
    instance.start()
    yield instance
    instance.stop()


def twostep(daemon: Twostepd, capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    code = cli.main([*args, "--json", "--config", str(daemon.config_path)])
    return code, json.loads(capsys.readouterr().out)


def test_rotation_through_the_command(
    daemon: Twostepd, people: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    keys_dir = Path(daemon.config["keys"]["directory"])
    clock = Clock()
    first = engine_with(
        parse_config(daemon.config), load_secrets(parse_config(daemon.config)).keyring, clock
    )
    for name in people[:7]:
        enroll(first, clock.now, name)
    first.directory.close()

    write_key_file(keys_dir / "k2.key", secrets.token_bytes(32))
    daemon.config["keys"]["current"] = "k2"
    daemon.write_config()
    # not reloaded yet: the daemon would "re-seal" under k1, and deleting k1 would follow
    code, report = twostep(daemon, capsys, "keys", "reseal")
    assert code == 1 and report["reason"] == "not-reloaded" and "k1" in report["message"]
    daemon.reload()
    code, status = twostep(daemon, capsys, "keys", "status")
    while status["current"] != "k2":  # the reload is asynchronous
        code, status = twostep(daemon, capsys, "keys", "status")
    assert code == 0 and status["values"] == {"k1": 7} and status["loaded"] == ["k1", "k2"]

    # three batches of at most 3 accounts ...
    code = cli.main(
        [
            "keys",
            "reseal",
            "--batch",
            "3",
            "--progress",
            "--json",
            "--config",
            str(daemon.config_path),
        ]
    )
    captured = capsys.readouterr()
    assert code == 0
    report = json.loads(captured.out)
    assert report == {
        "ok": True,
        "current": "k2",
        "resealed": 7,
        "already_current": 0,
        "failed": [],
        "remaining": {},
        "unreadable": [],
    }
    # ... each one's progress shown on standard error
    assert captured.err == "\r[############                  ] 3/7" + (
        "\r[#########################     ] 6/7\r[##############################] 7/7\n"
    )
    code, report = twostep(daemon, capsys, "keys", "reseal")
    assert code == 0
    assert report == {
        "ok": True,
        "current": "k2",
        "resealed": 0,
        "already_current": 7,
        "failed": [],
        "remaining": {},
        "unreadable": [],
    }
    code, status = twostep(daemon, capsys, "keys", "status")
    assert status["values"] == {"k2": 7}

    os.unlink(keys_dir / "k1.key")
    daemon.reload()
    code, status = twostep(daemon, capsys, "keys", "status")
    while status["loaded"] != ["k2"]:
        code, status = twostep(daemon, capsys, "keys", "status")
    assert status["values"] == {"k2": 7} and not status["unreadable"]
    assert base64.b64decode((keys_dir / "k2.key").read_text())  # untouched


# -- a directory that cuts listings short ----------------------------------------------


def test_key_status_and_reseal_refuse_a_listing_the_server_cut_short(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Against a slapd capping the service identity at 10 entries, with 30 accounts:
    key status and reseal fail, saying why, instead of reporting on the first 10 (after
    which deleting the "unused" old key would lock the other users out)."""
    from support.slapd import NAMES, USERS, limit_service_searches

    from pam_twostep.access import Peer, Right
    from pam_twostep.core.errors import DirectoryIncomplete
    from pam_twostep.handlers import handle

    server = Slapd.create(tmp_path / "ldap", names=NAMES, users=USERS)
    assert isinstance(server, Slapd)
    try:
        names = [f"many{n:02d}" for n in range(30)]
        server.add_users(names)
        for name in names:
            server.set_attributes(user_dn(name), objectClass=["inetOrgPerson", "twostepAccount"])
        limit_service_searches(server, 10)
        config = parse_config(config_data(server, make_secrets_dir(tmp_path / "etc")))
        loaded = load_secrets(config)
        directory = Directory(config.ldap, config.users, loaded.bind_password)
        engine = Engine(config, directory, loaded.keyring, MemorySink(), clock=Clock())
        try:
            with pytest.raises(DirectoryIncomplete, match="sizeLimitExceeded"):
                engine.key_usage()
            with pytest.raises(DirectoryIncomplete):
                engine.reseal_keys(actor="root")
            peer = Peer(1, 0, 0, "root", frozenset())
            for op in ("keys-status", "keys-reseal"):
                reply = handle(engine, {"op": op}, peer, frozenset(Right))
                assert reply == {"result": "tempfail", "reason": "incomplete"}
        finally:
            directory.close()
    finally:
        server.destroy()


# -- the command, against a daemon that answers oddly -----------------------------------


class ScriptedDaemon:
    """A socket that answers each request with the next reply its script has for the
    request's op, and records the requests."""

    def __init__(self, path: Path, script: dict[str, list[dict[str, object]]]) -> None:
        import socket

        self.path = path
        self.script = script
        self.requests: list[dict[str, object]] = []
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.bind(str(path))
        self.sock.listen(8)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        from pam_twostep import wire

        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                request = wire.decode(conn.makefile("rb").readline())
                self.requests.append(request)
                replies = self.script[str(request["op"])]
                reply = replies.pop(0) if len(replies) > 1 else replies[0]
                conn.sendall(wire.encode(reply, wire.MAX_REPLY))

    def close(self) -> None:
        self.sock.close()


def _batch(next_dn: object, resealed: object = 1, **more: object) -> dict[str, object]:
    return {
        "result": "ok",
        "resealed": resealed,
        "already_current": 0,
        "failed": [],
        "accounts": 3,
        "done": 1,
        "next": next_dn,
        "current": "k2",
        **more,
    }


STATUS = {"result": "ok", "current": "k2", "loaded": ["k1", "k2"], "unreadable": []}


def run_reseal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], script: dict[str, list[dict[str, object]]]
) -> tuple[int, dict[str, Any], str, ScriptedDaemon]:
    daemon = ScriptedDaemon(tmp_path / "s", script)
    try:
        code = cli.main(["keys", "reseal", "--json", "--socket", str(daemon.path)])
    finally:
        daemon.close()
    captured = capsys.readouterr()
    return code, json.loads(captured.out), captured.err, daemon


def test_reseal_fails_while_values_remain_under_another_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every batch went well, yet 2 values are still sealed with k1 (a host that had not
    reloaded, an account renamed behind the cursor): the old key must not go."""
    script = {
        "keys-reseal": [_batch("uid=a"), _batch("uid=b"), _batch(None)],
        "keys-status": [{**STATUS, "values": {"k1": 2, "k2": 5}}],
    }
    code, report, _, daemon = run_reseal(tmp_path, capsys, script)
    assert code == 1 and report["remaining"] == {"k1": 2} and report["resealed"] == 3
    assert report["current"] == "k2" and report["unreadable"] == []
    assert [r.get("after") for r in daemon.requests if r["op"] == "keys-reseal"] == [
        None,
        "uid=a",
        "uid=b",
    ]
    script["keys-status"] = [{**STATUS, "values": {"k2": 7}}]
    script["keys-reseal"] = [_batch(None)]
    (tmp_path / "again").mkdir()
    code, report, _, _ = run_reseal(tmp_path / "again", capsys, script)
    assert code == 0 and report["remaining"] == {}
    # an account that cannot be read may hold a value under any key
    script["keys-status"] = [{**STATUS, "values": {"k2": 7}, "unreadable": ["uid=x"]}]
    script["keys-reseal"] = [_batch(None)]
    (tmp_path / "third").mkdir()
    code, report, _, _ = run_reseal(tmp_path / "third", capsys, script)
    assert code == 1 and report["unreadable"] == ["uid=x"] and report["remaining"] == {}


@pytest.mark.parametrize(
    ("replies", "says"),
    [
        ([_batch("uid=b"), _batch("uid=b")], "do not advance"),
        ([_batch("uid=b"), _batch("uid=a")], "do not advance"),
        ([_batch(["uid=b"])], "do not advance"),
        ([_batch(None, resealed="7")], "nonsense (resealed)"),
        ([_batch(None, resealed=True)], "nonsense (resealed)"),
        ([_batch(None, failed="oops")], "nonsense (failed)"),
        ([_batch(None, accounts=-1)], "nonsense (accounts)"),
        ([_batch("uid=b", resealed=4), {"result": "tempfail"}], "4 accounts were re-sealed"),
        ([_batch("uid=b"), _batch(None, current="k1")], "current key changed"),
        ([_batch(None, current=None)], "current key changed"),
        ([_batch(f"uid={n:03d}") for n in range(30)], "do not end"),
    ],
    ids=[
        "same",
        "backwards",
        "not-text",
        "text-count",
        "bool-count",
        "failed",
        "neg",
        "tempfail",
        "key-changed",
        "no-key",
        "endless",
    ],
)
def test_reseal_refuses_a_daemon_that_answers_oddly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], replies: list[Any], says: str
) -> None:
    script = {"keys-reseal": [*replies, replies[-1]], "keys-status": [{**STATUS, "values": {}}]}
    code, report, err, _ = run_reseal(tmp_path, capsys, script)
    assert code == 75 and not report["ok"] and says in report["message"]
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "status",
    [
        {**STATUS, "values": {"k1": "3"}},
        {**STATUS, "values": {"k1": -2}},
        {**STATUS, "values": ["k1"]},
        {**STATUS, "current": "k1", "values": {}},  # not the batches' key
        {"result": "ok", "values": {}, "unreadable": []},
        {**STATUS, "values": {}, "unreadable": "uid=x"},
    ],
    ids=["text-count", "negative", "list", "other-key", "no-current", "unreadable-text"],
)
def test_reseal_refuses_a_key_status_that_answers_oddly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], status: dict[str, object]
) -> None:
    script = {"keys-reseal": [_batch(None)], "keys-status": [status]}
    code, report, err, _ = run_reseal(tmp_path, capsys, script)
    assert code == 75 and not report["ok"] and "Traceback" not in err
    daemon = ScriptedDaemon(tmp_path / "status", {"keys-status": [status]})
    try:
        code = cli.main(["keys", "status", "--json", "--socket", str(daemon.path)])
    finally:
        daemon.close()
    captured = capsys.readouterr()
    if status.get("current") == "k1":  # a well-formed status of its own
        assert code == 0
    else:
        assert code == 75 and "Traceback" not in captured.err
