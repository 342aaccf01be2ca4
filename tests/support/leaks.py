"""No secret in any log: every secret the tests handle is remembered, and when the whole
suite has run, every log it produced is searched for them (conftest.py).

Secrets are remembered where they pass through the tests: what the engine hands out and
takes in, every request and reply on the daemon's socket, the answers typed into PAM,
the passwords given to IMAP, POP3 and SMTP, the fd 3 input of checkpassword, TOTP
codes computed, key files and directory passwords written. Logs are every ``*.log``
file the session wrote (twostepd, Dovecot, Postfix, slapd, sshd, audit files) and every
record of Python's logging in this process, at DEBUG level.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import stat
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

__all__ = ["install", "log_files", "remember", "remembered", "scan"]

_SECRETS: set[str] = set()
_SEPARATORS = re.compile(r"[\s\"'`=:,;()\[\]{}<>|./\\]+")
_REPLY_SECRETS = ("passcode", "secret", "key", "device_token", "continuation", "password")
_REQUEST_SECRETS = ("password", "code", "device_token", "old", "new", "continuation")


def remember(*values: object) -> None:
    for value in values:
        if isinstance(value, str | bytes):
            text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
            for form in (text, re.sub(r"[\s-]", "", text)):
                if len(form) >= 6:
                    _SECRETS.add(form)
        elif isinstance(value, list | tuple | set):
            remember(*value)


def remembered() -> frozenset[str]:
    return frozenset(_SECRETS)


def _wrap(owner: Any, name: str, record: Callable[..., None]) -> None:
    original = getattr(owner, name)

    @functools.wraps(original)
    def recording(*args: Any, **kwargs: Any) -> Any:
        try:
            result = original(*args, **kwargs)
        except BaseException:
            # what was passed in is remembered even when the call was refused
            with contextlib.suppress(Exception):
                record(None, *args, **kwargs)
            raise
        record(result, *args, **kwargs)
        return result

    recording.__wrapped_for_leaks__ = True  # type: ignore[attr-defined]
    if not getattr(original, "__wrapped_for_leaks__", False):
        setattr(owner, name, recording)


def _fields(mapping: object, names: Iterable[str]) -> None:
    if isinstance(mapping, dict):
        remember(*(mapping.get(n) for n in names))
        remember(mapping.get("backup_codes"))


def install(session_log: Path) -> None:
    """Start remembering, and send every logging record of this process to a file."""
    from support import checkpassword, pam
    from support.slapd import ADMIN_PASSWORD, SERVICE_PASSWORD, USERS

    from pam_twostep import engine, keyfiles, wire
    from pam_twostep.core import totp
    from pam_twostep.lab import dovecot, postfix
    from pam_twostep.lab import slapd as lab_slapd

    remember(ADMIN_PASSWORD, SERVICE_PASSWORD, *USERS.values())

    def ask(reply: Any, path: str, request: Any, *_: Any, **__: Any) -> None:
        _fields(request, _REQUEST_SECRETS)
        _fields(reply, _REPLY_SECRETS)

    _wrap(wire, "ask", ask)
    _wrap(totp, "totp", lambda code, *_, **__: remember(code))
    _wrap(keyfiles, "write_key_file", lambda _, path, key: remember(Path(path).read_text().strip()))

    # The parts, patched in place: whether a caller goes through Engine's delegates or
    # holds engine.logins or engine.accounts itself, every call passes through these.
    logins, accounts = engine.Authenticator, engine.AccountManager
    _wrap(
        logins,
        "authenticate",
        lambda decision, _self, _user, attempt, **__: remember(
            attempt.secret,
            attempt.code,
            attempt.device_token,
            getattr(decision, "device_token", None),
        ),
    )
    _wrap(
        accounts,
        "enroll_begin",
        lambda shown, _self, _user, password, code=None, **__: remember(
            password, code, getattr(shown, "secret", None)
        ),
    )
    _wrap(accounts, "enroll_confirm", lambda codes, _s, _u, code, **__: remember(code, codes))
    _wrap(accounts, "regenerate_backup_codes", lambda codes, *_, **__: remember(codes))
    _wrap(accounts, "add_passcode", lambda new, *_, **__: remember(getattr(new, "passcode", None)))
    _wrap(accounts, "change_password", lambda _, _self, _user, old, new, **__: remember(old, new))
    _wrap(
        accounts,
        "disable",
        lambda *_, password=None, code=None, **__: remember(password, code),
    )

    _wrap(pam, "pamtester", lambda _, _s, _u, answers, **__: remember(answers))
    _wrap(
        pam,
        "in_process",
        lambda results, _s, transactions: remember(
            *(t.get("answers", ()) for t in transactions),
            *(r.get("new_token") for r in results or ()),
        ),
    )
    _wrap(
        checkpassword,
        "run",  # fd 3 is user NUL password NUL ...: the password only
        lambda _, _p, data, **__: remember(*(data or b"").split(b"\0")[1:2]),
    )
    for method in ("imap_login", "pop3_login"):
        _wrap(
            dovecot.Dovecot,
            method,
            lambda _, _self, _user, password, *__, **___: remember(password),
        )
    _wrap(postfix.Postfix, "send", lambda _, _self, _user, password, *__, **___: remember(password))
    _wrap(lab_slapd, "user_ldif", lambda _, _names, _name, password: remember(password))
    _wrap(
        lab_slapd.Slapd,
        "_config_ldif",
        lambda _, server: remember(server.names.admin_password, server.names.service_password),
    )

    handler = logging.FileHandler(session_log)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)


def log_files(roots: Iterable[Path], since: float) -> list[Path]:
    found = []
    for root in roots:
        for directory, _, names in os.walk(root):
            for name in names:
                path = Path(directory) / name
                try:
                    # regular files only: a FIFO named *.log (anyone may make one in
                    # /tmp) would block the scan's read for ever
                    info = path.stat()
                    regular = stat.S_ISREG(info.st_mode)
                    if name.endswith(".log") and regular and info.st_mtime >= since:
                        found.append(path)
                except OSError:
                    continue
    return found


def scan(paths: Iterable[Path], secrets: Iterable[str]) -> list[tuple[str, Path]]:
    """(secret, file) for every secret found in a file, as a word of its own or, for
    secrets that are not one word, anywhere."""
    findings = []
    secrets = list(secrets)
    for path in paths:
        try:
            text = path.read_text("utf-8", "replace")
        except OSError:
            continue
        words = set(_SEPARATORS.split(text))
        for secret in secrets:
            one_word = _SEPARATORS.search(secret) is None
            if (secret in words) if one_word else (secret in text):
                findings.append((secret, path))
    return findings
