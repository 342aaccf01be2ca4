"""The sentence an owner reads about a stale client, from a reply's fields."""

from __future__ import annotations

import pytest

from pam_twostep.staletext import describe, stale_fields

LAST = 1_800_000_000  # 2027-01-15 08:00 UTC


@pytest.mark.parametrize(
    ("kind", "label", "since", "expected"),
    [
        ("passcode", "Thunderbird", 0, "still uses the revoked passcode 'Thunderbird', last tried"),
        ("old-password", "", LAST - 86400, "still uses the password from before 2027-01-14"),
        ("old-password", "", 0, "still uses a password that has since been changed"),
        ("password", "", 0, "still uses your account password, last tried 2027-01-15 08:00 UTC."),
    ],
)
def test_describe(kind: str, label: str, since: int, expected: str) -> None:
    fields = stale_fields(
        kind=kind,
        label=label,
        address="192.0.2.7",
        service="imap",
        since=since,
        first=LAST,
        last=LAST,
        stale_id="abcdefgh",
    )
    text = describe(fields)
    assert text.startswith("A mail program at 192.0.2.7 (imap) ") and expected in text


def test_describe_takes_what_a_reply_may_lack() -> None:
    assert (
        describe({}) == "A mail program at an unknown address (?) still uses your account "
        "password. Mail no longer accepts it: give that program an application passcode. "
        "If it is not yours, change your password."
    )
