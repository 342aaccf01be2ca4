"""Debian's Roundcube with the twostep plugin, served by its own php-fpm and nginx.

The webmail a Dovecot/Postfix site runs (issue 16), as Debian installs it
(``roundcube-core``, SQLite), but a private instance: a tree of symlinks into
/usr/share/roundcube with its own configuration, database, logs and temporary files
in ``directory``, the plugin copied in from the checkout (or the installed share dir),
php-fpm in the foreground with one pool, and nginx on HTTPS at 127.0.0.1 in front of
it. Nothing in /etc/roundcube, /etc/php or /etc/nginx is read but Roundcube's
``defaults.inc.php`` and PHP's own ini files, and nothing outside ``directory`` is
written but, once, the system user below. As root the pool runs as ``roundcube`` with
twostepd's socket group (what the
README tells a site: a php-fpm pool of Roundcube's own user, ``roundcube``, in that
group and in ``daemon.verify``; not www-data, which every PHP site and nginx's workers
share). The lab makes that system user when it is missing, as the README's steps do.
"""

from __future__ import annotations

import grp
import os
import pwd
import secrets
import shutil
import ssl
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

from .files import resource
from .nginx import PREAMBLE, WORKER_USER, spki_pin
from .processes import Process, Server, wait_for
from .tls import Certificates, make_certificates

__all__ = ["NGINX", "POOL_USER", "Roundcube", "ensure_pool_user", "php_fpm"]

NGINX = "/usr/sbin/nginx"
_SHARE = Path("/usr/share/roundcube")
_DEFAULTS = Path("/etc/roundcube/defaults.inc.php")
_ENTRY = """<?php
define('INSTALL_PATH', realpath(__DIR__ . '/..') . '/');
include INSTALL_PATH . 'index.php';
"""


POOL_USER = "roundcube"
"""Who Roundcube's PHP runs as (as root): a user of its own, as the README says."""


