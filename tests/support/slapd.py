"""A private OpenLDAP server (Debian's slapd) with the project's schema and ACLs.

Loaded the way ldap_schema/README.md tells an administrator to: the schema and the ACLs
go in over ldapi with SASL EXTERNAL, from the files shipped in ldap_schema/.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from ldap3 import ALL_ATTRIBUTES, BASE, LEVEL, MODIFY_REPLACE, NONE, Connection, Server

from .processes import Process, free_port, port_open, wait_for

REPO = Path(__file__).resolve().parents[2]
SCHEMA_DIR = REPO / "ldap_schema"
SUFFIX = "dc=example,dc=org"
ADMIN_DN = f"cn=admin,{SUFFIX}"
ADMIN_PASSWORD = "admin-secret-9f3"
SERVICE_DN = f"cn=twostep,ou=services,{SUFFIX}"
SERVICE_PASSWORD = "service-secret-4k2"
PEOPLE = f"ou=people,{SUFFIX}"
POLICIES = f"ou=policies,{SUFFIX}"
DEFAULT_POLICY = f"cn=default,{POLICIES}"

USERS = {
    "alice": "alice-pw-Xq7!",
    "bob": "bob-pw-R2d#",
    "carol": "carol-pw-M9z$",
    "dave": "dave-pw-T4k%",
}


def ssha(password: str, salt: bytes | None = None) -> str:
    salt = salt or os.urandom(8)
    digest = hashlib.sha1(password.encode() + salt).digest()
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


def user_dn(name: str) -> str:
    return f"uid={name},{PEOPLE}"


@dataclass
class Slapd:
    directory: Path
    port: int
    process: Process | None = None

    @property
    def uri(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def socket_path(self) -> Path:
        return self.directory / "ldapi"

    @property
    def ldapi(self) -> str:
        return "ldapi://" + urllib.parse.quote(str(self.socket_path), safe="")

    # -- lifecycle --------------------------------------------------------------------

    @classmethod
    def create(cls, directory: Path, port: int | None = None) -> Slapd:
        server = cls(directory, port or free_port())
        (directory / "slapd.d").mkdir(parents=True)
        (directory / "data").mkdir()
        config = directory / "config.ldif"
        config.write_text(server._config_ldif())
        subprocess.run(
            ["slapadd", "-n0", "-F", str(directory / "slapd.d"), "-l", str(config)],
            check=True,
            capture_output=True,
        )
        server.start()
        server.ldapmodify(SCHEMA_DIR / "twostep.ldif", add=True)
        server.ldapmodify(SCHEMA_DIR / "acl.ldif")
        server.ldapmodify(SCHEMA_DIR / "indexes.ldif")
        server.seed()
        return server

    def _config_ldif(self) -> str:
        peer = f"gidNumber={os.getgid()}+uidNumber={os.getuid()},cn=peercred,cn=external,cn=auth"
        schema = "".join(
            f"include: file:///etc/ldap/schema/{name}.ldif\n\n"
            for name in ("core", "cosine", "nis", "inetorgperson")
        )
        return f"""dn: cn=config
objectClass: olcGlobal
cn: config
olcPidFile: {self.directory}/slapd.pid
olcArgsFile: {self.directory}/slapd.args

dn: cn=module{{0}},cn=config
objectClass: olcModuleList
cn: module{{0}}
olcModulePath: /usr/lib/ldap
olcModuleLoad: back_mdb

dn: cn=schema,cn=config
objectClass: olcSchemaConfig
cn: schema

{schema}dn: olcDatabase={{-1}}frontend,cn=config
objectClass: olcDatabaseConfig
objectClass: olcFrontendConfig
olcDatabase: {{-1}}frontend
olcSizeLimit: 500

dn: olcDatabase={{0}}config,cn=config
objectClass: olcDatabaseConfig
olcDatabase: {{0}}config
olcAccess: {{0}}to * by dn.exact={peer} manage by * break

dn: olcDatabase={{1}}mdb,cn=config
objectClass: olcDatabaseConfig
objectClass: olcMdbConfig
olcDatabase: {{1}}mdb
olcSuffix: {SUFFIX}
olcRootDN: {ADMIN_DN}
olcRootPW: {ssha(ADMIN_PASSWORD)}
olcDbDirectory: {self.directory}/data
olcDbMaxSize: 268435456
olcDbIndex: objectClass eq
olcDbIndex: uid eq
olcAccess: {{0}}to * by * read
"""

    def start(self) -> None:
        urls = f"{self.uri}/ {self.ldapi}/"
        self.process = Process(
            ["slapd", "-d", "0", "-F", str(self.directory / "slapd.d"), "-h", urls],
            self.directory / "slapd.log",
        )
        wait_for(lambda: port_open(self.port) and self.socket_path.exists(), 10, "slapd")

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process = None

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    # -- administration ---------------------------------------------------------------

    def ldapmodify(self, path: Path, add: bool = False) -> None:
        argv = ["ldapmodify", "-Q", "-Y", "EXTERNAL", "-H", self.ldapi, "-f", str(path)]
        if add:
            argv.insert(1, "-a")
        subprocess.run(argv, check=True, capture_output=True)

    def admin(self) -> Connection:
        server = Server("127.0.0.1", port=self.port, get_info=NONE)
        return Connection(server, ADMIN_DN, ADMIN_PASSWORD, auto_bind=True, raise_exceptions=True)

    def bind_as(self, dn: str, password: str) -> Connection:
        server = Server("127.0.0.1", port=self.port, get_info=NONE)
        return Connection(server, dn, password, auto_bind=True, raise_exceptions=True)

    def seed(self) -> None:
        conn = self.admin()
        conn.add(SUFFIX, ["dcObject", "organization"], {"dc": "example", "o": "Example"})
        for ou in ("people", "services", "policies"):
            conn.add(f"ou={ou},{SUFFIX}", ["organizationalUnit"], {"ou": ou})
        conn.add(
            SERVICE_DN,
            ["applicationProcess", "simpleSecurityObject"],
            {"cn": "twostep", "userPassword": ssha(SERVICE_PASSWORD)},
        )
        conn.unbind()
        self.reset()

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

    def set_attributes(self, dn: str, **values: list[str]) -> None:
        conn = self.admin()
        conn.modify(dn, {name: [(MODIFY_REPLACE, list(v))] for name, v in values.items()})
        conn.unbind()
