"""The Lua passdb, in a plain Lua 5.4 with LuaSocket: its JSON agrees with the Python side,
and it maps the daemon's answers, outages and restarts as Dovecot expects."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import config_data, make_secrets_dir
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.slapd import USERS, Slapd
from support.stack import running_twostepd, world_readable_directory

from pam_twostep import wire
from pam_twostep.lab.twostepd import Twostepd

SCRIPT = Path(__file__).resolve().parents[1] / "config" / "dovecot" / "twostep-passdb.lua"

# A stand-in for what Dovecot provides to the script.
HARNESS = """
dovecot = { auth = { PASSDB_RESULT_OK = "OK", PASSDB_RESULT_PASSWORD_MISMATCH = "MISMATCH",
                     PASSDB_RESULT_INTERNAL_FAILURE = "INTERNAL_FAILURE" } }
dofile("SCRIPT")
local t = twostep_internal
""".replace("SCRIPT", str(SCRIPT))


def _ignore_sigpipe() -> None:
    """As in Dovecot's processes: a write to a closed socket is an error, not a death."""
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)


def lua(body: str, stdin: bytes = b"", env: dict[str, str] | None = None) -> str:
    program = HARNESS + body
    result = subprocess.run(
        ["lua5.4", "-"],
        input=program.encode() + b"\n",
        capture_output=True,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
        timeout=60,
        check=False,
        preexec_fn=_ignore_sigpipe,
        restore_signals=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode("utf-8", "surrogateescape")


# -- JSON contract ---------------------------------------------------------------------

texts = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=40)


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(texts, min_size=1, max_size=30))
def test_requests_encoded_in_lua_decode_in_python(values: list[str]) -> None:
    path = world_readable_directory("lua-") / "input"
    path.write_bytes(b"\0".join(v.encode() for v in values))
    out = lua(f"""
local data = io.open({str(path)!r}, "rb"):read("a")
for piece in (data .. "\\0"):gmatch("([^%z]*)%z") do
  io.write(t.encode({{op = "t", user = piece, secured = true}}, {{"op", "user", "secured"}}))
end
""")
    lines = out.split("\n")[:-1]  # not splitlines(): U+0085 and friends are data here
    assert [wire.decode(line.encode()) for line in lines] == [
        {"op": "t", "user": v, "secured": True} for v in values
    ]


replies = st.fixed_dictionaries(
    {"result": st.sampled_from(["accept", "deny", "tempfail"])},
    optional={
        "user": texts,
        "method": st.one_of(st.none(), texts),
        "fields": st.dictionaries(
            st.from_regex(r"[a-z_]{1,10}", fullmatch=True), texts, max_size=3
        ),
    },
)


@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(st.tuples(replies, st.booleans()), min_size=1, max_size=20))
def test_replies_encoded_in_python_decode_in_lua(
    cases: list[tuple[dict[str, object], bool]],
) -> None:
    lines = [json.dumps(reply, ensure_ascii=ascii) for reply, ascii in cases]
    path = world_readable_directory("lua-") / "replies"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = lua(f"""
for line in io.lines({str(path)!r}) do
  local v, err = t.decode(line)
  assert(v, err)
  local flat, keys = {{}}, {{}}
  for k, x in pairs(v) do
    if type(x) == "table" and x ~= t.NULL then
      for k2, x2 in pairs(x) do flat[k .. "." .. k2] = x2; keys[#keys + 1] = k .. "." .. k2 end
    elseif x == t.NULL then flat[k] = "<null>"; keys[#keys + 1] = k
    else flat[k] = x; keys[#keys + 1] = k end
  end
  io.write(t.encode(flat, keys))
end
""")
    decoded = [wire.decode(line.encode()) for line in out.split("\n")[:-1]]
    for (reply, _), got in zip(cases, decoded, strict=True):
        expected: dict[str, object] = {}
        for key, value in reply.items():
            if isinstance(value, dict):
                expected.update({f"{key}.{k}": v for k, v in value.items()})
            else:
                expected[key] = "<null>" if value is None else value
        assert got == expected


@pytest.mark.parametrize(
    "line",
    [
        "",
        "[]",
        "{",
        '{"a":1} x',
        '{"a":"\\ud800"}',
        '{"a":tru}',
        '{"a":' + "[" * 40 + "]" * 40 + "}",
        '{"a":"\x01"}',
        '{"a" 1}',
        "x" * 9000,
    ],
)
def test_lua_refuses_malformed_replies(line: str) -> None:
    path = world_readable_directory("lua-") / "reply"
    path.write_text(line)
    out = lua(f"""
local v, err = t.decode(io.open({str(path)!r}):read("a"))
print(v == nil and "refused" or "accepted")
""")
    assert out.strip() == "refused"


# -- against the daemon ----------------------------------------------------------------


