"""The ldap3 layer against the real slapd: lookups, compare-and-swap, binds, failures."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import config_data
from hypothesis import given
from hypothesis import strategies as st
from ldap3 import SUBTREE
from ldap3.protocol.rfc4511 import LDAPMessage, MessageID, ProtocolOp
from ldap3.utils.asn1 import encode
from support.slapd import (
    DEFAULT_POLICY,
    NAMES,
    PEOPLE,
    POLICIES,
    USERS,
    Slapd,
    limit_service_searches,
    user_dn,
)

from pam_twostep.config import Config, load_secrets, parse_config
from pam_twostep.core.account import Attr
from pam_twostep.core.changes import Change, Modify
from pam_twostep.core.errors import Conflict, DirectoryIncomplete, DirectoryUnavailable
from pam_twostep.directory import Directory, escape_filter
from pam_twostep.directory._prepared import message, prepare, search_request
from pam_twostep.directory._providers import ldapi_socket
from pam_twostep.lab.slapd import SUFFIX
from pam_twostep.lab.tls import make_certificates

ATTRS = ["uid", "entryUUID", "objectClass", "userPassword", Attr.LAST_STEP]


def directory_for(slapd: Slapd, secrets_dir: Path, **ldap: object) -> Directory:
    config: Config = parse_config(config_data(slapd, secrets_dir, ldap=ldap))
    return Directory(config.ldap, config.users, load_secrets(config).bind_password)


@pytest.fixture
def directory(slapd: Slapd, secrets_dir: Path) -> Iterator[Directory]:
    result = directory_for(slapd, secrets_dir)
    yield result
    result.close()


def test_find_account(directory: Directory) -> None:
    entry = directory.find_account("alice", ATTRS)
    assert entry is not None and entry.dn == user_dn("alice")
    assert entry.get("uid") == (b"alice",)
    assert entry.get("entryUUID")
    assert directory.find_account("nobody", ATTRS) is None


@pytest.mark.parametrize(
    "name", ["*", "a*", "*)(uid=*", "alice)(uid=bob", "\\", "al\x00ice", "(", ")", "\\2a"]
)
def test_filter_metacharacters_are_escaped(directory: Directory, name: str) -> None:
    assert directory.find_account(name, ATTRS) is None


def test_escape_filter() -> None:
    assert escape_filter("a*(b)\\\x00") == "a\\2a\\28b\\29\\5c\\00"


HOSTILE = ["*", "a*", ")(", "*)(uid=*", "alice)(uid=bob", "\\", "al\x00ice", "(", "\\2a"]


def test_find_by_matches_one_attribute_under_the_users(directory: Directory, slapd: Slapd) -> None:
    (entry,) = directory.find_by("mail", "alice@example.org", ATTRS)
    assert entry.dn == user_dn("alice") and entry.get("uid") == (b"alice",)
    assert directory.find_by("mail", "nobody@example.org", ATTRS) == []
    assert len(directory.find_by("objectClass", "inetOrgPerson", ATTRS, limit=2)) == 2
    slapd.set_attributes(user_dn("bob"), cn=["Bøb Ünïcode 名"])
    (found,) = directory.find_by("cn", "Bøb Ünïcode 名", ATTRS)
    assert found.dn == user_dn("bob")


@pytest.mark.parametrize("value", HOSTILE)
def test_find_by_takes_a_value_as_a_value(directory: Directory, slapd: Slapd, value: str) -> None:
    """Filter metacharacters, NUL and non-ASCII are matched as themselves, never as
    syntax: no wildcard, no second clause; a value holding them is found as it is."""
    assert directory.find_by("uid", value, ATTRS) == []
    assert directory.find_by("mail", value + "ü", ATTRS) == []
    stored = value.replace("\x00", "") + " ü"
    slapd.set_attributes(user_dn("carol"), description=[stored])
    (entry,) = directory.find_by("description", stored, ATTRS)
    assert entry.dn == user_dn("carol")


@pytest.mark.parametrize(
    "attribute", ["", "*", "uid)(mail=*", "(uid", "uid=alice", "1uid", "uid;binary", "u\x00id", "ü"]
)
def test_find_by_refuses_an_attribute_that_is_not_a_name_before_asking(
    directory: Directory, attribute: str
) -> None:
    before = directory.counts().get("search", 0)
    with pytest.raises(ValueError, match="not an attribute name"):
        directory.find_by(attribute, "alice", ATTRS)
    assert directory.counts().get("search", 0) == before


def test_entries_and_names_of_a_class(directory: Directory, slapd: Slapd) -> None:
    (policy,) = directory.entries_of_class(POLICIES, "twostepPolicy", ["cn"])
    assert policy.dn == DEFAULT_POLICY and policy.get("cn") == (b"default",)
    people = directory.names_of_class(PEOPLE, "inetOrgPerson")
    assert sorted(people) == sorted(user_dn(name) for name in USERS)
    assert directory.names_of_class(PEOPLE, "twostepAccount") == []
    slapd.set_attributes(user_dn("dave"), objectClass=["inetOrgPerson", "twostepAccount"])
    assert directory.names_of_class(PEOPLE, "twostepAccount") == [user_dn("dave")]
    assert directory.entries_of_class(f"ou=nowhere,{PEOPLE}", "twostepPolicy", ["cn"]) == []


@pytest.mark.parametrize("object_class", [*HOSTILE, "inetOrgPerson)(uid=*", "twostepPolicyü"])
def test_a_class_name_is_never_filter_syntax(directory: Directory, object_class: str) -> None:
    assert directory.entries_of_class(PEOPLE, object_class, ["cn"]) == []
    assert directory.names_of_class(PEOPLE, object_class) == []


@given(
    message_id=st.integers(1, 2**31 - 1) | st.sampled_from([1, 127, 128, 255, 256, 32767, 32768]),
    name=st.text(max_size=300),
    attributes=st.lists(st.sampled_from([*ATTRS, "*", "1.1"]), max_size=8),
)
def test_a_prepared_search_is_what_ldap3_would_send(
    message_id: int, name: str, attributes: list[str]
) -> None:
    """The search bytes are encoded once and framed per message; the framing must give
    exactly what ldap3 itself sends, whatever the message id and however long the filter."""
    request = search_request(
        PEOPLE,
        f"(&(objectClass=inetOrgPerson)(uid={escape_filter(name)}))",
        attributes,
        SUBTREE,
        2,
        5,
    )
    ldap_message = LDAPMessage()
    ldap_message["messageID"] = MessageID(message_id)
    ldap_message["protocolOp"] = ProtocolOp().setComponentByName("searchRequest", request)
    assert message(message_id, prepare("searchRequest", request)) == encode(ldap_message)


def test_prepared_searches_on_one_connection(directory: Directory) -> None:
    """The same prepared search many times over pooled connections: each answer is its own."""
    for _ in range(50):
        for name in ("alice", "bob"):
            entry = directory.find_account(name, ATTRS)
            assert entry is not None and entry.dn == user_dn(name)


def test_check_password(directory: Directory) -> None:
    dn = user_dn("alice")
    assert directory.check_password(dn, USERS["alice"])
    assert not directory.check_password(dn, "wrong")
    assert not directory.check_password(dn, "")  # an anonymous bind would "succeed"
    assert not directory.check_password(dn, "x\x00y")
    # refused by SASLprep before any bind: wrong, not unreachable (sshd's unknown users)
    assert not directory.check_password(dn, "\b\n\r\x7fINCORRECT")
    assert not directory.check_password(dn, "x" * 2000)
    assert not directory.check_password(f"uid=nobody,{PEOPLE}", "x")


def test_compare_and_swap(directory: Directory, slapd: Slapd) -> None:
    dn = user_dn("alice")
    slapd.set_attributes(
        dn, objectClass=["inetOrgPerson", "twostepAccount"], twostepTOTPLastStep=["5"]
    )
    directory.modify(
        dn, Modify((Change.delete(Attr.LAST_STEP, "5"), Change.add(Attr.LAST_STEP, "6")))
    )
    with pytest.raises(Conflict):
        directory.modify(
            dn, Modify((Change.delete(Attr.LAST_STEP, "5"), Change.add(Attr.LAST_STEP, "7")))
        )
    with pytest.raises(Conflict):  # single-valued: a second add loses too
        directory.modify(dn, Modify((Change.add(Attr.LAST_STEP, "8"),)))
    assert slapd.entry(dn)[Attr.LAST_STEP.lower()] == [b"6"]


def test_the_service_cannot_write_outside_its_attributes(directory: Directory) -> None:
    with pytest.raises(DirectoryUnavailable, match="InsufficientAccess"):
        directory.modify(user_dn("alice"), Modify((Change.replace("mail", "x@example.org"),)))


def _refused(directory: Directory) -> None:
    """Every kind of operation is a temporary failure, never an answer."""
    with pytest.raises(DirectoryUnavailable):
        directory.find_account("alice", ATTRS)
    with pytest.raises(DirectoryUnavailable):
        directory.check_password(user_dn("alice"), USERS["alice"])


def _over_tls(slapd: Slapd, secrets_dir: Path, how: str, **ldap: object) -> Directory:
    if how == "ldaps":
        return directory_for(slapd, secrets_dir, uris=[slapd.ldaps_uri], **ldap)
    return directory_for(slapd, secrets_dir, uris=[slapd.uri], start_tls=True, **ldap)


@pytest.mark.parametrize("how", ["ldaps", "starttls"])
def test_everything_works_over_tls(slapd: Slapd, secrets_dir: Path, how: str) -> None:
    """Searches (sent as prepared bytes on the TLS socket), password binds and writes."""
    directory = _over_tls(slapd, secrets_dir, how, ca_file=str(slapd.ca_file))
    try:
        for _ in range(20):
            entry = directory.find_account("alice", ATTRS)
            assert entry is not None and entry.dn == user_dn("alice")
        assert directory.check_password(user_dn("alice"), USERS["alice"])
        assert not directory.check_password(user_dn("alice"), "wrong")
        slapd.set_attributes(user_dn("alice"), objectClass=["inetOrgPerson", "twostepAccount"])
        directory.modify(user_dn("alice"), Modify((Change.add(Attr.LAST_STEP, "9"),)))
        assert slapd.entry(user_dn("alice"))[Attr.LAST_STEP.lower()] == [b"9"]
    finally:
        directory.close()


@pytest.mark.parametrize("how", ["ldaps", "starttls"])
def test_a_server_certificate_from_another_ca_is_refused(
    slapd: Slapd, secrets_dir: Path, tmp_path: Path, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    stranger = make_certificates(tmp_path / "other")
    for ldap in ({"ca_file": str(stranger.ca)}, {}):  # another CA; the system's CAs
        directory = _over_tls(slapd, secrets_dir, how, **ldap)
        caplog.clear()
        try:
            _refused(directory)
        finally:
            directory.close()
        assert "CERTIFICATE_VERIFY_FAILED" in caplog.text  # the log says why


def _tls_slapd(tmp_path: Path, names: list[str]) -> Slapd:
    """A slapd whose certificate, signed by the trusted CA, is for ``names`` only."""
    server = Slapd.create(tmp_path / "ldap", names=NAMES, users=USERS, tls=True)
    make_certificates(server.directory / "tls", names=names)
    server.stop()
    server.start()
    return server


@pytest.mark.parametrize(
    ("names", "host"),
    [
        (["ldap.example.org"], "127.0.0.1"),  # another name than the address we dial
        (["127.0.0.2"], "127.0.0.1"),  # another address
        (["127.0.0.1", "ldap.example.org"], "localhost"),  # another name than the one we dial
    ],
    ids=["name-for-address", "wrong-address", "wrong-name"],
)
def test_a_server_certificate_for_another_name_or_address_is_refused(
    secrets_dir: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    names: list[str],
    host: str,
) -> None:
    """Signed by the trusted CA, but not for the host we connect to (Python 3.11 and 3.13)."""
    server = _tls_slapd(tmp_path, names)
    try:
        for how in ("ldaps", "starttls"):
            uri = server.ldaps_uri if how == "ldaps" else server.uri
            uri = uri.replace("127.0.0.1", host)
            directory = directory_for(
                server,
                secrets_dir,
                uris=[uri],
                start_tls=how == "starttls",
                ca_file=str(server.ca_file),
            )
            caplog.clear()
            try:
                _refused(directory)
            finally:
                directory.close()
            assert "CERTIFICATE_VERIFY_FAILED" in caplog.text and "mismatch" in caplog.text
    finally:
        server.stop()


def test_a_server_certificate_is_accepted_by_name_and_by_address(
    secrets_dir: Path, tmp_path: Path
) -> None:
    """ldaps and StartTLS by DNS name and by IP address (an IP subjectAltName)."""
    server = _tls_slapd(tmp_path, ["localhost", "127.0.0.1"])
    try:
        for host in ("localhost", "127.0.0.1"):
            for how in ("ldaps", "starttls"):
                uri = (server.ldaps_uri if how == "ldaps" else server.uri).replace(
                    "127.0.0.1", host
                )
                directory = directory_for(
                    server,
                    secrets_dir,
                    uris=[uri],
                    start_tls=how == "starttls",
                    ca_file=str(server.ca_file),
                )
                try:
                    assert directory.check_password(user_dn("alice"), USERS["alice"]), (host, how)
                    assert directory.find_account("alice", ATTRS) is not None
                finally:
                    directory.close()
    finally:
        server.stop()


def test_fail_over_to_the_next_uri(slapd: Slapd, secrets_dir: Path) -> None:
    dead = "ldap://127.0.0.1:9"  # discard port: nothing listens
    directory = directory_for(slapd, secrets_dir, uris=[dead, slapd.uri])
    assert directory.find_account("alice", ATTRS) is not None
    directory.close()
    ldapi = directory_for(slapd, secrets_dir, uris=[slapd.ldapi])
    assert ldapi.find_account("alice", ATTRS) is not None
    assert ldapi.check_password(user_dn("alice"), USERS["alice"])
    ldapi.close()


def test_ldapi_never_runs_an_unverified_starttls(slapd: Slapd, secrets_dir: Path) -> None:
    """With start_tls set (for the TCP URIs), the local socket is used as it is: ldap3
    would have wrapped it in TLS that checks no certificate."""
    import ssl

    ldapi = directory_for(slapd, secrets_dir, uris=[slapd.ldapi], start_tls=True)
    try:
        assert ldapi.check_password(user_dn("alice"), USERS["alice"])
        conn = ldapi._providers._connect(0, None, None)
        assert not isinstance(conn.socket, ssl.SSLSocket)
        conn.unbind()
    finally:
        ldapi.close()


def test_a_server_that_never_answers_times_out(slapd: Slapd, secrets_dir: Path) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    port = silent.getsockname()[1]
    try:
        only_silent = directory_for(
            slapd, secrets_dir, uris=[f"ldap://127.0.0.1:{port}"], timeout=1
        )
        started = time.monotonic()
        with pytest.raises(DirectoryUnavailable):
            only_silent.find_account("alice", ATTRS)
        assert time.monotonic() - started < 5
        both = directory_for(
            slapd, secrets_dir, uris=[f"ldap://127.0.0.1:{port}", slapd.uri], timeout=1
        )
        assert both.find_account("alice", ATTRS) is not None
    finally:
        silent.close()


def test_stopped_and_restarted_server(directory: Directory, slapd: Slapd) -> None:
    assert directory.find_account("alice", ATTRS) is not None  # a pooled connection exists
    slapd.stop()
    try:
        _refused(directory)
    finally:
        slapd.start()
    assert directory.find_account("alice", ATTRS) is not None  # recovered by itself


def _wait_until_stopped(pid: int) -> None:
    """kill() returns before every thread has stopped; a loaded machine can take a while."""
    for _ in range(200):
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
        if state in ("T", "t"):
            return
        time.sleep(0.05)
    pytest.fail(f"slapd {pid} did not stop: state {state}")


def test_a_frozen_server_does_not_hang_us(directory: Directory, slapd: Slapd) -> None:
    assert directory.find_account("alice", ATTRS) is not None
    assert slapd.process is not None
    os.kill(slapd.process.pid, signal.SIGSTOP)
    try:
        _wait_until_stopped(slapd.process.pid)
        started = time.monotonic()
        with pytest.raises(DirectoryUnavailable):
            directory.find_account("alice", ATTRS)
        assert time.monotonic() - started < 15
    finally:
        os.kill(slapd.process.pid, signal.SIGCONT)
    assert directory.find_account("alice", ATTRS) is not None


def test_pool_is_shared_by_threads(directory: Directory) -> None:
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(20):
                assert directory.find_account("bob", ATTRS) is not None
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_wrong_service_password_is_unavailable(slapd: Slapd, secrets_dir: Path) -> None:
    (secrets_dir / "ldap.secret").write_text("not the password")
    directory = directory_for(slapd, secrets_dir)
    with pytest.raises(DirectoryUnavailable, match="service"):
        directory.find_account("alice", ATTRS)


def _refusing_starttls_server(code: int | bytes) -> tuple[socket.socket, list[bytes]]:
    """A loopback 'server' that answers the StartTLS request with ``code``, as a broken
    server or someone on the path could, and records what the client sends next."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(10)
    seen: list[bytes] = []

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = server.accept()
                with client:
                    request = client.recv(4096)
                    size = request[3]
                    message_id = request[4 : 4 + size]
                    enumerated = bytes([0x0A, 1, code]) if isinstance(code, int) else code
                    body = enumerated + bytes([0x04, 0, 0x04, 0])
                    op = bytes([0x78, len(body)]) + body
                    inner = bytes([0x02, size]) + message_id + op
                    client.sendall(bytes([0x30, len(inner)]) + inner)
                    client.settimeout(2)
                    with contextlib.suppress(OSError):
                        seen.append(client.recv(4096))

    threading.Thread(target=serve, daemon=True).start()
    return server, seen


