"""engine.readiness: the pages of every account, enrolled or not, in user-name order
whatever the directory's, over a stand-in directory (issue 18); every name of an
account, and pages bounded by their encoded size."""

from __future__ import annotations

import json

import pytest

from pam_twostep.config import parse_config
from pam_twostep.core.account import RawEntry
from pam_twostep.core.readiness import MAX_NAMES, ReadinessPage, account_dict, account_from_reply
from pam_twostep.engine import readiness as engine_readiness
from pam_twostep.engine._store import AccountStore, PolicyCache
from pam_twostep.engine.readiness import PAGE_LIMIT, Readiness
from pam_twostep.wire import MAX_REPLY

NOW = 1_800_000_000


# -- the engine's pages, over a stand-in directory --------------------------------------

PEOPLE_BASE = "ou=people,dc=example,dc=org"


class _Listing:
    """names_under and read, as engine.readiness asks the directory for them."""

    def __init__(self, entries: dict[str, dict[str, list[bytes]]]) -> None:
        self.entries = dict(entries)
        self.listed = list(entries)
        """What the listing finds: an entry deleted from ``entries`` is listed, not read."""
        self.filters: list[str] = []

    def names_under(self, base: str, search_filter: str) -> list[str]:
        self.filters.append(search_filter)
        return list(reversed(self.listed))  # the directory's order is none in particular

    def read(self, dn: str, attributes: object) -> RawEntry | None:
        values = self.entries.get(dn)
        return (
            None
            if values is None
            else RawEntry(dn, {k.lower(): tuple(v) for k, v in values.items()})
        )


def _person(uid: str, **more: list[bytes]) -> dict[str, list[bytes]]:
    return {"uid": [uid.encode()], "entryUUID": [f"uuid-{uid}".encode()], **more}


def _readiness(entries: dict[str, dict[str, list[bytes]]]) -> tuple[Readiness, _Listing]:
    config = parse_config(
        {
            "ldap": {"uris": ["ldap://127.0.0.1:1"], "bind_dn": "cn=x", "bind_password_file": "/x"},
            "users": {"base": PEOPLE_BASE},
            "keys": {"current": "k1", "directory": "/x"},
            "audit": {"syslog": False},
        }
    )
    listing = _Listing(entries)
    store = AccountStore(config, listing, PolicyCache(listing, lambda: NOW))  # type: ignore[arg-type]
    return Readiness(config, listing, store, clock=lambda: NOW), listing


def test_pages_go_by_user_name_whatever_the_directory_order() -> None:
    entries = {f"uid=u{n:02d},{PEOPLE_BASE}": _person(f"u{n:02d}") for n in range(25)}
    entries[f"uid=A\\2Cb,{PEOPLE_BASE}"] = _person("A,b")  # RFC 4514 escapes undone
    entries[f"cn=Zed Person,{PEOPLE_BASE}"] = _person("zed")  # RDN is not the user name
    entries[f"uid=gone,{PEOPLE_BASE}"] = _person("gone")
    readiness, listing = _readiness(entries)
    del listing.entries[f"uid=gone,{PEOPLE_BASE}"]  # listed, then deleted before it is read
    seen: list[str] = []
    after = None
    pages = 0
    while True:
        page = readiness.page(after=after, limit=4)
        pages += 1
        assert len(page.accounts) <= 4
        seen += [a.user for a in page.accounts]
        if page.next is None:
            break
        after = page.next
    # an entry whose RDN is not the user name is ordered by its DN, "cn=Zed Person,..."
    assert seen == ["A,b", "zed", *(f"u{n:02d}" for n in range(25))]
    assert pages == 7
    assert listing.filters[0] == "(&(objectClass=inetOrgPerson)(uid=*))"
    assert [a.user for a in readiness.page(after="u23", limit=500).accounts] == ["u24"]
    assert readiness.page(limit=10_000).next is None  # at most PAGE_LIMIT, all here


def test_two_entries_of_one_name_stay_on_one_page_and_a_bad_one_is_a_row() -> None:
    entries = {
        f"uid=bob,ou=a,{PEOPLE_BASE}": _person("bob"),
        f"uid=bob,ou=b,{PEOPLE_BASE}": _person("bob", twostepEnabled=[b"maybe"]),
        f"uid=amy,{PEOPLE_BASE}": _person("amy", twostepPolicyDN=[b"cn=staff,ou=policies"]),
        f"uid=cat,{PEOPLE_BASE}": _person("cat"),
    }
    readiness, _ = _readiness(entries)
    first = readiness.page(limit=2)
    assert [a.user for a in first.accounts] == ["amy", "bob", "bob"]
    assert first.accounts[0].unreadable and first.accounts[0].policy == "staff"
    assert "does not exist" in first.accounts[0].why
    assert sorted(a.unreadable for a in first.accounts[1:]) == [False, True]
    assert first.next == "bob"
    rest = readiness.page(after=first.next, limit=2)
    assert [a.user for a in rest.accounts] == ["cat"] and rest.next is None
    cat = rest.accounts[0]
    assert (cat.enabled, cat.policy, cat.passcodes, cat.enrolled) == (False, None, (), None)


