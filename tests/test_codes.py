"""Generated codes: alphabet, entropy, grouping, normalisation and classification."""

from __future__ import annotations

import math
import secrets

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pam_twostep.core.codes import (
    ALPHABET,
    BACKUP_CODE_LENGTH,
    PASSCODE_LENGTH,
    CodeKind,
    classify,
    group,
    is_id,
    new_backup_code,
    new_device_token,
    new_id,
    new_passcode,
    normalize,
    split_device_token,
)


def test_alphabet_has_32_unambiguous_symbols() -> None:
    assert len(set(ALPHABET)) == 32
    assert not set("01IO") & set(ALPHABET)


def test_entropy_is_as_documented() -> None:
    bits = math.log2(len(ALPHABET))
    assert bits * PASSCODE_LENGTH >= 112  # NIST: a fast hash suffices from 112 bits up
    assert bits * PASSCODE_LENGTH > 75  # Zimbra's 16 letters
    assert bits * BACKUP_CODE_LENGTH >= 20


def test_every_symbol_is_equally_likely() -> None:
    """Each byte is masked to 5 bits: 256 is a multiple of 32, so no symbol is favoured."""
    counts = dict.fromkeys(ALPHABET, 0)
    for byte in range(256):
        counts[ALPHABET[byte & 31]] += 1
    assert set(counts.values()) == {8}


def test_generated_codes_have_their_kind() -> None:
    for _ in range(200):
        assert classify(new_backup_code(secrets.token_bytes), 6) is CodeKind.BACKUP_CODE
        assert classify(new_passcode(secrets.token_bytes), 6) is CodeKind.PASSCODE
        assert is_id(new_id(secrets.token_bytes))


@given(st.sampled_from([BACKUP_CODE_LENGTH, PASSCODE_LENGTH]), st.data())
def test_typing_variations_normalize_to_the_code(length: int, data: st.DataObject) -> None:
    code = data.draw(st.text(alphabet=ALPHABET, min_size=length, max_size=length))
    size = data.draw(st.integers(min_value=1, max_value=8))
    separator = data.draw(st.sampled_from(["-", " ", "  ", "\t", " - "]))
    typed = group(code, size, separator)
    typed = data.draw(st.sampled_from([typed, typed.lower(), f"  {typed} "]))
    assert normalize(typed) == code


@pytest.mark.parametrize(
    ("text", "digits", "kind"),
    [
        ("123456", 6, CodeKind.TOTP),
        ("12345678", 8, CodeKind.TOTP),
        ("12345678", 6, CodeKind.BACKUP_CODE),  # google-authenticator's scratch codes
        ("ABCDEFGHJK", 6, CodeKind.BACKUP_CODE),
        ("ABCDEFGHJO", 6, CodeKind.BACKUP_CODE),  # not ours (O), but maybe imported
        ("ABCDE", 6, CodeKind.OTHER),
        ("A" * 17, 6, CodeKind.OTHER),
        ("ABCDE!GHJK", 6, CodeKind.OTHER),
        ("A" * PASSCODE_LENGTH, 6, CodeKind.PASSCODE),
        ("A" * 23, 6, CodeKind.OTHER),
        ("", 6, CodeKind.OTHER),
        ("١٢٣٤٥٦", 6, CodeKind.OTHER),  # Arabic-Indic digits are digits to Python
        ("ß" * 5, 6, CodeKind.OTHER),
    ],
)
def test_classify(text: str, digits: int, kind: CodeKind) -> None:
    assert classify(normalize(text), digits) is kind


def test_group() -> None:
    assert group("ABCDEFGHJK", 5) == "ABCDE-FGHJK"
    assert group("ABCDEFGH", 4, " ") == "ABCD EFGH"


def test_device_tokens_split_into_id_and_token() -> None:
    device_id = new_id(secrets.token_bytes)
    token = new_device_token(secrets.token_bytes, device_id)
    assert split_device_token(token) == (device_id, token)
    assert len(token.split(".")[1]) == 43  # 256 bits


@pytest.mark.parametrize(
    "token",
    [
        "",
        "abc",
        "abcdefgh",
        "abcdefgh.",
        "ABCDEFGH." + "a" * 43,
        "abcdefgh." + "a" * 42,
        "abcdefgh." + "a" * 43 + "\n",
        "abcdefgi." + "a" * 43,
        "x" * 10_000,
    ],
)
def test_malformed_device_tokens_are_refused(token: str) -> None:
    assert split_device_token(token) is None
