"""Stored values: exact round trips, and refusal of anything the writers do not produce."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pam_twostep.core.records import (
    Device,
    Failure,
    Passcode,
    Pending,
    Usage,
    check_label,
    check_service_name,
)
from pam_twostep.core.totp import Algorithm, TotpParams

ids = st.text(alphabet="23456789abcdefghjklmnpqrstuvwxyz", min_size=8, max_size=8)
digests = st.text(alphabet="ABCabc019_-", min_size=43, max_size=43)
stamps = st.text(alphabet="0123456789abcdef", min_size=32, max_size=32)
times = st.integers(min_value=0, max_value=(1 << 40) - 1)
labels = st.text(min_size=1, max_size=64).filter(lambda s: s.isprintable() and s == s.strip())
services = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,31}", fullmatch=True)
addresses = st.one_of(st.ip_addresses().map(str), st.just(""))

passcodes = st.builds(
    Passcode,
    id=ids,
    label=labels,
    digest=digests,
    created=times,
    expires=times,
    services=st.lists(services, max_size=5).map(tuple),
    stamp=stamps,
)
devices = st.builds(
    Device, id=ids, label=labels, digest=digests, created=times, expires=times, stamp=stamps
)
usages = st.builds(Usage, id=ids, time=times, address=addresses)
failures = st.builds(
    Failure,
    time=times,
    nonce=st.from_regex(r"[0-9a-f]{16}", fullmatch=True),
    kind=st.sampled_from(["password", "code", "passcode"]),
    service=services,
    address=addresses,
)
pendings = st.builds(
    Pending,
    sealed=st.text(alphabet="abc:019_-", max_size=200),
    params=st.builds(
        TotpParams,
        st.sampled_from(list(Algorithm)),
        st.sampled_from([6, 7, 8]),
        st.integers(15, 300),
    ),
    created=times,
    expires=times,
)


@pytest.mark.parametrize("strategy", [passcodes, devices, usages, failures, pendings])
@given(data=st.data())
def test_round_trip_is_exact(strategy: st.SearchStrategy[object], data: st.DataObject) -> None:
    record = data.draw(strategy)
    text = record.dump()  # type: ignore[attr-defined]
    assert text.isascii()
    assert type(record).load(text) == record  # type: ignore[attr-defined]
    assert type(record).load(text).dump() == text  # type: ignore[attr-defined]


GOOD_PASSCODE = Passcode(
    id="abcdefgh",
    label="Phone",
    digest="A" * 43,
    created=1,
    expires=0,
    services=("imap",),
    stamp="0" * 32,
)


def mutated(**changes: object) -> str:
    data = json.loads(GOOD_PASSCODE.dump())
    for key, value in changes.items():
        if value is KeyError:
            del data[key]
        else:
            data[key] = value
    return json.dumps(data)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "null",
        "[]",
        "{",
        '"x"',
        "1",
        "{}" + " " * 3000,
        mutated(id="ABCDEFGH"),
        mutated(id=1),
        mutated(label=""),
        mutated(label="a\nb"),
        mutated(label=" padded"),
        mutated(label="x" * 65),
        mutated(h="short"),
        mutated(created=-1),
        mutated(created=True),
        mutated(created=1.5),
        mutated(expires=1 << 41),
        mutated(services="imap"),
        mutated(services=["IMAP"]),
        mutated(services=[1]),
        mutated(services=["imap"] * 17),
        mutated(pw="z" * 32),
        mutated(extra=1),
        mutated(label=KeyError),
        "[" * 100_000,
    ],
)
def test_hostile_values_are_refused(value: str) -> None:
    with pytest.raises(ValueError):
        Passcode.load(value)


def test_passcode_scope() -> None:
    assert GOOD_PASSCODE.allows("imap")
    assert not GOOD_PASSCODE.allows("smtp")
    assert Passcode.load(mutated(services=[])).allows("smtp")


@pytest.mark.parametrize("label", ["", " x", "x ", "a\tb", "\x00", "x" * 65])
def test_check_label(label: str) -> None:
    with pytest.raises(ValueError):
        check_label(label)


@pytest.mark.parametrize("name", ["", "IMAP", "-imap", "im ap", "x" * 33, "imap\n"])
def test_check_service_name(name: str) -> None:
    with pytest.raises(ValueError):
        check_service_name(name)


def test_pending_refuses_bad_parameters() -> None:
    good = json.loads(Pending("s", TotpParams(), 1, 2).dump())
    for key, value in (("alg", "MD5"), ("digits", 5), ("period", "30"), ("digits", True)):
        bad = dict(good, **{key: value})
        with pytest.raises(ValueError):
            Pending.load(json.dumps(bad, sort_keys=True, separators=(",", ":")))
