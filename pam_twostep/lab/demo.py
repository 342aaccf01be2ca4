"""``make demo``: the user guide's story, played on a private lab stack.

Alice turns two-step verification on (QR code shown), signs in with her password and a
code, uses a backup code, adds an application passcode for Thunderbird, reads her mail
over IMAP with it, is refused with her plain password, sends over SMTP AUTH with it,
revokes it and is refused; then she signs in to the webmail from a new browser and is
asked for a code. Every step runs the real command or protocol and shows it;
the demo plays Alice's phone by computing the codes her authenticator app would show.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import wire
from ..core.totp import TotpParams, decode_secret, time_step, totp
from .demo_webmail import webmail_sign_in
from .dovecot import SourceIMAP
from .postfix import Postfix
from .stack import Lab, LabError

__all__ = ["main"]

_BOLD, _DIM, _OFF = ("\033[1m", "\033[2m", "\033[0m") if sys.stdout.isatty() else ("", "", "")


def say(text: str) -> None:
    print(f"\n{_BOLD}{textwrap.fill(text, 88)}{_OFF}", flush=True)


def twostep(config: str, *args: str, stdin: str | None = None) -> str:
    """Run the twostep command as an administrator would, and show it."""
    print(f"{_DIM}$ twostep {' '.join(args)}{_OFF}", flush=True)
    result = subprocess.run(
        [sys.executable, "-m", "pam_twostep.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "TWOSTEP_CONFIG": config},
    )
    print(textwrap.indent(result.stdout.rstrip() or result.stderr.rstrip(), "  "), flush=True)
    if result.returncode != 0:
        raise SystemExit(
            f"demo: 'twostep {args[0]}' failed ({result.returncode}): {result.stderr.strip()}"
        )
    return result.stdout


def pam_sign_in(info: dict[str, Any], user: str, answers: list[str]) -> bool:
    """An interactive login through PAM, as sshd or login would do it (pamtester)."""
    service = info["pam_service"]
    print(
        f"{_DIM}$ pamtester {service} {user} authenticate   "
        f"# answers: {', '.join('******' for _ in answers)}{_OFF}",
        flush=True,
    )
    result = subprocess.run(
        ["pamtester", service, user, "authenticate"],
        input="".join(a + "\n" for a in answers),
        capture_output=True,
        text=True,
        check=False,
    )
    shown = (result.stderr + result.stdout).replace("Password: ", "Password: ******\n")
    shown = shown.replace("Verification code: ", "Verification code: ******\n")
    print(textwrap.indent(shown.strip(), "  "), flush=True)
    return result.returncode == 0


def sign_in(info: dict[str, Any], user: str, password: str, code: str | None) -> dict[str, Any]:
    """What sshd or a web sign-in asks twostepd (the PAM module does this for sshd)."""
    request: dict[str, object] = {
        "op": "auth",
        "user": user,
        "password": password,
        "service": "sshd",
        "remote": "192.0.2.10",
    }
    if code is not None:
        request["code"] = code
    reply = wire.ask(info["daemon_socket"], request, 10)
    shown = {k: v for k, v in reply.items() if k in ("result", "method", "reason")}
    print(
        f"{_DIM}  sshd asks twostepd for {user}"
        f"{' with a code' if code else ''}: {json.dumps(shown)}{_OFF}",
        flush=True,
    )
    return reply


def imap(info: dict[str, Any], user: str, secret: str, source: str) -> str:
    client = SourceIMAP("127.0.0.1", info["imap_port"], source)
    try:
        client.login(user, secret)
        client.select("INBOX")
        answer = "OK: logged in, INBOX selected"
    except Exception as exc:  # noqa: BLE001 - shown to the reader as it is
        answer = f"refused: {exc}"
    finally:
        with contextlib.suppress(Exception):  # the connection may be gone already
            client.logout()
    print(f"{_DIM}  IMAP LOGIN {user} ****** -> {answer}{_OFF}", flush=True)
    return answer


def next_code(key: bytes, params: TotpParams, after_step: int) -> str:
    """Wait, as Alice would, until her app shows a code she has not used yet."""
    if time_step(time.time(), params.period) <= after_step:
        left = params.period - int(time.time()) % params.period
        print(
            f"{_DIM}  (the code she confirmed with is used up: waiting {left} s for the "
            f"app's next one){_OFF}",
            flush=True,
        )
    while time_step(time.time(), params.period) <= after_step:
        time.sleep(0.2)
    return totp(key, time.time(), params)


def play(lab: Lab, info: dict[str, Any]) -> None:
    config = info["config"]
    alice = next(u["password"] for u in info["users"] if u["name"] == "alice")

    say(
        "1. Alice opens Account Security and chooses to set up two-step verification. "
        "She gives her password first; she gets a QR code and the same key in groups of "
        "four for typing."
    )
    begun = twostep(config, "enroll", "alice", "--begin", stdin=alice + "\n")
    key_line = re.search(r"Or type the key: ([A-Z2-7 ]+)", begun)
    if key_line is None:
        raise SystemExit("demo: the key was not shown")
    key = decode_secret(key_line.group(1))
    params = TotpParams()

    say(
        "2. Her authenticator app now shows a 6-digit code; she types it to confirm, and "
        "receives her one-time backup codes, shown once."
    )
    confirm_step = time_step(time.time(), params.period)
    confirmed = twostep(
        config, "enroll", "alice", "--confirm", totp(key, time.time(), params), "--json"
    )
    backup_codes = json.loads(confirmed)["backup_codes"]

    if info.get("pam_service"):
        say(
            "3. She signs in interactively through PAM, as sshd or login would: the "
            "password, then the code her app shows now."
        )
        if not pam_sign_in(info, "alice", [alice, next_code(key, params, confirm_step)]):
            raise SystemExit("demo: the PAM sign-in with password and code was refused")
        say(
            "4. Her phone's battery is flat: she uses a backup code instead. It works "
            "once; she has one fewer left."
        )
        if not pam_sign_in(info, "alice", [alice, backup_codes[0]]):
            raise SystemExit("demo: the backup code was refused")
        if pam_sign_in(info, "alice", [alice, backup_codes[0]]):
            raise SystemExit("demo: a used backup code worked twice")
    else:
        say(
            "3. She signs in interactively (as through sshd; PAM needs root here): password "
            "first, and twostepd asks for a code; then password and her app's code."
        )
        assert_result(sign_in(info, "alice", alice, None), "challenge")
        assert_result(sign_in(info, "alice", alice, next_code(key, params, confirm_step)), "accept")
        say(
            "4. Her phone's battery is flat: she uses a backup code instead. It works once; "
            "she has one fewer left."
        )
        assert_result(sign_in(info, "alice", alice, backup_codes[0]), "accept")
        assert_result(sign_in(info, "alice", alice, backup_codes[0]), "deny")
    twostep(config, "codes", "alice")

    say(
        "5. Thunderbird cannot answer a code prompt, so she creates an application "
        "passcode for it. It is shown once."
    )
    added = json.loads(twostep(config, "passcode", "add", "alice", "Thunderbird", "--json"))
    passcode = added["passcode"]
    print(f"  passcode for 'Thunderbird': {passcode}")

    say(
        "6. Thunderbird logs in over IMAP with the passcode. Her plain password no longer "
        "works there: with two-step on, mail services accept passcodes only."
    )
    ok = imap(info, "alice", passcode.lower().replace("-", ""), "127.0.0.11")
    refused = imap(info, "alice", alice, "127.0.0.12")
    if not ok.startswith("OK") or not refused.startswith("refused"):
        raise SystemExit("demo: IMAP did not behave as described")

    say(
        "7. It sends mail through SMTP AUTH (Postfix asks Dovecot, which asks twostepd) "
        "with the same passcode."
    )
    postfix = Postfix(Path(info["dir"]) / "postfix", Path("/"), port=info["smtp_port"])
    code, text = postfix.send("alice", passcode, "127.0.0.13")
    print(f"{_DIM}  SMTP AUTH PLAIN alice ****** -> {code} {text}{_OFF}")
    if code != 235:
        raise SystemExit("demo: SMTP AUTH refused the passcode")

    say("8. Account Security shows when and from where the passcode was last used.")
    twostep(config, "status", "alice")

    say("9. She revokes the passcode; Thunderbird is refused at once.")
    twostep(config, "passcode", "revoke", "alice", "Thunderbird")
    refused = imap(info, "alice", passcode, "127.0.0.14")
    if not refused.startswith("refused"):
        raise SystemExit("demo: a revoked passcode still worked")

    if "webmail_url" in info:
        say(
            "10. She opens the webmail (Roundcube) in a new browser: her password, then a "
            "code, as in Zimbra's web client. Roundcube reads her mail with a credential "
            "twostepd gave it for this session, never her password."
        )
        step = time_step(time.time(), params.period)
        asked, inbox = webmail_sign_in(info, "alice", alice, lambda: next_code(key, params, step))
        print(f"{_DIM}  {info['webmail_url']}: asked for a code: {asked}, inbox: {inbox}{_OFF}")
        if not (asked and inbox):
            raise SystemExit("demo: the webmail sign-in did not go as described")
        twostep(config, "webmail", "list", "alice")


def assert_result(reply: dict[str, Any], expected: str) -> None:
    if reply.get("result") != expected:
        raise SystemExit(f"demo: expected {expected}, got {reply}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--passdb", choices=("lua", "checkpassword"), default="lua")
    arguments = parser.parse_args(argv)
    lab = Lab(arguments.dir)
    try:
        lab.down()
        say(
            "Starting a private stack on loopback: slapd, twostepd, Dovecot, Postfix, the "
            "portal and Roundcube."
        )
        info = lab.up(passdb=arguments.passdb, webmail=True)
    except LabError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return exc.code
    print(textwrap.indent(lab.describe(info), "  "))
    play(lab, info)
    say("Done. Everything is still running; try it by hand:")
    print(
        textwrap.indent(
            textwrap.dedent(f"""\
        export TWOSTEP_CONFIG={info["config"]}
        twostep status alice
        twostep passcode add alice Phone --services imap
        python3 -c 'import imaplib; m = imaplib.IMAP4("127.0.0.1", {info["imap_port"]}); \\
            print(m.login("alice", input("passcode: ")))'
        make demo-stop            # stops exactly what the demo started"""),
            "  ",
        )
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