# -- every name of an account --------------------------------------------------------------


def test_every_value_of_the_user_name_attribute_is_sent_the_first_as_user() -> None:
    entries = {
        f"uid=alice,{PEOPLE_BASE}": {
            "uid": [b"alice", b"alice.smith", b"asmith"],
            "entryUUID": [b"uuid-alice"],
        },
        f"uid=bob,{PEOPLE_BASE}": _person("bob", twostepEnabled=[b"maybe"]),
        f"uid=many,{PEOPLE_BASE}": {
            "uid": [b"many", *(f"m{n}".encode() for n in range(200))],
            "entryUUID": [b"uuid-many"],
        },
    }
    readiness, _ = _readiness(entries)
    rows = {a.user: a for a in readiness.page(limit=10).accounts}
    assert rows["alice"].names == ("alice", "alice.smith", "asmith")
    assert rows["bob"].unreadable and rows["bob"].names == ("bob",)
    assert len(rows["many"].names) == MAX_NAMES and rows["many"].names[0] == "many"
    for account in rows.values():  # what the CLI reads back takes them
        assert account_from_reply(json.loads(json.dumps(account_dict(account)))) == account


# -- a page never passes the reply limit ---------------------------------------------------

EMOJI = "\U0001f600" * 64
"""A 64-character value of 768 bytes as JSON with ASCII escapes: what broke the budget
of "some 300 bytes a passcode"."""


def _heavy(uid: str) -> dict[str, list[bytes]]:
    names = [uid.encode(), *(f"{EMOJI}{n}".encode() for n in range(MAX_NAMES - 1))]
    return {"uid": names, "entryUUID": [f"uuid-{uid}".encode()]}


def _reply_bytes(page: ReadinessPage) -> int:
    reply = {"result": "ok", "accounts": [account_dict(a) for a in page.accounts]}
    reply["next"] = page.next
    return len(json.dumps(reply, separators=(",", ":"), ensure_ascii=True)) + 1


def test_pages_of_heavy_rows_stay_under_the_reply_limit() -> None:
    entries = {f"uid=h{n:03d},{PEOPLE_BASE}": _heavy(f"h{n:03d}") for n in range(100)}
    readiness, _ = _readiness(entries)
    seen: list[str] = []
    sizes: list[int] = []
    after = None
    while True:
        page = readiness.page(after=after, limit=PAGE_LIMIT)
        sizes.append(_reply_bytes(page))
        seen += [a.user for a in page.accounts]
        if page.next is None:
            break
        after = page.next
    assert seen == [f"h{n:03d}" for n in range(100)]
    assert len(sizes) > 1, "100 rows of 48 kB are more than one page"
    assert max(sizes) <= MAX_REPLY // 2 + 64, sizes


@pytest.mark.parametrize(
    ("budget_rows", "pages"),
    [
        (1, [["amy"], ["bob", "bob"], ["cat"], ["dan"]]),  # twins together, past the budget
        (2, [["amy"], ["bob", "bob"], ["cat", "dan"]]),
        (3, [["amy", "bob", "bob"], ["cat", "dan"]]),
        (100, [["amy", "bob", "bob", "cat", "dan"]]),
    ],
)
def test_the_budget_keeps_two_entries_of_one_name_on_one_page(
    monkeypatch: pytest.MonkeyPatch, budget_rows: int, pages: list[list[str]]
) -> None:
    entries = {
        f"uid=amy,{PEOPLE_BASE}": _heavy("amy"),
        f"uid=bob,ou=a,{PEOPLE_BASE}": _heavy("bob"),
        f"uid=bob,ou=b,{PEOPLE_BASE}": _heavy("bob"),
        f"uid=cat,{PEOPLE_BASE}": _heavy("cat"),
        f"uid=dan,{PEOPLE_BASE}": _heavy("dan"),
    }
    readiness, _ = _readiness(entries)
    row = len(json.dumps(account_dict(readiness.page(limit=1).accounts[0]))) + 1
    monkeypatch.setattr(engine_readiness, "_PAGE_BYTES", budget_rows * row + row // 2)
    got: list[list[str]] = []
    after = None
    while True:
        page = readiness.page(after=after, limit=PAGE_LIMIT)
        got.append([a.user for a in page.accounts])
        if page.next is None:
            break
        after = page.next
    assert got == pages
