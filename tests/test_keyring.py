"""Sealing TOTP secrets: round trips, binding to the entry, rotation, key files."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pam_twostep.core.errors import ConfigError, KeyUnavailable
from pam_twostep.core.keyring import Keyring
from pam_twostep.keyfiles import load_keyring, write_key_file

K1 = bytes(range(32))
K2 = bytes(range(1, 33))
NONCE = bytes(12)


@given(st.binary(max_size=64), st.binary(max_size=40))
def test_round_trip(plaintext: bytes, context: bytes) -> None:
    ring = Keyring({"k1": K1}, "k1")
    sealed = ring.seal(plaintext, context=context, nonce=NONCE)
    assert ring.open(sealed, context=context) == plaintext


def test_value_is_bound_to_its_entry() -> None:
    ring = Keyring({"k1": K1}, "k1")
    sealed = ring.seal(b"secret", context=b"uuid-a", nonce=NONCE)
    with pytest.raises(ValueError, match="does not decrypt"):
        ring.open(sealed, context=b"uuid-b")


def test_tampering_is_detected() -> None:
    ring = Keyring({"k1": K1}, "k1")
    sealed = ring.seal(b"secret", context=b"u", nonce=NONCE)
    scheme, key_id, nonce, body = sealed.split(":")
    flipped = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1]
    with pytest.raises(ValueError):
        ring.open(":".join((scheme, key_id, nonce, flipped)), context=b"u")


def test_rotation_keeps_old_values_readable() -> None:
    old = Keyring({"k1": K1}, "k1").seal(b"secret", context=b"u", nonce=NONCE)
    rotated = Keyring({"k1": K1, "k2": K2}, "k2")
    assert rotated.open(old, context=b"u") == b"secret"
    assert rotated.key_of(old) == "k1"
    assert rotated.key_of(rotated.seal(b"x", context=b"u", nonce=NONCE)) == "k2"


def test_value_sealed_with_an_unloaded_key() -> None:
    sealed = Keyring({"k1": K1}, "k1").seal(b"secret", context=b"u", nonce=NONCE)
    with pytest.raises(KeyUnavailable):
        Keyring({"k2": K2}, "k2").open(sealed, context=b"u")


@pytest.mark.parametrize(
    "value",
    [
        "",
        "aes256gcm",
        "aes256gcm:k1:AAAA",
        "rot13:k1:AAAAAAAAAAAAAAAA:AAAA",
        "aes256gcm:k1:!!!:AAAA",
        "aes256gcm:k/1:AAAAAAAAAAAAAAAA:AAAAAAAAAAAAAAAAAAAAAA",
        "aes256gcm:k1:AAAA:AAAAAAAAAAAAAAAAAAAAAA",
        "x" * 5000,
        "aes256gcm:k1:AAAAAAAAAAAAAAAA:AAAA",
    ],
)
def test_malformed_values(value: str) -> None:
    with pytest.raises(ValueError):
        Keyring({"k1": K1}, "k1").open(value, context=b"u")


def test_keyring_checks() -> None:
    with pytest.raises(ConfigError, match="current"):
        Keyring({"k1": K1}, "k2")
    with pytest.raises(ConfigError, match="32 bytes"):
        Keyring({"k1": b"short"}, "k1")
    with pytest.raises(ConfigError, match="key id"):
        Keyring({"k:1": K1}, "k:1")


def test_load_key_directory(tmp_path: Path) -> None:
    write_key_file(tmp_path / "k1.key", K1)
    write_key_file(tmp_path / "k2.key", K2)
    (tmp_path / "README").write_text("not a key")
    ring = load_keyring(tmp_path, "k2")
    assert ring.key_ids == {"k1", "k2"}
    assert stat.S_IMODE(os.stat(tmp_path / "k1.key").st_mode) == 0o600


def test_write_key_file_never_overwrites(tmp_path: Path) -> None:
    write_key_file(tmp_path / "k1.key", K1)
    with pytest.raises(FileExistsError):
        write_key_file(tmp_path / "k1.key", K2)


def test_load_refuses_world_readable_key(tmp_path: Path) -> None:
    write_key_file(tmp_path / "k1.key", K1)
    os.chmod(tmp_path / "k1.key", 0o644)
    with pytest.raises(ConfigError, match=r"k1\.key.*everyone"):
        load_keyring(tmp_path, "k1")


@pytest.mark.parametrize(
    ("content", "message"), [("not base64!", "not base64"), ("c2hvcnQ=", "32 bytes")]
)
def test_load_refuses_malformed_key(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "k1.key"
    path.write_text(content)
    os.chmod(path, 0o600)
    with pytest.raises(ConfigError, match=message):
        load_keyring(tmp_path, "k1")


def test_load_needs_keys(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no \*\.key"):
        load_keyring(tmp_path, "k1")
    with pytest.raises(ConfigError, match=r"keys\.directory"):
        load_keyring(tmp_path / "missing", "k1")


def test_nonce_must_be_96_bits() -> None:
    with pytest.raises(ValueError):
        Keyring({"k1": K1}, "k1").seal(b"x", context=b"u", nonce=secrets.token_bytes(8))


def test_mac_is_per_key_and_apart_from_sealing() -> None:
    keys = Keyring({"a": bytes(32), "b": bytes(range(32))}, "a")
    made = keys.mac(b"message")
    assert made is not None and made[0] == "a" and len(made[1]) == 32
    other = keys.mac(b"message", "b")
    assert other is not None and other[1] != made[1]
    assert keys.mac(b"message", "gone") is None
    assert made[1] != hmac.new(bytes(32), b"message", hashlib.sha256).digest()
