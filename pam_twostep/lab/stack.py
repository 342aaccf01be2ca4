"""``twostep lab``: a whole private stack on loopback, to try twostep without a server.

``up`` starts a slapd with the schema, ACLs, a default policy and demo users; twostepd;
Dovecot (IMAP, POP3) on the Lua passdb (or checkpassword); Postfix submission with SMTP
AUTH through Dovecot SASL; the self-service portal, on plain HTTP or (``tls_proxy``)
behind the lab's own nginx on HTTPS, as a deployment runs it (loopback only); with
``webmail``, Debian's Roundcube with the twostep plugin, on HTTPS too. It
writes a twostep configuration for that stack and records what it started in
``state.json``; ``down`` stops exactly those processes, by pid.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import stat
from pathlib import Path
from typing import Any

from ..keyfiles import write_key_file
from .dovecot import Dovecot, passdb_block
from .dovecot_config import DovecotConfigError, installed_version, unsupported
from .files import PAM_LOADER, install_clients
from .nginx import Nginx, worker_group
from .portal import Portal
from .postfix import Postfix
from .processes import free_port, port_open, stop_group
from .roundcube import POOL_USER, Roundcube, ensure_pool_user
from .slapd import Directory, Slapd
from .twostepd import Twostepd

__all__ = ["DEMO_USERS", "Lab", "LabError"]

DEMO_USERS = ("alice", "bob", "carol")
_STATE = "state.json"
_ORDER = (
    "webmail-nginx",
    "php-fpm",
    "nginx",
    "portal",
    "postfix",
    "dovecot",
    "twostepd",
    "slapd",
)  # stopping order
_PAM_D = Path("/etc/pam.d")


class LabError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False


def _pid(pid: int | None) -> int:
    if pid is None:  # pragma: no cover - start() sets it or raises
        raise RuntimeError("a server did not start")
    return pid


class Lab:
    def __init__(self, directory: Path) -> None:
        self.directory = directory.resolve()
        self.state_path = self.directory / _STATE

    # -- state ------------------------------------------------------------------------

    def _load(self) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = json.loads(self.state_path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise LabError(78, f"{self.state_path}: unreadable ({exc})") from None
        return data

    def _running(self, state: dict[str, Any]) -> list[str]:
        return [name for name, pid in state.get("pids", {}).items() if _alive(int(pid))]

    def _prepare_directory(self) -> None:
        """Our own directory, traversable by dovecot and postfix, and not somebody else's."""
        if self.directory.exists():
            info = os.lstat(self.directory)
            if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
                raise LabError(1, f"{self.directory} exists and is not a directory of yours")
            if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
                raise LabError(1, f"{self.directory} is writable by others; choose another --dir")
            if any(self.directory.iterdir()) and not self.state_path.exists():
                raise LabError(
                    1, f"{self.directory} is not empty and holds no lab; choose another --dir"
                )
            shutil.rmtree(self.directory)
        self.directory.mkdir(parents=True)
        os.chmod(self.directory, 0o755)

    # -- commands ---------------------------------------------------------------------

    def up(
        self,
        passdb: str = "lua",
        ports: dict[str, int] | None = None,
        tls_proxy: bool = False,
        webmail: bool = False,
    ) -> dict[str, Any]:
        """Starts the lab; with ``tls_proxy`` the portal sits behind nginx on HTTPS (its
        address is then ``portal_url``, and the web port is nginx's)."""
        self._check_passdb(passdb)
        state = self._load()
        if state is not None and self._running(state):
            raise LabError(
                1,
                f"a lab is already running in {self.directory}; stop it with "
                f"twostep lab down --dir {self.directory}",
            )
        wanted = {name: port for name, port in (ports or {}).items() if port}
        for name, port in wanted.items():
            if not 0 < port < 65536:
                raise LabError(64, f"--{name}-port {port}: not a port number")
            if port_open(port):
                raise LabError(
                    1,
                    f"port {port} (for {name}) is taken; choose another or let "
                    "the lab pick a free one",
                )
        self._prepare_directory()
        started: dict[str, int] = {}
        try:
            return self._start(passdb, wanted, started, tls_proxy, webmail)
        except Exception as exc:
            for name in _ORDER:
                if name in started:
                    stop_group(started[name])
            logs = sorted(self.directory.rglob("*.log"))
            raise LabError(
                75,
                f"the lab did not come up: {exc}; logs: "
                f"{', '.join(map(str, logs)) or self.directory}",
            ) from exc

    @staticmethod
    def _check_passdb(passdb: str) -> None:
        """Refuses, before anything starts, a passdb the installed Dovecot lacks."""
        try:
            version = installed_version()
        except DovecotConfigError as exc:
            raise LabError(75, str(exc)) from None
        reason = unsupported(passdb_block(passdb, Path(), Path()), version)
        if reason is not None:
            raise LabError(64, f"--passdb {passdb}: {reason}")

    def _start(
        self,
        passdb: str,
        ports: dict[str, int],
        started: dict[str, int],
        tls_proxy: bool,
        webmail: bool = False,
    ) -> dict[str, Any]:
        d = self.directory
        names = Directory()
        users = {name: f"{name}-{secrets.token_urlsafe(6)}" for name in DEMO_USERS}
        slapd = Slapd.create(d / "ldap", port=ports.get("ldap"), names=names, users=users)
        started["slapd"] = _pid(slapd.pid)

        etc = d / "etc"
        (etc / "keys").mkdir(parents=True)
        os.chmod(etc / "keys", 0o700)
        write_key_file(etc / "keys" / "lab.key", secrets.token_bytes(32))
        password_file = etc / "ldap.secret"
        password_file.touch(mode=0o600)
        password_file.write_text(names.service_password + "\n")
        write_key_file(etc / "portal.key", secrets.token_bytes(32))
        web_port = ports.get("web") or free_port()
        # Behind the proxy, the web port is nginx's and the portal listens on a UNIX
        # socket that only nginx's workers (its group) and root may open.
        portal_socket = d / "portal" / "portal.sock"
        portal_listen: int | Path = portal_socket if tls_proxy else web_port

        if webmail and os.getuid() == 0:
            ensure_pool_user()  # before twostepd, which resolves daemon.verify at start
        clients = d / "clients"
        share = d / "share"
        install_clients(clients, share)
        daemon = Twostepd(
            d / "twostepd",
            {
                "ldap": {
                    "uris": [slapd.uri],
                    "bind_dn": names.service_dn,
                    "bind_password_file": str(password_file),
                },
                "users": {"base": names.people},
                "policy": {"base": names.policies, "default": names.default_policy},
                "keys": {"current": "lab", "directory": str(etc / "keys")},
                "totp": {"issuer": "twostep lab"},
                "audit": {"syslog": False, "file": str(d / "audit.log")},
                # The lab's portal runs as root: listed as self-service, so its sessions
                # are twostepd's to end and it never acts as an administrator. The
                # webmail's PHP runs as a user of its own, which checks logins.
                "daemon": {
                    "self_service": {"users": ["root"]},
                    "verify": {"users": ["root", "dovecot", "postfix", POOL_USER]},
                },
                "portal": {
                    "listen": f"unix:{portal_socket}" if tls_proxy else f"127.0.0.1:{web_port}",
                    "secret_key_file": str(etc / "portal.key"),
                    # Behind nginx: HTTPS, __Host- cookies, X-Forwarded-* believed from
                    # the socket's peers. Without: plain HTTP on loopback, nothing
                    # forwarded is believed.
                    "secure_cookies": tls_proxy,
                    "trusted_proxies": 1 if tls_proxy else 0,
                    **(
                        {"socket_group": worker_group(), "socket_mode": "0660"} if tls_proxy else {}
                    ),
                },
            },
        )
        daemon.start()
        started["twostepd"] = _pid(daemon.pid)

        dovecot = Dovecot(
            d / "dovecot",
            passdb_block(passdb, clients, share),
            {"TWOSTEP_SOCKET": str(daemon.socket)},
            imap_port=ports.get("imap", 0),
            pop3_port=ports.get("pop3", 0),
        )
        dovecot.start()
        started["dovecot"] = _pid(dovecot.pid)

        postfix = Postfix(
            d / "postfix", dovecot.auth_client, port=ports.get("smtp", 0) or free_port()
        )
        postfix.start()
        started["postfix"] = _pid(postfix.pid)
        # The portal's "add a device" downloads point mail programs at these servers (in
        # clear: loopback, the only place the configuration allows it).
        daemon.config["mail_settings"] = {
            "address": "{user}@example.org",
            "display_name": "twostep lab",
            "imap": {"host": "127.0.0.1", "port": dovecot.imap_port, "security": "none"},
            "smtp": {"host": "127.0.0.1", "port": postfix.port, "security": "none"},
        }
        daemon.write_config()

        portal = Portal(d / "portal", daemon.config_path, portal_listen)
        portal.start()
        started["portal"] = _pid(portal.pid)
        proxy_info: dict[str, Any] = {"portal_url": portal.url}
        if tls_proxy:
            nginx = Nginx(d / "nginx", web_port, portal_socket)
            nginx.start()
            started["nginx"] = _pid(nginx.pid)
            proxy_info = {
                "portal_url": nginx.url,
                "portal_backend": portal.url,
                "portal_ca": str(nginx.certificates.ca),
                "portal_spki": nginx.spki_pin,
                "nginx_access_log": str(nginx.access_log),
            }

        if webmail:
            roundcube = Roundcube(
                d / "webmail",
                ports.get("webmail") or free_port(),
                twostepd_socket=daemon.socket,
                imap_port=dovecot.imap_port,
                smtp_port=postfix.port,
                portal_url=str(proxy_info["portal_url"]),
            )
            try:
                roundcube.start()
            finally:
                started.update(roundcube.pids)
            proxy_info |= {
                "webmail_url": roundcube.url,
                "webmail_ca": str(roundcube.certificates.ca),
                "webmail_spki": roundcube.spki_pin,
                "webmail_logs": str(roundcube.directory),
            }

        pam_service = self._install_pam_service(clients / PAM_LOADER, daemon.socket)
        info = {
            "dir": str(d),
            "pam_service": pam_service,
            "config": str(daemon.config_path),
            "ldap_uri": slapd.uri,
            "base_dn": names.suffix,
            "admin_dn": names.admin_dn,
            "admin_password": names.admin_password,
            "imap_port": dovecot.imap_port,
            "pop3_port": dovecot.pop3_port,
            "smtp_port": postfix.port,
            **proxy_info,
            "daemon_socket": str(daemon.socket),
            "passdb": passdb,
            "audit_log": str(d / "audit.log"),
            "users": [{"name": name, "password": password} for name, password in users.items()],
        }
        state = {
            "info": info,
            "pids": started,
            "pam_file": pam_service and str(_PAM_D / pam_service),
            "postfix_config": str(postfix.directory / "etc"),
        }
        self.state_path.write_text(json.dumps(state, indent=2))
        os.chmod(self.state_path, 0o600)
        return info

    def _install_pam_service(self, loader: Path, socket: Path) -> str | None:
        """A PAM service for the lab's users (root only: libpam reads /etc/pam.d alone)."""
        if os.getuid() != 0 or not _PAM_D.is_dir():
            return None
        name = "twostep-lab-" + hashlib.sha256(str(self.directory).encode()).hexdigest()[:8]
        path = _PAM_D / name
        path.write_text(
            f"# written by twostep lab up --dir {self.directory}; removed by lab down\n"
            f"auth required pam_python.so {loader} socket={socket}\n"
            f"account required pam_python.so {loader}\n"
        )
        return name

    def status(self) -> dict[str, Any]:
        state = self._load()
        if state is None:
            return {"dir": str(self.directory), "running": []}
        return {**state["info"], "running": self._running(state)}

    def down(self) -> list[str]:
        state = self._load()
        if state is None:
            return []
        running = self._running(state)
        pids = state.get("pids", {})
        if "postfix" in running:
            Postfix(self.directory / "postfix", Path("/"), pid=int(pids["postfix"])).stop()
        for name in _ORDER:
            if name in pids and name in running:
                stop_group(int(pids[name]), timeout=40)
        pam_file = state.get("pam_file")
        if (
            pam_file
            and Path(pam_file).parent == _PAM_D
            and Path(pam_file).name.startswith("twostep-lab-")
        ):
            Path(pam_file).unlink(missing_ok=True)
        # Keep the file (logs stay for reading; a later "up" knows the directory is ours).
        self.state_path.write_text(json.dumps({**state, "pids": {}}, indent=2))
        return [name for name in _ORDER if name in running]

    # -- text -------------------------------------------------------------------------

    @staticmethod
    def describe(info: dict[str, Any]) -> str:
        users = "\n".join(f"    {u['name']:<8} {u['password']}" for u in info["users"])
        proxy = (
            f"  (nginx, TLS; to {info['portal_backend']})\n"
            f"              CA {info['portal_ca']}\n"
            f"              Chromium: --ignore-certificate-errors-spki-list={info['portal_spki']}"
            if "portal_backend" in info
            else ""
        )
        webmail = (
            f"\n  webmail     {info['webmail_url']}  (Roundcube, TLS)\n"
            f"              CA {info['webmail_ca']}\n"
            f"              Chromium: --ignore-certificate-errors-spki-list={info['webmail_spki']}"
            if "webmail_url" in info
            else ""
        )
        return f"""twostep lab is up in {info["dir"]} (passdb: {info["passdb"]})

  LDAP        {info["ldap_uri"]}  base {info["base_dn"]}
              admin {info["admin_dn"]}  password {info["admin_password"]}
  IMAP        127.0.0.1:{info["imap_port"]}     POP3  127.0.0.1:{info["pop3_port"]}
  SMTP AUTH   127.0.0.1:{info["smtp_port"]}
  portal      {info["portal_url"]}{proxy}{webmail}
  twostepd    {info["daemon_socket"]}
  PAM service {info.get("pam_service") or "(written to /etc/pam.d only when run as root)"}
  audit log   {info["audit_log"]}
  users (password):
{users}

  export TWOSTEP_CONFIG={info["config"]}
  twostep status alice
  twostep lab down --dir {info["dir"]}"""

    @staticmethod
    def describe_status(state: dict[str, Any]) -> str:
        if not state.get("running"):
            return f"no lab running in {state['dir']}"
        return f"lab in {state['dir']}: running {', '.join(state['running'])}"