def ensure_pool_user() -> None:
    """The README's ``adduser --system --group roundcube``, when there is no such user
    (twostepd resolves the names in ``daemon.verify`` when it starts: call this first)."""
    try:
        pwd.getpwnam(POOL_USER)
        return
    except KeyError:
        pass
    try:
        grp.getgrnam(POOL_USER)
        group = ["--gid", POOL_USER]
    except KeyError:
        group = ["--user-group"]
    made = subprocess.run(
        [
            "useradd",
            "--system",
            *group,
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            POOL_USER,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        pwd.getpwnam(POOL_USER)  # made, here or by a lab starting at the same time
    except KeyError:
        raise RuntimeError(f"could not make the user {POOL_USER}: {made.stderr.strip()}") from None


def php_fpm() -> Path:
    """Debian's php-fpm binary (php-fpm8.2 on bookworm, 8.4 on trixie)."""
    found = sorted(Path("/usr/sbin").glob("php-fpm[0-9]*"))
    if not found:
        raise RuntimeError("php-fpm is not installed (Debian package php-fpm)")
    return found[-1]


def _php_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


_FPM = """\
; Written by twostep lab: the lab's own php-fpm for Roundcube.
[global]
pid = {d}/php-fpm.pid
error_log = {d}/php-fpm.log
daemonize = no

[roundcube]
{identity}listen = {d}/php-fpm.sock
listen.mode = 0600
{listen_owner}pm = static
pm.max_children = 4
clear_env = yes
catch_workers_output = yes
php_admin_value[error_log] = {d}/site/logs/php-errors.log
php_admin_flag[log_errors] = on
php_admin_flag[display_errors] = off
php_admin_value[session.save_path] = {d}/site/temp
php_admin_value[upload_tmp_dir] = {d}/site/temp
"""

_NGINX = (
    """\
# Written by twostep lab: the lab's own nginx in front of Roundcube's php-fpm.
"""
    + PREAMBLE.replace("{directory}", "{d}")
    + """\
    include /etc/nginx/mime.types;

    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {certificate};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        client_max_body_size 8m;
        root {d}/site/public_html;
        index index.php;

        location = /index.php {{
            include /etc/nginx/fastcgi_params;
            fastcgi_param SCRIPT_FILENAME $document_root/index.php;
            fastcgi_param HTTPS on;
            fastcgi_pass unix:{d}/php-fpm.sock;
        }}
        location = / {{
            include /etc/nginx/fastcgi_params;
            fastcgi_param SCRIPT_FILENAME $document_root/index.php;
            fastcgi_param HTTPS on;
            fastcgi_pass unix:{d}/php-fpm.sock;
        }}
        location ~ \\.php$ {{ deny all; }}
        location ~ ^/plugins/[^/]+/(config\\.inc\\.php|.*\\.inc$|lib/|localization/) {{
            deny all;
        }}
        location ~ /\\. {{ deny all; }}
    }}
}}
"""
)


class _Part(Server):
    def __init__(self, directory: Path, log_name: str) -> None:
        self.directory = directory
        self.process: Process | None = None
        self.pid: int | None = None
        self._log_name = log_name

    def log(self) -> str:
        path = self.directory / self._log_name
        return path.read_text(errors="replace") if path.exists() else ""


class Roundcube:
    """Roundcube at ``https://127.0.0.1:port``, its mail on the lab's Dovecot and Postfix."""

    def __init__(
        self,
        directory: Path,
        port: int,
        *,
        twostepd_socket: Path,
        imap_port: int,
        smtp_port: int,
        portal_url: str = "",
        session_lifetime: int = 10,
    ) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        os.chmod(directory, 0o755)
        self.port = port
        self.twostepd_socket = twostepd_socket
        self.imap_port = imap_port
        self.smtp_port = smtp_port
        self.portal_url = portal_url
        self.session_lifetime = session_lifetime
        self.site = directory / "site"
        self.certificates: Certificates = make_certificates(
            directory / "tls", label="twostep lab webmail"
        )
        self.fpm = _Part(directory, "php-fpm.log")
        self.nginx = _Part(directory, "nginx-error.log")
        self.access_log = directory / "access.log"

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def spki_pin(self) -> str:
        return spki_pin(self.certificates.certificate)

    @property
    def logs(self) -> list[Path]:
        """Every log this webmail writes: Roundcube's, PHP's, php-fpm's, nginx's."""
        return sorted(
            [p for p in (self.site / "logs").glob("*") if p.is_file()]
            + [p for p in self.directory.glob("*.log") if p.is_file()]
        )

    # -- the tree -----------------------------------------------------------------------

    def _link(self, target: Path, name: Path) -> None:
        name.parent.mkdir(parents=True, exist_ok=True)
        if not name.is_symlink():
            name.symlink_to(target)

    def _build(self) -> None:
        if not (_SHARE / "index.php").exists() or not _DEFAULTS.exists():
            raise RuntimeError(
                "Roundcube is not installed (Debian packages roundcube-core, roundcube-sqlite3)"
            )
        site = self.site
        public = site / "public_html"
        public.mkdir(parents=True, exist_ok=True)
        (public / "index.php").write_text(_ENTRY)
        self._link(_SHARE / "index.php", site / "index.php")
        self._link(_SHARE / "program", site / "program")
        self._link(_SHARE / "SQL", site / "SQL")
        self._link(_SHARE / "skins" / "elastic", site / "skins" / "elastic")
        for name in ("jqueryui", "filesystem_attachments"):
            self._link(_SHARE / "plugins" / name, site / "plugins" / name)
        self._link(Path("../plugins"), public / "plugins")
        self._link(Path("../skins"), public / "skins")
        self._link(Path("../../program/js"), public / "program" / "js")
        self._link(Path("../../program/resources"), public / "program" / "resources")
        self._link(_DEFAULTS, site / "config" / "defaults.inc.php")
        plugin = site / "plugins" / "twostep"
        if plugin.exists():
            shutil.rmtree(plugin)
        shutil.copytree(resource("webmail/roundcube/twostep"), plugin)
        (plugin / "config.inc.php").write_text(self._plugin_config())
        for name in ("logs", "temp", "db"):
            (site / name).mkdir(exist_ok=True)
        (site / "config" / "config.inc.php").write_text(self._config())
        # nginx's workers read the static files; the configuration (des_key) and the
        # plugin's settings only PHP, through the pool's group
        for path in (site, *site.rglob("*")):
            if not path.is_symlink():
                os.chmod(path, 0o755 if path.is_dir() else 0o644)
        private = [site / "config", *(site / "config").iterdir(), plugin / "config.inc.php"]
        for path in private:
            if not path.is_symlink():
                os.chmod(path, 0o750 if path.is_dir() else 0o640)
        if os.getuid() == 0:  # the pool's group reads the tree; www-data writes its data
            group = grp.getgrnam(self.twostepd_socket_group()).gr_gid
            for path in (site, *site.rglob("*")):
                if not path.is_symlink():
                    os.chown(path, 0, group)
            for name in ("logs", "temp", "db"):
                shutil.chown(site / name, POOL_USER, group)
                os.chmod(site / name, 0o770)

    def _config(self) -> str:
        values: dict[str, str | int | bool | list[str]] = {
            "db_dsnw": f"sqlite:///{self.site}/db/roundcube.db?mode=0640",
            "imap_host": f"127.0.0.1:{self.imap_port}",
            "smtp_host": f"127.0.0.1:{self.smtp_port}",
            "smtp_user": "%u",
            "smtp_pass": "%p",
            "des_key": secrets.token_urlsafe(18)[:24],
            "log_driver": "file",
            "log_dir": f"{self.site}/logs/",
            "temp_dir": f"{self.site}/temp/",
            "skin": "elastic",
            "product_name": "twostep lab webmail",
            "username_domain": "",
            "mail_domain": "example.org",
            "log_logins": True,
            "enable_installer": False,
            "enable_spellcheck": False,
            "session_lifetime": self.session_lifetime,
            "use_https": True,
            "force_https": False,
            "login_rate_limit": 0,
            "create_default_folders": True,
            "plugins": ["twostep"],
        }
        lines = ["<?php", "// Written by twostep lab.", "$config = [];"]
        for key, value in values.items():
            if isinstance(value, bool):
                rendered = "true" if value else "false"
            elif isinstance(value, int):
                rendered = str(value)
            elif isinstance(value, list):
                rendered = "[" + ", ".join(_php_string(v) for v in value) + "]"
            else:
                rendered = _php_string(value)
            lines.append(f"$config[{_php_string(key)}] = {rendered};")
        return "\n".join(lines) + "\n"

    def _plugin_config(self) -> str:
        return (
            "<?php\n// Written by twostep lab.\n"
            f"$config['twostep_socket'] = {_php_string(str(self.twostepd_socket))};\n"
            "$config['twostep_mail_addresses'] = ['127.0.0.1'];\n"
            f"$config['twostep_portal_url'] = {_php_string(self.portal_url)};\n"
        )

    # -- the processes ------------------------------------------------------------------

    def _fpm_config(self) -> str:
        identity = listen_owner = ""
        if os.getuid() == 0:
            group = self.twostepd_socket_group()
            identity = f"user = {POOL_USER}\ngroup = {group}\n"
            listen_owner = f"listen.owner = {WORKER_USER}\nlisten.group = {WORKER_USER}\n"
        return _FPM.format(d=self.directory, identity=identity, listen_owner=listen_owner)

    def twostepd_socket_group(self) -> str:
        """The group of twostepd's socket, which the pool runs as (see the docstring)."""
        try:
            return grp.getgrgid(self.twostepd_socket.stat().st_gid).gr_name
        except (OSError, KeyError):
            return WORKER_USER

    def start(self) -> None:
        if not Path(NGINX).exists():
            raise RuntimeError(f"{NGINX} is not installed (Debian package nginx)")
        if os.getuid() == 0:
            ensure_pool_user()  # the lab made it before twostepd; a caller of ours may not
        self._build()
        d = self.directory
        (d / "php-fpm.conf").write_text(self._fpm_config())
        self.fpm.process = Process(
            [str(php_fpm()), "--nodaemonize", "--fpm-config", str(d / "php-fpm.conf")],
            d / "php-fpm-output.log",
        )
        self.fpm.pid = self.fpm.process.pid
        wait_for(self._fpm_ready, 20, "php-fpm")
        (d / "tmp").mkdir(exist_ok=True)
        (d / "nginx.conf").write_text(
            _NGINX.format(
                d=d,
                port=self.port,
                certificate=self.certificates.certificate,
                key=self.certificates.key,
                error_log="nginx-error.log",
                user=f"user {WORKER_USER} {WORKER_USER};\n" if os.getuid() == 0 else "",
            )
        )
        self.nginx.process = Process(
            [
                NGINX,
                "-p",
                f"{d}/",
                "-e",
                str(d / "nginx-error.log"),
                "-c",
                str(d / "nginx.conf"),
                "-g",
                "daemon off;",
            ],
            d / "nginx-output.log",
        )
        self.nginx.pid = self.nginx.process.pid
        wait_for(self.ready, 30, "roundcube")

    def _fpm_ready(self) -> bool:
        if self.fpm.process is not None and not self.fpm.process.alive():
            raise RuntimeError(f"php-fpm exited: {self.fpm.log()[-2000:]}")
        return (self.directory / "php-fpm.sock").exists()

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.certificates.ca))

    def ready(self) -> bool:
        """The sign-in page is served (by PHP: it names the product)."""
        if self.nginx.process is not None and not self.nginx.process.alive():
            raise RuntimeError(f"nginx exited: {self.nginx.log()[-2000:]}")
        try:
            with urllib.request.urlopen(  # noqa: S310 - our own https URL
                self.url + "/", timeout=5, context=self.ssl_context()
            ) as response:
                return response.status == 200 and b"twostep lab webmail" in response.read()
        except (OSError, urllib.error.URLError):
            return False

    @property
    def pids(self) -> dict[str, int]:
        return {
            name: pid
            for name, pid in (("php-fpm", self.fpm.pid), ("webmail-nginx", self.nginx.pid))
            if pid is not None
        }

    def stop(self) -> None:
        self.nginx.stop()
        self.fpm.stop()
