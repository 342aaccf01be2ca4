"""Zimbra's stored two-step values, decoded against values worked out by hand (with the
openssl command line: AES-128-ECB under MD5(salt || zimbraId)), not only against our own
reading of the format; and an export with classes of service, read end to end."""

from __future__ import annotations

import base64
import hashlib
import subprocess

import pytest

from pam_twostep.core.candidate import Candidate, Problem
from pam_twostep.core.totp import Algorithm
from pam_twostep.migrate.zimbra import COS_SETTINGS, decrypt, read

ACCOUNT_ID = "2f6b5f57-0e6d-4f0b-9a34-6c0e3a1f0a11"
SALT = bytes(range(16))
# openssl enc -aes-128-ecb -K $(md5 of SALT||ACCOUNT_ID) -nosalt, version byte and salt in
# front, base64: worked out once, recorded here.
SEALED_SECRET = (
    "AQABAgMEBQYHCAkKCwwNDg8WCP2QcYNkjfqUdhlrIyBRFgj9kHGDZI36lHYZayMgUcNiXXFfpFRnVehtLXz1"
    "3c56OIXgWhxH+r92ogI/pLQ7"
)
SEALED_CODES = "AQABAgMEBQYHCAkKCwwNDg/406KjriQjjJw5GdPP6yg3igD7NRIMN2557hvZiVaCaQ=="
SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
APP_PASSWORD = "d2:dci1420113600000e1:n11:Thunderbird1:p18:{SSHA512}abcdefghie"


def test_hand_worked_values_decode() -> None:
    assert decrypt(ACCOUNT_ID, SEALED_SECRET) == f"{SECRET}|20150101120000Z"
    assert decrypt(ACCOUNT_ID, SEALED_CODES) == "QWERTYUI,ASDFGHJK,ZXCVBNM2"


def test_the_key_is_md5_of_salt_and_account_id() -> None:
    key = hashlib.md5(SALT + ACCOUNT_ID.encode()).hexdigest()
    assert key == "f1144ce76f7649ce96158a6122e1131b"
    raw = base64.b64decode(SEALED_CODES)
    assert raw[0] == 1 and raw[1:17] == SALT
    opened = subprocess.run(
        ["openssl", "enc", "-d", "-aes-128-ecb", "-K", key, "-nosalt"],
        input=raw[17:],
        capture_output=True,
        check=True,
    ).stdout
    assert opened == b"QWERTYUI,ASDFGHJK,ZXCVBNM2"


@pytest.mark.parametrize(
    "value",
    [
        "",
        "not base64!",
        base64.b64encode(b"\x02" + SALT + b"x" * 16).decode(),  # another version
        base64.b64encode(b"\x01" + SALT + b"x" * 15).decode(),  # not whole blocks
        base64.b64encode(b"\x01" + SALT).decode(),  # nothing sealed
    ],
)
def test_what_is_not_a_sealed_value(value: str) -> None:
    with pytest.raises(ValueError):
        decrypt(ACCOUNT_ID, value)


def test_another_account_id_does_not_open_it() -> None:
    with pytest.raises(ValueError, match="does not open"):
        decrypt("00000000-0000-0000-0000-000000000000", SEALED_CODES)


