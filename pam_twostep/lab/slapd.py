"""A private OpenLDAP server (Debian's slapd) with twostep's schema, ACLs and indexes.

Loaded the way ldap_schema/README.md tells an administrator to: over ldapi with SASL
EXTERNAL, from the shipped files. Seeded with the ldap-utils programs, so nothing here
needs ldap3 (which stays confined to ``pam_twostep.directory``).
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import subprocess
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .files import resource
from .processes import Process, Server, free_port, port_open, wait_for
from .tls import make_certificates

__all__ = ["SUFFIX", "Directory", "Slapd", "ssha"]

SUFFIX = "dc=example,dc=org"


def ssha(password: str, salt: bytes | None = None) -> str:
    """A {SSHA} userPassword value, as slappasswd makes them."""
    salt = salt or os.urandom(8)
    digest = hashlib.sha1(password.encode() + salt).digest()  # noqa: S324 - slapd's {SSHA}
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


@dataclass(frozen=True)
class Directory:
    """The names and secrets of a lab directory."""

    suffix: str = SUFFIX
    admin_password: str = field(default_factory=lambda: secrets.token_urlsafe(12), repr=False)
    service_password: str = field(default_factory=lambda: secrets.token_urlsafe(12), repr=False)

    @property
    def admin_dn(self) -> str:
        return f"cn=admin,{self.suffix}"

    @property
    def service_dn(self) -> str:
        return f"cn=twostep,ou=services,{self.suffix}"

    @property
    def people(self) -> str:
        return f"ou=people,{self.suffix}"

    @property
    def policies(self) -> str:
        return f"ou=policies,{self.suffix}"

    @property
    def default_policy(self) -> str:
        return f"cn=default,{self.policies}"

    def user_dn(self, name: str) -> str:
        return f"uid={name},{self.people}"


@dataclass
class Slapd(Server):
    log_name = "slapd.log"

    directory: Path
    port: int
    names: Directory = field(default_factory=Directory)
    process: Process | None = None
    pid: int | None = None
    tls_port: int | None = None
    """Where it also listens for ldaps://, when made with ``tls``; StartTLS works then too."""

    @property
    def uri(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def ldaps_uri(self) -> str:
        if self.tls_port is None:
            raise RuntimeError("this slapd was made without tls")
        return f"ldaps://127.0.0.1:{self.tls_port}"

    @property
    def ca_file(self) -> Path:
        """The certificate of the private CA that signed this slapd's certificate."""
        return self.directory / "tls" / "ca.pem"

    @property
    def socket_path(self) -> Path:
        return self.directory / "ldapi"

    @property
    def ldapi(self) -> str:
        return "ldapi://" + urllib.parse.quote(str(self.socket_path), safe="")

    # -- lifecycle --------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        directory: Path,
        port: int | None = None,
        names: Directory | None = None,
        users: Mapping[str, str] | None = None,
        *,
        seed: bool = True,
        acl: bool = True,
        tls: bool = False,
        schema: Path | None = None,
    ) -> Slapd:
        """Configure, start, load schema, ACLs and indexes, and seed the tree.

        Unseeded, the database is empty: a replica that gets its tree from a provider.
        Without ``acl``, the shipped ACL is not loaded: everyone reads everything. With
        ``tls``, it has a certificate from a private CA (``ca_file``) and listens for
        ldaps:// as well. ``schema``: another twostep.ldif than the shipped one (an older
        release's, as a site that has not upgraded it has).
        """
        server = cls(directory, port or free_port(), names or Directory())
        if tls:
            server.tls_port = free_port()
            make_certificates(directory / "tls")
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
        server.ldapmodify(schema or resource("ldap_schema/twostep.ldif"), add=True)
        if acl:
            server.ldapmodify(_rebased(resource("ldap_schema/acl.ldif"), server.names, directory))
        server.ldapmodify(resource("ldap_schema/indexes.ldif"))
        # as ldap_schema/README.md tells a site: listings of every account need it
        server.ldapmodify(_rebased(resource("ldap_schema/limits.ldif"), server.names, directory))
        if seed:
            server.ldapadd(server._tree_ldif(users or {}))
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
{self._tls_ldif()}
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
olcSuffix: {self.names.suffix}
olcRootDN: {self.names.admin_dn}
olcRootPW: {ssha(self.names.admin_password)}
olcDbDirectory: {self.directory}/data
olcDbMaxSize: 268435456
olcDbIndex: objectClass eq
olcDbIndex: uid eq
olcAccess: {{0}}to * by * read
"""

    def _tls_ldif(self) -> str:
        if self.tls_port is None:
            return ""
        tls = self.directory / "tls"
        return (
            f"olcTLSCACertificateFile: {tls}/ca.pem\n"
            f"olcTLSCertificateFile: {tls}/server.pem\n"
            f"olcTLSCertificateKeyFile: {tls}/server.key\n"
        )

    def _tree_ldif(self, users: Mapping[str, str]) -> str:
        n = self.names
        parts = [
            f"dn: {n.suffix}\nobjectClass: dcObject\nobjectClass: organization\n"
            f"dc: {n.suffix.split(',')[0].split('=')[1]}\no: twostep lab\n"
        ]
        parts += [
            f"dn: ou={ou},{n.suffix}\nobjectClass: organizationalUnit\nou: {ou}\n"
            for ou in ("people", "services", "policies")
        ]
        parts.append(
            f"dn: {n.service_dn}\nobjectClass: applicationProcess\n"
            f"objectClass: simpleSecurityObject\ncn: twostep\n"
            f"userPassword: {ssha(n.service_password)}\n"
        )
        parts.append(
            f"dn: {n.default_policy}\nobjectClass: applicationProcess\n"
            "objectClass: twostepPolicy\ncn: default\n"
        )
        parts += [user_ldif(n, name, password) for name, password in users.items()]
        return "\n".join(parts)

    def start(self) -> None:
        urls = f"{self.uri}/ {self.ldapi}/"
        if self.tls_port is not None:
            urls += f" {self.ldaps_uri}/"
        self.process = Process(
            ["slapd", "-d", "0", "-F", str(self.directory / "slapd.d"), "-h", urls],
            self.directory / "slapd.log",
        )
        self.pid = self.process.pid
        ports = [self.port] if self.tls_port is None else [self.port, self.tls_port]
        wait_for(
            lambda: all(port_open(p) for p in ports) and self.socket_path.exists(), 10, "slapd"
        )

    # -- administration ---------------------------------------------------------------

    def ldapmodify(self, path: Path, add: bool = False) -> None:
        argv = ["ldapmodify", "-Q", "-Y", "EXTERNAL", "-H", self.ldapi, "-f", str(path)]
        if add:
            argv.insert(1, "-a")
        subprocess.run(argv, check=True, capture_output=True)

    def ldapadd(self, ldif: str) -> None:
        """Add entries as the directory's administrator (the rootdn)."""
        secret = self.directory / "admin.secret"
        if not secret.exists():
            secret.touch(mode=0o600)
            secret.write_text(self.names.admin_password)  # -y reads it whole, no newline
        subprocess.run(
            ["ldapadd", "-x", "-H", self.uri, "-D", self.names.admin_dn, "-y", str(secret)],
            input=ldif.encode(),
            check=True,
            capture_output=True,
        )


def user_ldif(names: Directory, name: str, password: str) -> str:
    return (
        f"dn: {names.user_dn(name)}\nobjectClass: inetOrgPerson\nuid: {name}\n"
        f"cn: {name.title()}\nsn: {name.title()}\nmail: {name}@example.org\n"
        f"userPassword: {ssha(password)}\n"
    )


def _rebased(example: Path, names: Directory, directory: Path) -> Path:
    """A shipped example, rewritten for this directory's suffix (unchanged for the default)."""
    text = example.read_text().replace(SUFFIX, names.suffix)
    target = directory / example.name
    target.write_text(text)
    return target
