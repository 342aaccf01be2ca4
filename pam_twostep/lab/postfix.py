"""A private Postfix with SMTP AUTH through Dovecot SASL, delivering to nowhere (discard)."""

from __future__ import annotations

import os
import shutil
import smtplib
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .processes import Process, Server, free_port, port_open, wait_for

__all__ = ["Postfix"]

_SERVICES = """\
{listen} inet n - n - - smtpd
cleanup   unix n - n - 0 cleanup
qmgr      unix n - n 300 1 qmgr
rewrite   unix - - n - - trivial-rewrite
bounce    unix - - n - 0 bounce
defer     unix - - n - 0 bounce
trace     unix - - n - 0 bounce
verify    unix - - n - 1 verify
flush     unix n - n 1000? 0 flush
proxymap  unix - - n - - proxymap
showq     unix n - n - - showq
error     unix - - n - - error
retry     unix - - n - - error
discard   unix - - n - - discard
anvil     unix - - n - 1 anvil
scache    unix - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
"""


@dataclass
class Postfix(Server):
    log_name = "postfix.log"

    directory: Path
    sasl_path: Path
    port: int = 0
    process: Process | None = None
    pid: int | None = None

    def write_config(self) -> None:
        d = self.directory
        for name in ("etc", "spool", "data"):
            (d / name).mkdir(parents=True, exist_ok=True)
        os.chmod(d, 0o755)
        shutil.chown(d / "data", "postfix", "postfix")
        self.port = self.port or free_port()
        (d / "etc" / "main.cf").write_text(f"""\
compatibility_level = 3.6
queue_directory = {d}/spool
data_directory = {d}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = twostep.test
mydomain = twostep.test
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mydestination =
alias_maps =
alias_database =
maillog_file = {d}/postfix.log
maillog_file_prefixes = {d}
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = {self.sasl_path}
smtpd_sasl_security_options = noanonymous
smtpd_tls_security_level = none
smtpd_relay_restrictions = permit_sasl_authenticated, reject
default_transport = discard
relay_transport = discard
local_transport = discard
""")
        (d / "etc" / "master.cf").write_text(_SERVICES.format(listen=f"127.0.0.1:{self.port}"))

    def start(self) -> None:
        self.write_config()
        etc = str(self.directory / "etc")
        subprocess.run(["postfix", "-c", etc, "check"], check=True, capture_output=True)
        self.process = Process(["postfix", "-c", etc, "start-fg"], self.directory / "stdout.log")
        self.pid = self.process.pid
        wait_for(lambda: port_open(self.port), 20, "postfix")

    def stop(self) -> None:
        if self.process is None and self.pid is None:
            return
        subprocess.run(
            ["postfix", "-c", str(self.directory / "etc"), "stop"],
            capture_output=True,
            check=False,
        )
        super().stop()

    def send(
        self, user: str, password: str, source: str, mechanism: str = "PLAIN"
    ) -> tuple[int, str]:
        """(code, text) of the AUTH exchange, then a message if it was accepted."""
        with smtplib.SMTP("127.0.0.1", self.port, timeout=30, source_address=(source, 0)) as client:
            client.ehlo("client.test")
            try:
                client.user, client.password = user, password
                code, text = client.auth(mechanism, getattr(client, f"auth_{mechanism.lower()}"))
            except smtplib.SMTPAuthenticationError as exc:
                error = exc.smtp_error
                return exc.smtp_code, error.decode(errors="replace") if isinstance(
                    error, bytes
                ) else str(error)
            client.sendmail(
                f"{user}@example.org",
                ["someone@example.net"],
                b"Subject: twostep test\r\n\r\nhello\r\n",
            )
            return code, text.decode(errors="replace")
