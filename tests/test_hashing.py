"""Stored forms of backup codes, passcodes and device tokens."""

from __future__ import annotations

import os

from pam_twostep.core import hashing
from pam_twostep.core.hashing import (
    digest_matches,
    fast_digest,
    hash_backup_code,
    plausible_backup_hash,
    verify_backup_codes,
)


def test_backup_codes_are_salted_argon2id() -> None:
    first = hash_backup_code("ABCDEFGHJK", os.urandom(16))
    second = hash_backup_code("ABCDEFGHJK", os.urandom(16))
    assert first.startswith("$argon2id$")
    assert first != second
    assert "ABCDEFGHJK" not in first


def test_verify_finds_the_matching_hash() -> None:
    hashes = [hash_backup_code(code, os.urandom(16)) for code in ("AAAAAAAAAA", "BBBBBBBBBB")]
    assert verify_backup_codes(hashes, "BBBBBBBBBB") == 1
    assert verify_backup_codes(hashes, "CCCCCCCCCC") is None
    assert verify_backup_codes([], "AAAAAAAAAA") is None


def test_verify_tries_every_hash(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """No early exit: a right code costs as much as a wrong one."""
    hashes = [hash_backup_code(code, os.urandom(16)) for code in ("AAAAAAAAAA", "BBBBBBBBBB")]
    calls = []
    real = hashing.low_level.verify_secret

    def counting(*args):  # type: ignore[no-untyped-def]
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(hashing.low_level, "verify_secret", counting)
    verify_backup_codes(hashes, "AAAAAAAAAA")
    right = len(calls)
    calls.clear()
    verify_backup_codes(hashes, "ZZZZZZZZZZ")
    assert right == len(calls) == 2


def test_invalid_stored_hashes_never_match() -> None:
    assert verify_backup_codes(["$argon2id$garbage", "", "\x00"], "AAAAAAAAAA") is None


def test_fast_digest_is_domain_separated() -> None:
    assert fast_digest("passcode", "X") != fast_digest("device", "X")
    assert len(fast_digest("passcode", "X")) == 43
    assert digest_matches(fast_digest("passcode", "X"), fast_digest("passcode", "X"))
    assert not digest_matches(fast_digest("passcode", "X"), fast_digest("passcode", "Y"))
    assert not digest_matches("é", fast_digest("passcode", "Y"))


def _with_cost(encoded: str, cost: str) -> str:
    parts = encoded.split("$")
    parts[3] = cost
    return "$".join(parts)


def test_stored_hashes_cannot_ask_for_an_unbounded_cost() -> None:
    # found by tests/fuzz: a value naming m=8198192 KiB made the verifier allocate 8 GiB
    ours = hash_backup_code("AAAAAAAAAA", os.urandom(16))
    assert plausible_backup_hash(ours)
    for cost in ("m=8198192,t=2,p=1", "m=8192,t=99,p=1", "m=8192,t=2,p=16", "m=1,t=2,p=1"):
        hostile = _with_cost(ours, cost)
        assert not plausible_backup_hash(hostile)
        assert verify_backup_codes([hostile], "AAAAAAAAAA") is None
    assert plausible_backup_hash(_with_cost(ours, "m=65536,t=3,p=4"))  # a stronger future
    for broken in ("", "$argon2i$v=19$m=8192,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaGhhc2g"):
        assert not plausible_backup_hash(broken)
