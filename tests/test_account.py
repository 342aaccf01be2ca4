"""Reading an entry's two-step state: strict, and failing for that user alone."""

from __future__ import annotations

import pytest

from pam_twostep.core.account import Attr, RawEntry, format_time, parse_account, password_stamp
from pam_twostep.core.errors import CorruptEntry
from pam_twostep.core.records import Device, Passcode
from pam_twostep.core.totp import Algorithm, TotpParams

UUID = b"3f2504e0-4f89-11d3-9a0c-0305e82c3301"
PASSCODE = (
    Passcode(
        id="abcdefgh",
        label="Phone",
        digest="A" * 43,
        created=1,
        expires=0,
        services=(),
        stamp="0" * 32,
    )
    .dump()
    .encode()
)
DEVICE = (
    Device(id="abcdefgh", label="Laptop", digest="B" * 43, created=1, expires=99, stamp="0" * 32)
    .dump()
    .encode()
)


def entry(**values: tuple[bytes, ...]) -> RawEntry:
    attributes = {
        "entryuuid": (UUID,),
        "uid": (b"alice",),
        "userpassword": (b"{SSHA}x",),
        "objectclass": (b"inetOrgPerson", b"twostepAccount"),
    }
    attributes.update({k.lower(): v for k, v in values.items()})
    return RawEntry("uid=alice,dc=example,dc=org", attributes)


def test_plain_entry() -> None:
    state = parse_account(entry(), "ALICE", "uid")
    assert state.username == "alice"  # canonical spelling from the directory
    assert not state.enabled
    assert state.has_class
    assert state.stamp == password_stamp(UUID.decode(), [b"{SSHA}x"])


def test_enabled_entry() -> None:
    state = parse_account(
        entry(
            **{
                Attr.ENABLED: (b"TRUE",),
                Attr.SECRET: (b"aes256gcm:k1:x:y",),
                Attr.ALGORITHM: (b"SHA256",),
                Attr.DIGITS: (b"8",),
                Attr.LAST_STEP: (b"123",),
                Attr.PASSCODE: (PASSCODE,),
                Attr.DEVICE: (DEVICE,),
                Attr.LOCKED_AT: (format_time(1_800_000_000).encode(),),
                "twostepBackupCodeCount": (b"4",),
            }
        ),
        "alice",
        "uid",
    )
    assert state.enabled
    assert state.params == TotpParams(Algorithm.SHA256, 8, 30)
    assert state.last_step == 123
    assert state.passcodes[0].label == "Phone"
    assert state.devices[0].label == "Laptop"
    assert state.locked_at == 1_800_000_000
    assert state.overrides == {"backup_codes": 4}


def test_password_stamp_follows_the_password() -> None:
    one = password_stamp("u", [b"{SSHA}a"])
    assert one == password_stamp("u", [b"{SSHA}a"])
    assert one != password_stamp("u", [b"{SSHA}b"])
    assert one != password_stamp("v", [b"{SSHA}a"])
    assert password_stamp("u", [b"a", b"b"]) == password_stamp("u", [b"b", b"a"])
    assert password_stamp("u", [b"ab"]) != password_stamp("u", [b"a", b"b"])


@pytest.mark.parametrize(
    ("values", "attribute"),
    [
        ({"entryUUID": ()}, "entryUUID"),
        ({Attr.ENABLED: (b"yes",)}, Attr.ENABLED),
        ({Attr.ENABLED: (b"TRUE",)}, Attr.SECRET),
        ({Attr.ENABLED: (b"TRUE", b"FALSE")}, Attr.ENABLED),
        ({Attr.SECRET: (b"s",), Attr.ALGORITHM: (b"MD5",)}, Attr.ALGORITHM),
        ({Attr.SECRET: (b"s",), Attr.DIGITS: (b"9",)}, Attr.DIGITS),
        ({Attr.SECRET: (b"s",), Attr.PERIOD: (b"abc",)}, Attr.PERIOD),
        ({Attr.SECRET: (b"\xff",)}, Attr.SECRET),
        ({Attr.LAST_STEP: (b"-1",)}, Attr.LAST_STEP),
        ({Attr.LAST_STEP: (b"9" * 30,)}, Attr.LAST_STEP),
        ({Attr.PENDING: (b"{}",)}, Attr.PENDING),
        ({Attr.BACKUP_CODE: (b"plaintext",)}, Attr.BACKUP_CODE),
        ({Attr.BACKUP_CODE: (b"$argon2id$x",) * 101}, Attr.BACKUP_CODE),
        ({Attr.PASSCODE: (b"not json",)}, Attr.PASSCODE),
        ({Attr.PASSCODE: (PASSCODE.replace(b'","', b'", "', 1),)}, Attr.PASSCODE),
        ({Attr.DEVICE: (PASSCODE,)}, Attr.DEVICE),
        ({Attr.USAGE: (b"{}",)}, Attr.USAGE),
        ({Attr.FAILURE: (b"[]",)}, Attr.FAILURE),
        ({Attr.LOCKED_AT: (b"yesterday",)}, Attr.LOCKED_AT),
        ({Attr.POLICY: (b"cn=a", b"cn=b")}, Attr.POLICY),
        ({"twostepRequired": (b"maybe",)}, "twostepRequired"),
        ({"uid": (b"\xff",)}, "uid"),
    ],
)
def test_corrupt_values_name_their_attribute(
    values: dict[str, tuple[bytes, ...]], attribute: str
) -> None:
    with pytest.raises(CorruptEntry) as caught:
        parse_account(entry(**values), "alice", "uid")
    assert caught.value.attribute == attribute
    assert "{SSHA}" not in str(caught.value)


def test_stale_client_records_are_read_leniently() -> None:
    """They decide no outcome: damage there must not lock the owner out."""
    from pam_twostep.core.stale_records import StaleClient

    good = StaleClient(
        "abcdefgh", "passcode", "abcdefgh", "Phone", 0, "192.0.2.7", "imap", 1, 2, False, False
    ).dump()
    hostile = (b"not json", b"\xff\xfe", b'{"id": "abcdefgh"}', good.replace(",", ", ").encode())
    state = parse_account(
        entry(twostepStaleClient=(*hostile, good.encode()) * 60, twostepRetired=hostile),
        "alice",
        "uid",
    )
    assert state.retired == ()
    assert 1 <= len(state.stale_clients) <= 100 and state.stale_clients[0].label == "Phone"


def test_damaged_stale_values_are_left_out_and_offered_for_deletion() -> None:
    unhashable = b'{"h":"x","id":"x","kind":"passcode","label":"x","t":1,"why":[]}'
    cred = b'{"addr":"","cred":[],"first":1,"gone":false,"id":"abcdefgh","label":"",'
    state = parse_account(
        entry(twostepRetired=(unhashable, b"\xff"), twostepStaleClient=(cred + b"}",)),
        "alice",
        "uid",
    )
    assert state.retired == () and state.stale_clients == ()
    assert state.unreadable[Attr.RETIRED] == (unhashable.decode(),)  # not b"\xff": unnameable
    assert len(state.unreadable[Attr.STALE_CLIENT]) == 1
