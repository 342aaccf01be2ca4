"""Debian's nginx in front of the lab's portal, as the README tells a deployment to run it.

The portal is meant to sit behind a reverse proxy that terminates TLS and says, in
X-Forwarded-For/-Proto/-Host, who the browser is and what it asked for; a portal only
ever tried over plain HTTP hid that every form behind such a proxy was refused (issue
14 M2). So the lab can run the documented setup: HTTPS on loopback with a certificate
from a private CA made for the purpose, proxying to the portal's UNIX socket with
``portal.trusted_proxies: 1``. Run as root (as the lab is), its workers run as
``www-data``, as Debian's nginx does, and the portal's socket is that group's (0660):
any other local user, ``nobody`` among them, cannot connect to the portal at all and so
cannot forge the X-Forwarded-* it believes. Not as root, nginx and the portal are the
same user.

This nginx is the lab's own, and has nothing to do with a system nginx: its own
configuration, pid file, logs and temporary files in its own directory, nothing read
from /etc/nginx, listening on 127.0.0.1 only, started in the foreground in a session
of its own and stopped by its own pid (never ``nginx -s`` or a name).
"""

from __future__ import annotations

import base64
import grp
import hashlib
import os
import ssl
import urllib.error
import urllib.request
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from .processes import Process, Server, wait_for
from .tls import Certificates, make_certificates

__all__ = ["NGINX", "PREAMBLE", "WORKER_USER", "Nginx", "spki_pin", "worker_group"]

NGINX = "/usr/sbin/nginx"

WORKER_USER = "www-data"
"""Who the workers run as when the lab (nginx's master) runs as root: Debian's nginx
user, whose group the portal's socket is given."""


def worker_group() -> str:
    """The group nginx's workers run as: ``www-data`` as root, else the caller's own."""
    if os.getuid() == 0:
        return WORKER_USER
    return grp.getgrgid(os.getgid()).gr_name


PREAMBLE = """\
{user}pid {directory}/nginx.pid;
error_log {directory}/{error_log} notice;
worker_processes 1;
events {{
    worker_connections 128;
}}
http {{
    # The method, path and status only: never a query string, a header or a body.
    log_format lab '$remote_addr [$time_local] "$request_method $uri" $status';
    access_log {directory}/access.log lab;
    client_body_temp_path {directory}/tmp/body;
    proxy_temp_path {directory}/tmp/proxy;
    fastcgi_temp_path {directory}/tmp/fastcgi;
    uwsgi_temp_path {directory}/tmp/uwsgi;
    scgi_temp_path {directory}/tmp/scgi;
    default_type application/octet-stream;
    server_tokens off;
"""
"""What every lab nginx's configuration begins with (the portal's proxy, the webmail's):
its own pid file, logs and temporary files in its directory, nothing from /etc/nginx
but what a server block includes."""

_CONFIG = (
    """\
# Written by twostep lab: the lab's own nginx. Nothing here reads /etc/nginx or
# writes outside {directory}.
"""
    + PREAMBLE
    + """

    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {certificate};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        client_max_body_size 64k;

        location / {{
            # The portal's UNIX socket (portal.listen): only its group may connect.
            proxy_pass http://unix:{backend}:;
            # $http_host keeps the port the browser used (the lab's is not 443), so the
            # portal's Origin check sees the origin the browser sends.
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-Host $http_host;
            # Replaced, not appended to: what the browser sent in it is never believed.
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Proto $scheme;
        }}
    }}
}}
"""
)


def spki_pin(certificate: Path) -> str:
    """base64 of the SHA-256 of a certificate's SubjectPublicKeyInfo: what Chromium's
    ``--ignore-certificate-errors-spki-list`` takes, so that a browser accepts this one
    key of the lab's and still refuses every other certificate it is not configured to
    trust."""
    cert = x509.load_pem_x509_certificate(certificate.read_bytes())
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


class Nginx(Server):
    """HTTPS on ``127.0.0.1:port``, proxying to the portal's UNIX socket ``backend``."""

    log_name = "error.log"

    def __init__(self, directory: Path, port: int, backend: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.port = port
        self.backend = backend
        self.process: Process | None = None
        self.pid: int | None = None
        self.certificates: Certificates = make_certificates(
            directory / "tls", label="twostep lab portal"
        )
        self.config_path = directory / "nginx.conf"
        self.access_log = directory / "access.log"

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def spki_pin(self) -> str:
        return spki_pin(self.certificates.certificate)

    def write_config(self) -> None:
        (self.directory / "tmp").mkdir(exist_ok=True)
        self.config_path.write_text(
            _CONFIG.format(
                directory=self.directory,
                port=self.port,
                certificate=self.certificates.certificate,
                key=self.certificates.key,
                backend=self.backend,
                error_log="error.log",
                user=f"user {WORKER_USER} {WORKER_USER};\n" if os.getuid() == 0 else "",
            )
        )

    def start(self) -> None:
        if not Path(NGINX).exists():
            raise RuntimeError(f"{NGINX} is not installed (Debian package nginx)")
        self.write_config()
        self.process = Process(
            [
                NGINX,
                "-p",
                f"{self.directory}/",
                "-e",
                str(self.directory / "error.log"),
                "-c",
                str(self.config_path),
                "-g",
                "daemon off;",
            ],
            self.directory / "output.log",
        )
        self.pid = self.process.pid
        wait_for(self.ready, 20, "nginx")

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts the lab's CA and nothing else, names checked."""
        return ssl.create_default_context(cafile=str(self.certificates.ca))

    def ready(self) -> bool:
        if self.process is not None and not self.process.alive():
            raise RuntimeError(f"nginx exited: {self.log()[-2000:]}")
        try:
            with urllib.request.urlopen(  # noqa: S310 - our own https URL
                self.url + "/signin", timeout=1, context=self.ssl_context()
            ) as response:
                return bool(response.status == 200)
        except (OSError, urllib.error.URLError):
            return False
