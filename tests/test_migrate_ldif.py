"""Reading LDIF exports: folding, base64, comments; refusing change records and URLs."""

from __future__ import annotations

import base64

from hypothesis import given
from hypothesis import strategies as st

from pam_twostep.migrate.ldif import Entry, LdifError, entries


def test_entries_with_folding_base64_and_comments() -> None:
    text = (
        "version: 1\n\n# a comment\ndn: uid=alice,dc=example\nobjectClass: top\n"
        "description: a long\n  value\ncn:: " + base64.b64encode("Zoë".encode()).decode() + "\n"
        "\n\ndn: uid=bob,dc=example\r\nuid: bob\r\n"
    )
    first, second = list(entries(text))
    assert isinstance(first, Entry) and isinstance(second, Entry)
    assert first.dn == "uid=alice,dc=example" and first.line == 4
    assert first.first("description") == "a long value"
    assert first.first("CN") == "Zoë"
    assert second.all("uid") == ["bob"]


def test_bad_entries_are_reported_and_the_rest_read() -> None:
    text = (
        "dn: a\nchangetype: add\n\n"
        "dn: b\njpegPhoto:< file:///etc/shadow\n\n"
        "uid: no-dn\n\n"
        "dn: c\ncn:: !!!\n\n"
        "dn: d\nno colon here\n\n"
        "dn: e\nuid: e\n"
    )
    results = list(entries(text))
    errors = [r for r in results if isinstance(r, LdifError)]
    assert len(errors) == 5
    assert [r.dn for r in results if isinstance(r, Entry)] == ["e"]
    messages = " ".join(str(e) for e in errors)
    for expected in ("change records", "by URL", "must start with dn", "not base64", "line 13"):
        assert expected in messages


@given(st.text(max_size=400))
def test_any_text_gives_entries_or_errors(text: str) -> None:
    for item in entries(text):
        assert isinstance(item, Entry | LdifError)
