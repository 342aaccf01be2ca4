"""What a mail program, an ssh client and a browser see of the fresh root's services.

tests/test_source_install.py runs this with the suite's Python inside the fresh root's
private network (``FreshRoot.network_argv``), where the services listen on their usual
ports. One check per run; it prints JSON: ``{"ok": bool, ...}``.

    install_probe.py imap|pop3|submission USER SECRET
    install_probe.py smtp25 RECIPIENT
    install_probe.py ssh USER PASSWORD CODE
    install_probe.py portal URL CA USER PASSWORD CODE   (CA -: any certificate)
"""

from __future__ import annotations

import imaplib
import json
import poplib
import smtplib
import ssl
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from support.portal_client import Client

_HOST = "127.0.0.1"


def _unverified() -> ssl.SSLContext:
    # Debian's snakeoil certificates are self-signed, for a name that is not loopback
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def imap(user: str, secret: str) -> dict[str, Any]:
    client = imaplib.IMAP4(_HOST, 143)
    try:
        client.starttls(_unverified())
        client.login(user, secret)
        status, _ = client.select("INBOX")
        return {"ok": True, "select": status}
    except imaplib.IMAP4.error as exc:
        return {"ok": False, "error": str(exc)}
    finally:
        client.shutdown()


def pop3(user: str, secret: str) -> dict[str, Any]:
    client = poplib.POP3(_HOST, 110)
    try:
        client.stls(_unverified())
        client.user(user)
        client.pass_(secret)
        return {"ok": True, "stat": list(client.stat())}
    except poplib.error_proto as exc:
        return {"ok": False, "error": str(exc)}
    finally:
        client.close()


def submission(user: str, secret: str) -> dict[str, Any]:
    with smtplib.SMTP(_HOST, 587, timeout=30) as client:
        client.starttls(context=_unverified())
        try:
            client.login(user, secret)
        except smtplib.SMTPAuthenticationError as exc:
            return {"ok": False, "code": exc.smtp_code, "error": exc.smtp_error.decode()}
        refused = client.sendmail(f"{user}@localhost", [f"{user}@localhost"], b"Subject: t\n\nt\n")
        return {"ok": not refused}


def smtp25(recipient: str) -> dict[str, Any]:
    """Mail from outside, unauthenticated, as port 25 must go on taking it."""
    with smtplib.SMTP(_HOST, 25, timeout=30) as client:
        # smtpd_tls_auth_only hides AUTH before TLS: look after STARTTLS too
        plain = client.ehlo()[1].decode()
        client.starttls(context=_unverified())
        features = plain + client.ehlo()[1].decode()
        try:
            client.sendmail("someone@example.net", [recipient], b"Subject: in\n\nhello\n")
        except smtplib.SMTPException as exc:
            return {"ok": False, "error": str(exc)}
        return {"ok": True, "auth_offered": "AUTH" in features}


def ssh(user: str, password: str, code: str) -> dict[str, Any]:
    import paramiko

    asked: list[str] = []

    def answer(_title: str, _instructions: str, prompts: list[tuple[str, bool]]) -> list[str]:
        asked.extend(prompt for prompt, _echo in prompts)
        return [code if "code" in p.lower() else password for p, _echo in prompts]

    transport = paramiko.Transport((_HOST, 22))
    try:
        transport.start_client(timeout=30)
        try:
            transport.auth_interactive(user, answer)
        except paramiko.AuthenticationException:
            return {"ok": False, "asked": asked}
        return {"ok": transport.is_authenticated(), "asked": asked}
    finally:
        transport.close()


def portal(url: str, ca: str, user: str, password: str, code: str) -> dict[str, Any]:
    client = Client(url, _HOST, None if ca == "-" else ca)
    if ca == "-":
        client.context = _unverified()
    status, headers = client.sign_in(user, password, Origin=url)
    steps: list[Any] = [status, headers.get("Location")]
    if status == 302 and headers.get("Location") == "/signin/code":
        client.request("GET", "/signin/code")
        status, headers, _ = client.request("POST", "/signin/code", {"code": code}, Origin=url)
        steps += [status, headers.get("Location")]
    status, _, page = client.request("GET", "/")
    return {"ok": status == 200 and "Account Security" in page, "steps": steps}


def main(argv: list[str]) -> int:
    checks = {
        "imap": imap,
        "pop3": pop3,
        "submission": submission,
        "smtp25": smtp25,
        "ssh": ssh,
        "portal": portal,
    }
    print(json.dumps(checks[argv[0]](*argv[1:])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
