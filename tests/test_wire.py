"""The wire protocol module: agreement with the standard json module, and its limits."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pam_twostep import wire

texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=50)
flat = st.dictionaries(
    texts,
    st.one_of(
        texts, st.booleans(), st.integers(-(10**9), 10**9), st.none(), st.lists(texts, max_size=3)
    ),
    max_size=8,
)
nested = st.recursive(
    st.one_of(texts, st.booleans(), st.none(), st.integers(-(10**6), 10**6)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(texts, inner, max_size=3)),
    max_leaves=12,
)


@given(flat)
def test_our_encoding_is_json(message: dict[str, object]) -> None:
    try:
        data = wire.encode(message)
    except wire.ProtocolError:
        assert len(json.dumps(message)) > wire.MAX_MESSAGE // 7
        return
    assert data.endswith(b"\n") and data.count(b"\n") == 1
    assert json.loads(data) == message
    assert wire.decode(data) == message


@given(st.dictionaries(texts, nested, max_size=5), st.booleans())
def test_json_decodes_with_our_decoder(message: dict[str, object], ascii_only: bool) -> None:
    data = json.dumps(message, ensure_ascii=ascii_only).encode() + b"\n"
    if len(data) <= wire.MAX_MESSAGE:
        assert wire.decode(data) == message


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_crash_the_decoder(data: bytes) -> None:
    try:
        result = wire.decode(data)
    except wire.ProtocolError:
        return
    assert isinstance(result, dict)


def test_size_limit() -> None:
    with pytest.raises(wire.ProtocolError):
        wire.encode({"x": "y" * wire.MAX_MESSAGE})
    with pytest.raises(wire.ProtocolError):
        wire.decode(b"{" + b" " * wire.MAX_MESSAGE + b"}")
    with pytest.raises(wire.ProtocolError):
        wire.encode({"x": object()})


def serve_once(path: Path, answer: bytes) -> threading.Thread:
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(1)

    def run() -> None:
        conn, _ = server.accept()
        conn.recv(65536)
        if answer:
            conn.sendall(answer)
            threading.Event().wait(0.5)
        conn.close()
        server.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize(
    "answer", [b"", b"{}\n", b"[1]\n", b"x" * (wire.MAX_MESSAGE + 10), b'{"result":1}\n']
)
def test_ask_refuses_what_is_not_a_reply(tmp_path: Path, answer: bytes) -> None:
    path = tmp_path / "s"
    serve_once(path, answer)
    with pytest.raises(wire.ProtocolError):
        wire.ask(str(path), {"op": "ping"}, 2)


def test_ask_times_out_and_reports_unreachable(tmp_path: Path) -> None:
    path = tmp_path / "s"
    serve_once(path, b'{"result":')  # starts a reply, never ends it
    with pytest.raises(OSError):
        wire.ask(str(path), {"op": "ping"}, 0.3)
    with pytest.raises(OSError):
        wire.ask(str(tmp_path / "missing"), {"op": "ping"}, 1)


def test_a_full_backlog_is_waited_for_not_refused(tmp_path: Path) -> None:
    """A burst of logins can fill the daemon's listen queue for a moment: a client waits
    for room (within its timeout) instead of failing at once."""
    path = tmp_path / "s"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(0)
    queued = [socket.socket(socket.AF_UNIX) for _ in range(2)]
    for sock in queued:
        sock.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            sock.connect(str(path))
    with pytest.raises(OSError):  # nobody accepts: a temporary failure, after the timeout
        wire.ask(str(path), {"op": "ping"}, 0.3)

    def accept_later() -> None:
        # Some of the queued connections may never have made it into the queue, so stop
        # at the request, not after a count (the server is closed once it is answered).
        threading.Event().wait(0.3)
        while True:
            conn, _ = server.accept()
            with conn:
                if conn.recv(65536):
                    conn.sendall(b'{"result":"ok"}\n')
                    return

    thread = threading.Thread(target=accept_later, daemon=True)
    thread.start()
    for sock in queued:
        sock.close()
    assert wire.ask(str(path), {"op": "ping"}, 5) == {"result": "ok"}
    thread.join(5)
    server.close()