@pytest.mark.parametrize("code", [2, 49, 52, 53, 80])
def test_a_refused_starttls_is_an_unusable_server_never_an_answer(
    slapd: Slapd, secrets_dir: Path, code: int
) -> None:
    """Any result code to StartTLS: a temporary failure (a right password is never
    turned into a wrong one, which would count towards lock-out), and no bind in clear."""
    server, seen = _refusing_starttls_server(code)
    try:
        port = server.getsockname()[1]
        directory = directory_for(
            slapd, secrets_dir, uris=[f"ldap://127.0.0.1:{port}"], start_tls=True
        )
        try:
            with pytest.raises(DirectoryUnavailable):
                directory.check_password(user_dn("alice"), USERS["alice"])
            with pytest.raises(DirectoryUnavailable):
                directory.find_account("alice", ATTRS)
        finally:
            directory.close()
    finally:
        server.close()
    # after the refusal the client sends nothing but an unbind (tag 0x42)
    assert all(not data or data[4 + data[3]] == 0x42 for data in seen), seen
    assert not any(USERS["alice"].encode() in data for data in seen)


# -- result codes that ldap3 does not raise for ----------------------------------------


def _ber_length(data: bytes, at: int) -> tuple[int, int]:
    """(length, offset of the content) of the BER element whose length byte is at ``at``."""
    first = data[at]
    if first < 0x80:
        return first, at + 1
    count = first & 0x7F
    return int.from_bytes(data[at + 1 : at + 1 + count], "big"), at + 1 + count