EXPORT = f"""version: 1

dn: cn=config,cn=zimbra
objectClass: zimbraGlobalConfig
zimbraTwoFactorAuthHashAlgorithm: SHA1
zimbraTwoFactorCodeLength: 6
zimbraTwoFactorTimeWindowLength: 30s
zimbraTwoFactorTimeWindowOffset: 1

dn: cn=staff,cn=cos,cn=zimbra
objectClass: zimbraCOS
cn: staff
zimbraId: cos-staff-id
zimbraFeatureTwoFactorAuthAvailable: TRUE
zimbraFeatureTwoFactorAuthRequired: TRUE
zimbraTwoFactorAuthNumScratchCodes: 8
zimbraFeatureTrustedDevicesEnabled: FALSE
zimbraTwoFactorAuthTrustedDeviceTokenLifetime: 7d
zimbraMaxAppSpecificPasswords: 5
zimbraAppSpecificPasswordDuration: 0
zimbraPasswordLockoutDuration: 1h
zimbraTwoFactorAuthLockoutMaxFailures: banana

dn: uid=alice,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
objectClass: zimbraAccount
uid: alice
mail: alice@example.org
zimbraId: {ACCOUNT_ID}
zimbraCOSId: cos-staff-id
zimbraTwoFactorAuthEnabled: TRUE
zimbraTwoFactorAuthSecret: {SEALED_SECRET}
zimbraTwoFactorAuthScratchCodes: {SEALED_CODES}
zimbraAppSpecificPassword: {APP_PASSWORD}
zimbraTwoFactorAuthTrustedDevices: token1
zimbraTwoFactorAuthTrustedDevices: token2

dn: uid=bob,ou=people,dc=example,dc=org
objectClass: zimbraAccount
uid: bob
zimbraId: bob-id
zimbraTwoFactorAuthEnabled: FALSE

dn: uid=carol,ou=people,dc=example,dc=org
objectClass: zimbraAccount
uid: carol
zimbraId: carol-id
zimbraTwoFactorAuthEnabled: TRUE
zimbraTwoFactorAuthSecret: {SEALED_SECRET}

dn: uid=dave,ou=people,dc=example,dc=org
objectClass: zimbraAccount
uid: dave
zimbraId: {ACCOUNT_ID}
zimbraTwoFactorAuthEnabled: TRUE
zimbraTwoFactorAuthSecret: {SEALED_SECRET}
zimbraAppSpecificPassword: d2:n3:abc

dn: uid=alice,ou=elsewhere,dc=example,dc=org
objectClass: zimbraAccount
uid: alice
zimbraId: {ACCOUNT_ID}
zimbraTwoFactorAuthEnabled: TRUE
zimbraTwoFactorAuthSecret: {SEALED_SECRET}

dn: uid=erin,ou=people,dc=example,dc=org
objectClass: zimbraAccount
uid erin
"""


def test_an_export_read_end_to_end() -> None:
    found = read(EXPORT, "uid")
    (staff,) = found.policies
    assert staff.name == "staff"
    assert staff.settings == {
        "available": True,
        "required": True,
        "backup_codes": 8,
        "trusted_devices": False,
        "device_lifetime": 7 * 86400,
        "passcode_limit": 5,
        "passcode_lifetime": 0,
        "lockout_duration": 3600,
    }
    assert any("banana" in note for note in staff.notes)
    (alice,) = [c for c in found.candidates if isinstance(c, Candidate)]
    assert alice.secret_base32 == SECRET and alice.params.algorithm is Algorithm.SHA1
    assert alice.backup_codes == ("QWERTYUI", "ASDFGHJK", "ZXCVBNM2")
    assert alice.policy == "staff"
    assert [p.label for p in alice.legacy_passcodes] == ["Thunderbird"]
    assert alice.legacy_passcodes[0].created == 1420113600
    assert any("'Thunderbird' must be issued anew" in n for n in alice.notes)
    assert any("2 trusted devices not carried" in n for n in alice.notes)
    problems = {item.match: item.why for item in found.candidates if isinstance(item, Problem)}
    assert "off in Zimbra" in problems["bob"]
    assert "does not open" in problems["carol"]  # sealed for another account id
    assert "zimbraAppSpecificPassword: not bencoded" in problems["dave"]
    assert "appears twice" in problems["alice"]
    assert any("not 'attribute: value'" in why for why in problems.values())


def test_every_mapped_setting_is_a_policy_setting() -> None:
    from pam_twostep.core.policy import Policy

    assert {setting for setting, _ in COS_SETTINGS.values()} <= set(Policy.__dataclass_fields__)


def test_matching_by_mail() -> None:
    found = read(EXPORT, "mail")
    assert any(
        isinstance(c, Candidate) and c.match == "alice@example.org" for c in found.candidates
    )
