"""The LDAP schema in both forms, and the shipped access control, on a stock slapd."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from conftest import Clock
from ldap3 import MODIFY_REPLACE, NONE, Connection, Server
from ldap3.core.exceptions import LDAPInsufficientAccessRightsResult, LDAPNoSuchObjectResult
from support.flows import enroll
from support.slapd import SCHEMA_DIR, SERVICE_DN, SERVICE_PASSWORD, USERS, Slapd, user_dn

from pam_twostep.core.account import ACCOUNT_CLASS, POLICY_CLASS, Attr
from pam_twostep.core.policy import POLICY_ATTRIBUTES
from pam_twostep.engine import Engine

OID_ARC = "2.25.297589745614021830662791966010947424362"


def definitions(text: str) -> dict[str, str]:
    """NAME -> whitespace-normalised definition, from either schema form."""
    text = re.sub(r"\n ", " ", text)  # LDIF continuation lines
    found = {}
    for match in re.finditer(
        r"(?:attributetype|objectclass|olcAttributeTypes:|olcObjectClasses:)"
        r"\s*(\(.*?\))\s*$",
        text,
        re.MULTILINE | re.IGNORECASE,
    ):
        body = " ".join(match.group(1).split())
        name = re.search(r"NAME '([^']+)'", body)
        assert name is not None
        found[name.group(1)] = body
    return found


SCHEMA = definitions((SCHEMA_DIR / "twostep.schema").read_text())
LDIF = definitions((SCHEMA_DIR / "twostep.ldif").read_text())


def test_both_forms_define_the_same_things() -> None:
    assert SCHEMA == LDIF
    assert len(SCHEMA) == len(set(Attr.STATE) | set(POLICY_ATTRIBUTES)) + 2


def test_every_name_the_code_uses_is_defined_and_documented() -> None:
    for name in (*Attr.STATE, *POLICY_ATTRIBUTES, ACCOUNT_CLASS, POLICY_CLASS):
        assert name in SCHEMA, name
        assert "DESC '" in SCHEMA[name]
        assert f"( {OID_ARC}." in SCHEMA[name]


def test_acl_protects_every_attribute() -> None:
    acl = (SCHEMA_DIR / "acl.ldif").read_text().replace("\n ", "")
    protected = re.search(r"\{2\}to attrs=(\S+)", acl)
    assert protected is not None
    assert set(protected.group(1).split(",")) == set(Attr.STATE) | set(POLICY_ATTRIBUTES)


def test_oids_are_unique() -> None:
    oids = [body.split()[1] for body in SCHEMA.values()]
    assert len(oids) == len(set(oids))


def test_slapd_conf_form_loads(tmp_path: Path) -> None:
    conf = tmp_path / "slapd.conf"
    (tmp_path / "db").mkdir()
    includes = "".join(
        f"include /etc/ldap/schema/{n}.schema\n" for n in ("core", "cosine", "nis", "inetorgperson")
    )
    conf.write_text(f"""{includes}include {SCHEMA_DIR / "twostep.schema"}
modulepath /usr/lib/ldap
moduleload back_mdb
database mdb
suffix "dc=example,dc=org"
directory {tmp_path / "db"}
index twostepEnabled eq
index twostepPolicyDN eq
index twostepLockedAt pres
""")
    result = subprocess.run(
        ["slaptest", "-u", "-f", str(conf)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_ldif_form_is_loaded_in_cn_config(slapd: Slapd) -> None:
    out = subprocess.run(
        [
            "ldapsearch",
            "-Q",
            "-LLL",
            "-Y",
            "EXTERNAL",
            "-H",
            slapd.ldapi,
            "-b",
            "cn=schema,cn=config",
            "(cn=*twostep)",
            "dn",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "twostep,cn=schema,cn=config" in out


def test_upgrade_script_replaces_the_loaded_definitions(slapd: Slapd) -> None:
    result = subprocess.run(
        ["sh", str(SCHEMA_DIR / "upgrade-cn-config.sh"), slapd.ldapi],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "modifying entry" not in result.stderr


# -- access control --------------------------------------------------------------------


def connect(slapd: Slapd, dn: str | None = None, password: str | None = None) -> Connection:
    server = Server("127.0.0.1", port=slapd.port, get_info=NONE)
    return Connection(server, dn, password, auto_bind=True, raise_exceptions=True)


def read(conn: Connection, dn: str) -> dict[str, list[bytes]]:
    try:
        conn.search(dn, "(objectClass=*)", attributes=["*"], search_scope="BASE")
    except LDAPNoSuchObjectResult:  # what slapd answers when the entry may not be disclosed
        return {}
    entries = [r for r in conn.response or () if r["type"] == "searchResEntry"]
    return {k.lower(): list(v) for k, v in entries[0]["raw_attributes"].items()} if entries else {}


@pytest.fixture
def enrolled(engine: Engine, clock: Clock) -> None:
    enroll(engine, clock.now)
    engine.add_passcode("alice", "Phone")


@pytest.mark.usefixtures("enrolled")
def test_users_read_none_of_their_own_two_step_attributes(slapd: Slapd) -> None:
    own = read(connect(slapd, user_dn("alice"), USERS["alice"]), user_dn("alice"))
    assert own  # they can read their entry ...
    assert not {name for name in own if name.startswith("twostep")}  # ... but none of these
    assert own["objectclass"] == [b"inetOrgPerson"]  # not even the twostepAccount class
    assert "userpassword" not in own  # nor their password hash
    other = read(connect(slapd, user_dn("bob"), USERS["bob"]), user_dn("alice"))
    assert not {name for name in other if name.startswith("twostep") or name == "userpassword"}


@pytest.mark.usefixtures("enrolled")
def test_users_write_none_of_them(slapd: Slapd) -> None:
    conn = connect(slapd, user_dn("alice"), USERS["alice"])
    for attribute, value in (
        (Attr.ENABLED, "FALSE"),
        (Attr.LOCKED_AT, "20270101000000Z"),
        (Attr.PASSCODE, "{}"),
        ("twostepRequired", "FALSE"),
    ):
        with pytest.raises(LDAPInsufficientAccessRightsResult):
            conn.modify(user_dn("alice"), {attribute: [(MODIFY_REPLACE, [value])]})


@pytest.mark.usefixtures("enrolled")
def test_anonymous_sees_nothing(slapd: Slapd) -> None:
    assert read(connect(slapd), user_dn("alice")) == {}
    assert read(connect(slapd), "ou=policies,dc=example,dc=org") == {}


@pytest.mark.usefixtures("enrolled")
def test_the_service_reads_and_writes_them(slapd: Slapd) -> None:
    conn = connect(slapd, SERVICE_DN, SERVICE_PASSWORD)
    entry = read(conn, user_dn("alice"))
    assert entry[Attr.ENABLED.lower()] == [b"TRUE"]
    assert entry["userpassword"]
    conn.modify(user_dn("alice"), {Attr.LOCKED_AT: [(MODIFY_REPLACE, ["20270101000000Z"])]})
    with pytest.raises(LDAPInsufficientAccessRightsResult):  # but not other attributes
        conn.modify(user_dn("alice"), {"cn": [(MODIFY_REPLACE, ["Mallory"])]})


def test_users_still_change_their_own_password(slapd: Slapd) -> None:
    slapd.user_changes_password("bob", "new-bob-pw")
    connect(slapd, user_dn("bob"), "new-bob-pw")
