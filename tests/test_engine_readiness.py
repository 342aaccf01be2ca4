"""engine.readiness: the pages of every account, enrolled or not, in user-name order
whatever the directory's, over a stand-in directory (issue 18)."""

from __future__ import annotations

from pam_twostep.config import parse_config
from pam_twostep.core.account import RawEntry
from pam_twostep.engine._store import AccountStore, PolicyCache
from pam_twostep.engine.readiness import Readiness

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
        page = readiness.readiness(after=after, limit=4)
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
    assert [a.user for a in readiness.readiness(after="u23", limit=500).accounts] == ["u24"]
    assert readiness.readiness(limit=10_000).next is None  # at most PAGE_LIMIT, all here


def test_two_entries_of_one_name_stay_on_one_page_and_a_bad_one_is_a_row() -> None:
    entries = {
        f"uid=bob,ou=a,{PEOPLE_BASE}": _person("bob"),
        f"uid=bob,ou=b,{PEOPLE_BASE}": _person("bob", twostepEnabled=[b"maybe"]),
        f"uid=amy,{PEOPLE_BASE}": _person("amy", twostepPolicyDN=[b"cn=staff,ou=policies"]),
        f"uid=cat,{PEOPLE_BASE}": _person("cat"),
    }
    readiness, _ = _readiness(entries)
    first = readiness.readiness(limit=2)
    assert [a.user for a in first.accounts] == ["amy", "bob", "bob"]
    assert first.accounts[0].unreadable and first.accounts[0].policy == "staff"
    assert "does not exist" in first.accounts[0].why
    assert sorted(a.unreadable for a in first.accounts[1:]) == [False, True]
    assert first.next == "bob"
    rest = readiness.readiness(after=first.next, limit=2)
    assert [a.user for a in rest.accounts] == ["cat"] and rest.next is None
    cat = rest.accounts[0]
    assert (cat.enabled, cat.policy, cat.passcodes, cat.enrolled) == (False, None, (), None)