_ANSWERS = {0x66: 0x67, 0x68: 0x69, 0x4A: 0x6B, 0x77: 0x78}
"""Request tag -> response tag: modify, add, delete, extended."""


def _answering_server(
    bind_codes: list[int], write_code: int = 0
) -> tuple[socket.socket, list[int]]:
    """A loopback LDAP 'server' that answers the n-th bind with ``bind_codes[n]`` (the
    last one for every later bind), and every write with ``write_code``, as a broken
    server, proxy or overlay could (or a read-only replica: referral)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    answered: list[int] = []

    def reply(client: socket.socket, message_id: bytes, code: int, tag: int = 0x61) -> None:
        body = bytes([0x0A, 1, code, 0x04, 0, 0x04, 0])
        op = bytes([tag, len(body)]) + body  # bindResponse, or another LDAPResult
        inner = bytes([0x02, len(message_id)]) + message_id + op
        client.sendall(bytes([0x30, len(inner)]) + inner)

    def conversation(client: socket.socket) -> None:
        with client, contextlib.suppress(OSError, IndexError):
            buffer = b""
            while True:
                chunk = client.recv(4096)
                if not chunk:
                    return
                buffer += chunk
                while buffer:
                    length, start = _ber_length(buffer, 1)
                    if len(buffer) < start + length:
                        break
                    message, buffer = buffer[: start + length], buffer[start + length :]
                    id_length = message[start + 1]
                    message_id = message[start + 2 : start + 2 + id_length]
                    tag = message[start + 2 + id_length]
                    if tag == 0x42:  # unbind
                        return
                    if tag == 0x60:  # bind
                        code = bind_codes[min(len(answered), len(bind_codes) - 1)]
                        answered.append(code)
                        reply(client, message_id, code)
                    elif tag in _ANSWERS:
                        answered.append(write_code)
                        reply(client, message_id, write_code, _ANSWERS[tag])

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = server.accept()
                threading.Thread(target=conversation, args=(client,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return server, answered


_ODD_BIND_CODES = [3, 4, 5, 6, 10, 14]  # ldap3 raises for none of these


@pytest.mark.parametrize("code", _ODD_BIND_CODES)
def test_a_bind_answered_with_anything_but_success_is_never_an_accept(
    slapd: Slapd, secrets_dir: Path, code: int
) -> None:
    """A wrong password answered with, say, compareTrue was taken as accepted."""
    for codes in ([code], [0, code]):  # on a fresh connection; on a kept one (rebind)
        server, answered = _answering_server(codes)
        port = server.getsockname()[1]
        directory = directory_for(slapd, secrets_dir, uris=[f"ldap://127.0.0.1:{port}"])
        try:
            if codes[0] == 0:
                assert directory.check_password(user_dn("alice"), "first, kept for rebinding")
            with pytest.raises(DirectoryUnavailable, match=f"code {code}"):
                directory.check_password(user_dn("alice"), "a wrong password")
        finally:
            directory.close()
            server.close()
        assert code in answered


_ODD_WRITE_CODES = [5, 6, 10, 14]  # ldap3 raises for none of these either


@pytest.mark.parametrize("code", _ODD_WRITE_CODES)
def test_a_write_answered_with_anything_but_success_is_not_taken_as_applied(
    slapd: Slapd, secrets_dir: Path, code: int
) -> None:
    """A code's swap answered with a referral (a read-only replica with olcUpdateRef
    listed in ldap.uris) was taken as applied: the code was never consumed, and was
    accepted again for as long as it was valid."""
    server, answered = _answering_server([0], write_code=code)
    port = server.getsockname()[1]
    directory = directory_for(slapd, secrets_dir, uris=[f"ldap://127.0.0.1:{port}"])
    dn = user_dn("alice")
    swap = Modify(
        (Change.delete(Attr.LAST_STEP, "5"), Change.add(Attr.LAST_STEP, "6")), guarded=True
    )
    try:
        for write in (
            lambda: directory.modify(dn, swap),
            lambda: directory.modify(dn, Modify((Change.add(Attr.LAST_STEP, "6"),))),
            lambda: directory.add_entry(dn, ["device"], {"cn": ["x"]}),
            lambda: directory.delete_entry(dn),
        ):
            with pytest.raises(DirectoryIncomplete, match=f"code {code}"):
                write()
        with pytest.raises(DirectoryUnavailable, match="password change"):
            directory.change_password(dn, "old password", "new password")
    finally:
        directory.close()
        server.close()
    assert answered.count(code) == 5


def test_invalid_credentials_is_a_wrong_password_and_success_a_right_one(
    slapd: Slapd, secrets_dir: Path
) -> None:
    server, _ = _answering_server([49, 0, 49])
    port = server.getsockname()[1]
    directory = directory_for(slapd, secrets_dir, uris=[f"ldap://127.0.0.1:{port}"])
    try:
        assert directory.check_password(user_dn("alice"), "wrong") is False
        assert directory.check_password(user_dn("alice"), "right") is True
        assert directory.check_password(user_dn("alice"), "wrong again") is False  # rebind
    finally:
        directory.close()
        server.close()


@pytest.fixture(scope="module")
def capped_slapd() -> Iterator[Slapd]:
    """A slapd that gives the service identity at most 10 entries per search, paged or
    not (olcLimits size.hard/size.prtotal), holding 30 two-step accounts."""
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="twostep-capped-"))
    server = Slapd.create(base / "ldap", names=NAMES, users=USERS)
    assert isinstance(server, Slapd)
    names = [f"capped{n:02d}" for n in range(30)]
    server.add_users(names)
    for name in names:
        server.set_attributes(user_dn(name), objectClass=["inetOrgPerson", "twostepAccount"])
    limit_service_searches(server, 10)
    try:
        yield server
    finally:
        server.destroy()


def test_a_listing_cut_short_by_the_server_is_never_taken_as_whole(
    capped_slapd: Slapd, secrets_dir: Path
) -> None:
    directory = directory_for(capped_slapd, secrets_dir)
    try:
        with pytest.raises(DirectoryUnavailable, match="sizeLimitExceeded"):
            directory.names_under(PEOPLE, "(objectClass=twostepAccount)")
        with pytest.raises(DirectoryUnavailable, match="sizeLimitExceeded"):
            directory.search(PEOPLE, "(objectClass=twostepAccount)", ["uid"], limit=20)
        # our own limit reached is a whole answer: find_account asks for 2 to see a twin
        assert len(directory.search(PEOPLE, "(objectClass=twostepAccount)", ["uid"], 2)) == 2
        assert directory.find_account("capped07", ATTRS) is not None
    finally:
        directory.close()


def test_a_server_limit_below_ours_hides_no_second_match(
    capped_slapd: Slapd, secrets_dir: Path
) -> None:
    """With a server-side limit of 1, a filter matching two entries must not pick one."""
    limit_service_searches(capped_slapd, 1, paged_total=False)
    import dataclasses

    config: Config = parse_config(config_data(capped_slapd, secrets_dir))
    users = dataclasses.replace(config.users, filter="(&(objectClass=inetOrgPerson)(uid=capped0*))")
    directory = Directory(config.ldap, users, load_secrets(config).bind_password)
    try:
        with pytest.raises(DirectoryUnavailable):
            directory.find_account("ignored", ATTRS)
    finally:
        directory.close()


@pytest.mark.parametrize("code", [51, 52, 53])  # busy, unavailable, unwilling to perform
def test_a_users_refused_bind_does_not_move_the_daemon_to_another_provider(
    slapd: Slapd, secrets_dir: Path, code: int
) -> None:
    """Only the service connection's failures move the daemon: a user's bind answered
    busy or unwilling (a per-user policy, an overlay) says nothing about the server."""
    server, answered = _answering_server([code])
    fake = f"ldap://127.0.0.1:{server.getsockname()[1]}"
    directory = directory_for(slapd, secrets_dir, uris=[fake, slapd.uri])
    try:
        with pytest.raises(DirectoryUnavailable):
            directory.check_password(user_dn("alice"), USERS["alice"])
        assert directory.server_in_use == fake
        assert answered == [code]
    finally:
        directory.close()
        server.close()


def test_the_shipped_limits_file_goes_before_a_sites_own_rules(
    capped_slapd: Slapd, secrets_dir: Path
) -> None:
    """ldap_schema/limits.ldif applied as a site would, with ldapmodify as it ships, to a
    database whose existing rule caps everyone (the service identity too) at 10."""
    shipped = Path(__file__).resolve().parents[1] / "ldap_schema" / "limits.ldif"
    ldif = capped_slapd.directory / "site-limits.ldif"
    ldif.write_text(
        "dn: olcDatabase={1}mdb,cn=config\nchangetype: modify\nreplace: olcLimits\n"
        "olcLimits: * size.soft=10 size.hard=10 size.prtotal=10\n"
    )
    capped_slapd.ldapmodify(ldif)
    directory = directory_for(capped_slapd, secrets_dir)
    try:
        with pytest.raises(DirectoryIncomplete):
            directory.names_under(PEOPLE, "(objectClass=twostepAccount)")
    finally:
        directory.close()
    ldif.write_text(shipped.read_text().replace(SUFFIX, NAMES.suffix))
    capped_slapd.ldapmodify(ldif)
    # slapd 2.5 shows the new rule first at once but applies it so only once restarted,
    # as ldap_schema/README.md says
    capped_slapd.stop()
    capped_slapd.start()
    directory = directory_for(capped_slapd, secrets_dir)
    try:
        assert len(directory.names_under(PEOPLE, "(objectClass=twostepAccount)")) >= 30
    finally:
        directory.close()


def test_the_documented_limits_line_lifts_a_servers_default_limit(
    capped_slapd: Slapd, secrets_dir: Path
) -> None:
    """ldap_schema/limits.ldif's olcLimits line (the one README.md shows), against a
    database limited to 5 entries."""
    schema = Path(__file__).resolve().parents[1] / "ldap_schema"
    (line,) = [
        x for x in (schema / "limits.ldif").read_text().splitlines() if x.startswith("olcLimits:")
    ]
    assert line in (schema / "README.md").read_text().splitlines()
    line = line.replace("cn=twostep,ou=services,dc=example,dc=org", NAMES.service_dn)
    ldif = capped_slapd.directory / "documented.ldif"
    ldif.write_text(
        "dn: olcDatabase={1}mdb,cn=config\nchangetype: modify\nreplace: olcSizeLimit\n"
        f"olcSizeLimit: 5\n-\nreplace: olcLimits\n{line}\n"
    )
    capped_slapd.ldapmodify(ldif)
    directory = directory_for(capped_slapd, secrets_dir)
    try:
        assert len(directory.names_under(PEOPLE, "(objectClass=twostepAccount)")) >= 30
        assert len(directory.search(PEOPLE, "(objectClass=twostepAccount)", ["uid"], 100)) >= 30
    finally:
        directory.close()


@pytest.mark.parametrize(
    "result",
    [b"\x0a\x02\x01\x2c", b"\x0a\x01\xff", b"\x0a\x00"],  # 300, -1, empty
    ids=["code-300", "code-minus-1", "empty-enumerated"],
)
def test_an_undecodable_starttls_answer_moves_on_to_the_next_uri(
    slapd: Slapd, secrets_dir: Path, result: bytes
) -> None:
    """ldap3 raises KeyError or IndexError for these: still an unusable server."""
    server, _ = _refusing_starttls_server(result)
    garbage = f"ldap://127.0.0.1:{server.getsockname()[1]}"
    directory = directory_for(
        slapd, secrets_dir, uris=[garbage, slapd.uri], start_tls=True, ca_file=str(slapd.ca_file)
    )
    try:
        assert directory.find_account("alice", ATTRS) is not None
        assert directory.server_in_use == slapd.uri
    finally:
        directory.close()
        server.close()


def test_entries_are_decoded_as_ldap3_decodes_them_but_attributes(
    directory: Directory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The directory's entries skip ldap3's second, schema-driven decoding; what is kept
    (dn, raw_dn, raw_attributes) must be exactly ldap3's, on real answers."""
    import ldap3.strategy.base
    from ldap3.operation.search import search_result_entry_response_to_dict_fast as ldap3s

    from pam_twostep.directory._decoding import entry_without_decoding

    assert ldap3.strategy.base.search_result_entry_response_to_dict_fast is entry_without_decoding
    compared: list[str] = []

    def both(response: Any, *rest: Any) -> dict[str, Any]:
        ours, theirs = entry_without_decoding(response, *rest), ldap3s(response, *rest)
        assert ours["attributes"] == ours["raw_attributes"]
        assert set(ours["attributes"]) == set(theirs["attributes"])
        assert all(ours["attributes"][k] is not v for k, v in ours["raw_attributes"].items() if v)
        for key in ("dn", "raw_dn"):
            assert ours[key] == theirs[key]
        assert dict(ours["raw_attributes"]) == dict(theirs["raw_attributes"])
        compared.append(ours["dn"])
        return ours

    monkeypatch.setattr(ldap3.strategy.base, "search_result_entry_response_to_dict_fast", both)
    entry = directory.find_account("alice", [*ATTRS, "cn", "mail"])
    assert entry is not None and entry.attributes["uid"] == (b"alice",)
    assert directory.read(user_dn("bob"), ["*", "+"]) is not None
    assert directory.names_of_class(PEOPLE, "inetOrgPerson")
    assert len(compared) >= 3