@pytest.fixture(scope="module")
def daemon(slapd_server: Slapd) -> Iterator[Twostepd]:
    yield from running_twostepd(
        "twostep-lua-", lambda base: config_data(slapd_server, make_secrets_dir(base / "etc"))
    )


VERIFY = """
local function req(user) return { user = user, service = "imap", remote_ip = "192.0.2.9",
                                  local_ip = "127.0.0.1", secured = "" } end
local function try(user, pass)
  local result, fields = auth_password_verify(req(user), pass)
  io.write(tostring(result), " ", type(fields) == "table" and tostring(fields.user) or "-", "\\n")
end
"""


def test_answers_map_to_passdb_results(daemon: Twostepd, slapd: Slapd) -> None:
    out = lua(
        VERIFY
        + f"""
try("BOB", {USERS["bob"]!r})
try("bob", "wrong")
try("nobody", "x")
try("bob", "")
try("bob", "\\255\\254")
""",
        env={"TWOSTEP_SOCKET": str(daemon.socket)},
    )
    assert out.splitlines() == ["OK bob", "MISMATCH -", "MISMATCH -", "MISMATCH -", "MISMATCH -"]


def test_one_connection_survives_a_daemon_restart(daemon: Twostepd, slapd: Slapd) -> None:
    """The worker's connection breaks when the daemon restarts; the next login reconnects."""
    script = (
        VERIFY
        + f"""
try("bob", {USERS["bob"]!r})
io.stdout:flush()
io.read("l")
try("bob", {USERS["bob"]!r})
"""
    )
    process = subprocess.Popen(
        ["lua5.4", "-e", HARNESS + script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        preexec_fn=_ignore_sigpipe,
        restore_signals=False,
        env={"PATH": "/usr/bin:/bin", "TWOSTEP_SOCKET": str(daemon.socket)},
    )
    assert process.stdin and process.stdout
    first = process.stdout.readline()
    daemon.stop()
    daemon.start()
    process.stdin.write(b"\n")
    process.stdin.close()
    second = process.stdout.readline()
    assert process.wait(30) == 0
    assert (first, second) == (b"OK bob\n", b"OK bob\n")


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (  # Dovecot 2.3
            'service = "imap", remote_ip = "192.0.2.9", local_ip = "127.0.0.1", secured = ""',
            {"service": "imap", "remote": "192.0.2.9", "local": "127.0.0.1", "secured": False},
        ),
        (  # Dovecot 2.4 renamed the service to "protocol" and says "TLS" when it was
            'protocol = "pop3", remote_ip = "2001:db8::7", local_ip = "::1", secured = "TLS"',
            {"service": "pop3", "remote": "2001:db8::7", "local": "::1", "secured": True},
        ),
        (
            'remote_ip = "192.0.2.9", secured = "secured"',
            {"service": "unknown", "remote": "192.0.2.9", "secured": True},
        ),
    ],
)
def test_what_dovecot_says_about_the_login_reaches_the_daemon(
    fields: str, expected: dict[str, object]
) -> None:
    """Scoped passcodes, "last used from" and the audit depend on these fields arriving,
    under the names each Dovecot version uses."""
    path = world_readable_directory("lua-") / "sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(1)
    received: list[bytes] = []

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            received.append(conn.recv(8192))
            conn.sendall(b'{"result":"deny","reason":"wrong-secret"}\n')

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    out = lua(
        f"""
local result = auth_password_verify({{ user = "alice", {fields} }}, "pass word")
print(result)
""",
        env={"TWOSTEP_SOCKET": str(path)},
    )
    thread.join(5)
    server.close()
    assert out.strip() == "MISMATCH"
    request = json.loads(received[0])
    assert request == {
        "op": "auth",
        "flow": "mail",
        "user": "alice",
        "password": "pass word",
        **expected,
    }


def test_daemon_down_slow_or_garbled_is_an_internal_failure(tmp_path: Path) -> None:
    directory = world_readable_directory("lua-")
    missing = lua(VERIFY + 'try("bob", "pw")', env={"TWOSTEP_SOCKET": str(directory / "none")})
    assert missing.strip() == "INTERNAL_FAILURE -"
    for answer in (b"garbage\n", b'{"result":"error","error":"malformed"}\n', None):
        path = directory / f"sock{answer is None}{len(answer or b'')}"
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(path))
        server.listen(1)

        def serve(server: socket.socket = server, answer: bytes | None = answer) -> None:
            conn, _ = server.accept()
            conn.recv(8192)
            if answer is not None:
                conn.sendall(answer)
            else:
                threading.Event().wait(3)
            conn.close()
            server.close()

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        out = lua(
            VERIFY + 'try("bob", "pw")', env={"TWOSTEP_SOCKET": str(path), "TWOSTEP_TIMEOUT": "1"}
        )
        assert out.strip() == "INTERNAL_FAILURE -"
        thread.join(5)
