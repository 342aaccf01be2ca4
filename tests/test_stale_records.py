"""Retired credentials and stale clients as stored: exact round trips, and refusal of
anything the writers do not produce (a hostile value makes the entry corrupt, never a
guess)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pam_twostep.core.stale_records import (
    PasswordVerifier,
    RetiredPasscode,
    StaleClient,
    load_retired,
)

ids = st.text(alphabet="23456789abcdefghjklmnpqrstuvwxyz", min_size=8, max_size=8)
digests = st.text(alphabet="ABCabc019_-", min_size=43, max_size=43)
stamps = st.text(alphabet="0123456789abcdef", min_size=32, max_size=32)
macs = st.text(alphabet="0123456789abcdef", min_size=16, max_size=16)
times = st.integers(min_value=0, max_value=(1 << 40) - 1)
labels = st.text(min_size=1, max_size=64).filter(lambda s: s.isprintable() and s == s.strip())
services = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,31}", fullmatch=True)
addresses = st.one_of(st.ip_addresses().map(str), st.just(""))

retired_passcodes = st.builds(
    RetiredPasscode,
    id=ids,
    label=labels,
    digest=digests,
    retired=times,
    why=st.sampled_from(["revoked", "expired", "password", "disabled"]),
)
verifiers = st.builds(
    PasswordVerifier,
    stamp=stamps,
    key_id=st.from_regex(r"[A-Za-z0-9_-]{1,32}", fullmatch=True),
    mac=macs,
    seen=times,
    until=times,
)
stale_clients = st.one_of(
    st.builds(
        StaleClient,
        id=ids,
        kind=st.just("passcode"),
        ref=ids,
        label=labels,
        since=times,
        address=addresses,
        service=services,
        first=times,
        last=times,
        told=st.booleans(),
        dismissed=st.booleans(),
    ),
    st.builds(
        StaleClient,
        id=ids,
        kind=st.sampled_from(["old-password", "password"]),
        ref=stamps,
        label=st.just(""),
        since=times,
        address=addresses,
        service=services,
        first=times,
        last=times,
        told=st.booleans(),
        dismissed=st.booleans(),
    ),
)


@given(record=st.one_of(retired_passcodes, verifiers))
def test_retired_round_trip_is_exact(record: RetiredPasscode | PasswordVerifier) -> None:
    text = record.dump()
    assert load_retired(text) == record and load_retired(text).dump() == text
    assert text.isascii()


@given(record=stale_clients)
def test_stale_client_round_trip_is_exact(record: StaleClient) -> None:
    text = record.dump()
    assert StaleClient.load(text) == record and StaleClient.load(text).dump() == text


_GOOD_RETIRED = RetiredPasscode("abcdefgh", "Phone", "A" * 43, 1, "revoked").dump()
_GOOD_VERIFIER = PasswordVerifier("0" * 32, "k1", "0" * 16, 1, 0).dump()
_GOOD_STALE = StaleClient(
    "abcdefgh", "passcode", "abcdefgh", "Phone", 0, "192.0.2.7", "imap", 1, 2, False, False
).dump()


def _with(text: str, **changes: object) -> str:
    data = json.loads(text)
    for key, value in changes.items():
        if value is ...:
            del data[key]
        else:
            data[key] = value
    return json.dumps(data, separators=(",", ":"), sort_keys=True)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "[]",
        "{",
        "x" * 3000,
        _with(_GOOD_RETIRED, why="stolen"),
        _with(_GOOD_RETIRED, kind="device"),
        _with(_GOOD_RETIRED, h="short"),
        _with(_GOOD_RETIRED, label="tab\there"),
        _with(_GOOD_RETIRED, label=""),
        _with(_GOOD_RETIRED, t=-1),
        _with(_GOOD_RETIRED, t=True),
        _with(_GOOD_RETIRED, extra=1),
        _with(_GOOD_RETIRED, id=...),
        _with(_GOOD_VERIFIER, h="0" * 64),
        _with(_GOOD_VERIFIER, h="G" * 16),
        _with(_GOOD_VERIFIER, k="bad id!"),
        _with(_GOOD_VERIFIER, until="0"),
        _with(_GOOD_VERIFIER, pw="0" * 31),
        _with(_GOOD_VERIFIER, kind="passcode"),
    ],
)
def test_hostile_retired_values_are_refused(value: str) -> None:
    with pytest.raises(ValueError):
        load_retired(value)


@pytest.mark.parametrize(
    "value",
    [
        "{}",
        _with(_GOOD_STALE, cred="guess"),
        _with(_GOOD_STALE, ref="../../etc"),
        _with(_GOOD_STALE, label="\x1b[31mred"),
        _with(_GOOD_STALE, label=" padded "),
        _with(_GOOD_STALE, addr="192.0.2.7\nInjected: yes"),
        _with(_GOOD_STALE, svc="IMAP"),
        _with(_GOOD_STALE, told="yes"),
        _with(_GOOD_STALE, gone=1),
        _with(_GOOD_STALE, last=1 << 41),
        _with(_GOOD_STALE, secret="hunter2"),
    ],
)
def test_hostile_stale_values_are_refused(value: str) -> None:
    with pytest.raises(ValueError):
        StaleClient.load(value)


@given(st.text(max_size=300))
def test_arbitrary_text_is_refused_or_round_trips(text: str) -> None:
    for load in (load_retired, StaleClient.load):
        try:
            record = load(text)
        except ValueError:
            continue
        assert record.dump() == text
