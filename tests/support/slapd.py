"""The lab's slapd, with what tests need on top: an ldap3 admin, resets and snapshots."""

from __future__ import annotations

import subprocess
from pathlib import Path

from ldap3 import ALL_ATTRIBUTES, BASE, LEVEL, MODIFY_REPLACE, NONE, Connection, Server

from pam_twostep.lab import slapd as lab
from pam_twostep.lab.files import resource
from pam_twostep.lab.slapd import SUFFIX, ssha

NAMES = lab.Directory(admin_password="admin-secret-9f3", service_password="service-secret-4k2")
SCHEMA_DIR = resource("ldap_schema")
ADMIN_DN = NAMES.admin_dn
ADMIN_PASSWORD = NAMES.admin_password
SERVICE_DN = NAMES.service_dn
SERVICE_PASSWORD = NAMES.service_password
PEOPLE = NAMES.people
POLICIES = NAMES.policies
DEFAULT_POLICY = NAMES.default_policy

USERS = {
    "alice": "alice-pw-Xq7!",
    "bob": "bob-pw-R2d#",
    "carol": "carol-pw-M9z$",
    "dave": "dave-pw-T4k%",
}

__all__ = [
    "ADMIN_DN",
    "ADMIN_PASSWORD",
    "DEFAULT_POLICY",
    "PEOPLE",
    "POLICIES",
    "SCHEMA_DIR",
    "SERVICE_DN",
    "SERVICE_PASSWORD",
    "SUFFIX",
    "USERS",
    "Slapd",
    "limit_service_searches",
    "ssha",
    "user_dn",
]


def user_dn(name: str) -> str:
    return NAMES.user_dn(name)


class Slapd(lab.Slapd):
    @classmethod
    def create_for_tests(cls, directory: Path) -> Slapd:
        server = cls.create(directory, names=NAMES, users=USERS, tls=True)
        assert isinstance(server, Slapd)
        return server

    def destroy(self) -> None:
        import shutil

        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def user_changes_password(self, name: str, new: str) -> None:
        """The user changes their own password with ldappasswd (RFC 3062), as they would
        from a shell: bound as themselves, giving the old password."""
        old = USERS[name]
        argv = ["ldappasswd", "-x", "-H", self.uri, "-D", user_dn(name), "-w", old]
        subprocess.run(
            [*argv, "-a", old, "-s", new],
            check=True,
            capture_output=True,
        )

    def admin(self) -> Connection:
        server = Server("127.0.0.1", port=self.port, get_info=NONE)
        return Connection(server, ADMIN_DN, ADMIN_PASSWORD, auto_bind=True, raise_exceptions=True)

    def reset(self) -> None:
        """Users and policies back to their seed state; everything else untouched."""
        conn = self.admin()
        for base in (PEOPLE, POLICIES):
            conn.search(base, "(objectClass=*)", search_scope=LEVEL, attributes=[])
            for entry in list(conn.response or ()):
                conn.delete(entry["dn"])
        for name, password in USERS.items():
            conn.add(
                user_dn(name),
                ["inetOrgPerson"],
                {
                    "uid": name,
                    "cn": name.title(),
                    "sn": name.title(),
                    "mail": f"{name}@example.org",
                    "userPassword": ssha(password),
                },
            )
        conn.add(DEFAULT_POLICY, ["applicationProcess", "twostepPolicy"], {"cn": "default"})
        conn.unbind()

    def entry(self, dn: str) -> dict[str, list[bytes]]:
        conn = self.admin()
        conn.search(
            dn, "(objectClass=*)", search_scope=BASE, attributes=[ALL_ATTRIBUTES, "entryUUID"]
        )
        response = [r for r in conn.response or () if r["type"] == "searchResEntry"]
        conn.unbind()
        return {k.lower(): list(v) for k, v in response[0]["raw_attributes"].items()}

    def snapshot(self) -> dict[str, dict[str, list[bytes]]]:
        """Every entry and value in the database, to prove nothing else was touched."""
        conn = self.admin()
        conn.search(SUFFIX, "(objectClass=*)", attributes=[ALL_ATTRIBUTES])
        result = {
            r["dn"]: {k.lower(): sorted(v) for k, v in r["raw_attributes"].items()}
            for r in conn.response or ()
            if r["type"] == "searchResEntry"
        }
        conn.unbind()
        return result

    def add_users(self, names: list[str]) -> None:
        """More users, each with the password ``<name>-pw`` (what support.flows assumes)."""
        conn = self.admin()
        for name in names:
            conn.add(
                user_dn(name),
                ["inetOrgPerson"],
                {"uid": name, "cn": name, "sn": name, "userPassword": ssha(f"{name}-pw")},
            )
        conn.unbind()

    def set_attributes(self, dn: str, **values: list[str]) -> None:
        conn = self.admin()
        conn.modify(dn, {name: [(MODIFY_REPLACE, list(v))] for name, v in values.items()})
        conn.unbind()


def limit_service_searches(server: Slapd, size: int, *, paged_total: bool = True) -> None:
    """Cap what the service identity gets per search, as a site's olcLimits may:
    ``size`` entries, and (``paged_total``) as many over all pages of a paged search."""
    limits = server.directory / "service-limits.ldif"
    line = f'olcLimits: dn.exact="{SERVICE_DN}" size.soft={size} size.hard={size}'
    if paged_total:
        line += f" size.prtotal={size}"
    limits.write_text(
        "dn: olcDatabase={1}mdb,cn=config\nchangetype: modify\nreplace: olcLimits\n" + line + "\n"
    )
    server.ldapmodify(limits)