def test_an_attribute_asked_for_in_another_case_keeps_its_values(directory: Directory) -> None:
    """Names are matched without regard to case: asking for ``UID`` or ``ENTRYuuid``
    (an attribute the server spells ``uid``, ``entryUUID``) gives their values, never an
    empty twin that would hide them (what an added empty list did with plain keys)."""
    entry = directory.read(user_dn("alice"), ["UID", "ENTRYuuid", "twostepSecret"])
    assert entry is not None
    assert entry.get("uid") == (b"alice",) and len(entry.get("entryuuid")) == 1
    assert entry.get("twostepsecret") == ()


@pytest.mark.parametrize(
    ("uri", "socket"),
    [
        ("ldapi:///", "/run/slapd/ldapi"),  # no socket named: the system's slapd
        ("ldapi://", "/run/slapd/ldapi"),
        ("ldapi://%2Fvar%2Frun%2Fslapd%2Fldapi", "/var/run/slapd/ldapi"),
        ("ldapi://%2Ftmp%2Fx%20y", "/tmp/x y"),
        ("ldapi:///srv/ldap/sock", "/srv/ldap/sock"),
    ],
)
def test_an_ldapi_uri_names_its_socket(uri: str, socket: str) -> None:
    assert ldapi_socket(uri) == socket
