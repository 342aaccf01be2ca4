"""Policy: one set of defaults, three layers, one resolving function."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pam_twostep.core.errors import CorruptEntry
from pam_twostep.core.policy import (
    POLICY_ATTRIBUTES,
    Policy,
    overrides_from_ldap,
    overrides_from_mapping,
    overrides_from_strings,
    policy_to_ldap,
    resolve_policy,
)


def test_every_setting_has_an_attribute() -> None:
    assert len(POLICY_ATTRIBUTES) == len(dataclasses.fields(Policy))
    assert all(name.startswith("twostep") for name in POLICY_ATTRIBUTES)


def test_defaults() -> None:
    policy = resolve_policy()
    assert policy == Policy()
    assert (policy.backup_codes, policy.passcode_limit, policy.device_lifetime) == (10, 25, 2592000)
    assert (policy.lockout_max_failures, policy.totp_window) == (100, 1)
    assert (policy.throttle_failures, policy.throttle_delay) == (5, 30)
    assert policy.throttle_source_failures == 50


def test_later_layers_win() -> None:
    site = overrides_from_mapping({"backup_codes": 8, "passcode_limit": 5})
    cos = overrides_from_ldap({"twostepBackupCodeCount": (b"12",), "cn": (b"staff",)})
    account = overrides_from_ldap({"twostepbackupcodecount": (b"20",)})
    policy = resolve_policy(site, cos, account)
    assert policy.backup_codes == 20
    assert policy.passcode_limit == 5


def test_mapping_accepts_durations() -> None:
    assert overrides_from_mapping({"device_lifetime": "7d"}) == {"device_lifetime": 604800}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"backup_code": 3}, "backup_code: unknown policy setting"),
        ({"backup_codes": "3"}, "backup_codes: must be a whole number"),
        ({"backup_codes": True}, "backup_codes: must be a whole number"),
        ({"backup_codes": 51}, "backup_codes: must be between 0 and 50"),
        ({"required": "yes"}, "required: must be true or false"),
        ({"lockout_max_failures": 0}, "lockout_max_failures: must be between 1 and 100"),
        ({"lockout_max_failures": 101}, "between 1 and 100"),
        ({"device_lifetime": "1y"}, "device_lifetime: '1y' is not a duration"),
        ({"totp_window": 3}, "totp_window: must be between 0 and 2"),
        ({"required_from": "soon"}, "required_from: must be a date"),
        ({"mail_password_until": 5}, "mail_password_until: must be a date between"),
    ],
)
def test_mapping_errors_name_the_key(values: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        overrides_from_mapping(values)


@pytest.mark.parametrize(
    ("attributes", "attribute"),
    [
        ({"twostepRequired": (b"yes",)}, "twostepRequired"),
        ({"twostepRequired": (b"TRUE", b"FALSE")}, "twostepRequired"),
        ({"twostepPasscodeLimit": (b"-1",)}, "twostepPasscodeLimit"),
        ({"twostepPasscodeLimit": (b"1e3",)}, "twostepPasscodeLimit"),
        ({"twostepPasscodeLimit": (b"\xff",)}, "twostepPasscodeLimit"),
        ({"twostepLockoutWindow": (b"9" * 40,)}, "twostepLockoutWindow"),
        ({"twostepRequiredFrom": (b"2027-01-15",)}, "twostepRequiredFrom"),
        ({"twostepRequiredFrom": (b"19991231000000Z",)}, "twostepRequiredFrom"),
        ({"twostepMailPasswordUntil": (b"20270230000000Z",)}, "twostepMailPasswordUntil"),
        ({"twostepMailPasswordUntil": (b"\xff",)}, "twostepMailPasswordUntil"),
    ],
)
def test_bad_ldap_values_make_the_entry_corrupt(
    attributes: dict[str, tuple[bytes, ...]], attribute: str
) -> None:
    with pytest.raises(CorruptEntry) as caught:
        overrides_from_ldap(attributes)
    assert caught.value.attribute == attribute


@given(
    st.fixed_dictionaries(
        {},
        optional={
            "available": st.booleans(),
            "required": st.booleans(),
            "backup_codes": st.integers(0, 50),
            "passcode_limit": st.integers(0, 100),
            "device_lifetime": st.integers(60, 400 * 86400),
            "lockout_duration": st.integers(0, 30 * 86400),
            "throttle_failures": st.integers(1, 100),
            "throttle_delay": st.integers(1, 86400),
            "throttle_source_failures": st.integers(0, 100),
            "totp_window": st.integers(0, 2),
            "mail_password": st.booleans(),
            "required_from": st.integers(946684800, 253402300799),
            "mail_password_until": st.integers(946684800, 253402300799),
        },
    )
)
def test_ldap_round_trip(values: dict[str, bool | int]) -> None:
    encoded = {name: (value.encode(),) for name, value in policy_to_ldap(values).items()}
    assert overrides_from_ldap(encoded) == values


def test_throttle_settings_are_bounded() -> None:
    """NIST SP 800-63B allows at most 100 failures; a throttle can be slowed, not removed."""
    for key, bad in (
        ("throttle_failures", 0),
        ("throttle_failures", 101),
        ("throttle_delay", 0),
        ("throttle_delay", "2d"),
        ("throttle_source_failures", -1),
        ("throttle_source_failures", 101),
    ):
        with pytest.raises(ValueError, match=f"^{key}: must be between"):
            overrides_from_mapping({key: bad})
    assert overrides_from_strings({"throttle_delay": "1m", "throttle_failures": "3"}) == {
        "throttle_delay": 60,
        "throttle_failures": 3,
    }
    assert policy_to_ldap({"throttle_source_failures": 20}) == {
        "twostepThrottleSourceFailures": "20"
    }
