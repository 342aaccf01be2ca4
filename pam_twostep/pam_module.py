"""The PAM module, for pam_python: password, then a verification code, asked of twostepd.

pam_python starts a fresh interpreter for every PAM transaction and reads the module
file anew, so the file it loads (``twostep_pam.py``, written by the installer) only puts
its directory on ``sys.path`` and imports this module, whose bytecode was compiled at
install time, and ``wire``: nothing but C-level standard modules, nothing that keeps
state between transactions.

Service file lines (see config/pam.d/)::

    auth required pam_python.so /usr/local/lib/twostep/client/twostep_pam.py [ARGS]

ARGS: ``mail`` (one secret, as Dovecot's PAM passdb sends: application passcodes once
two-step is on), ``interactive`` (password then code; the default unless twostepd's
``services.mail`` lists the PAM service), ``try_first_pass`` / ``use_first_pass`` (take
the password an earlier module asked for), ``socket=PATH``, ``timeout=SECONDS``,
``enroll_url=URL`` (told to users whose policy requires two-step and who have not set
it up, and to those it will be required of from a date: ``core.rollout``),
``skip_system`` (below).

``skip_system``: a local system account is not twostep's. A name that ``/etc/passwd``
itself lists (read directly, never through NSS, which may ask the directory) with a uid
below ``UID_MIN`` of ``/etc/login.defs`` (1000 when it is absent or unparseable; uid 0
always counts) gets PAM_IGNORE at once, from ``auth``, ``setcred`` and ``account``: no
prompt, no request to twostepd. Every other name is twostepd's, an unknown one
PAM_USER_UNKNOWN as without the argument; on any doubt (a file that cannot be read, a
malformed line naming the user) the account is not skipped. PAM_IGNORE lets the stack go
on, so the modules after this one must authenticate those accounts themselves:
``[success=end ignore=ignore default=die]`` (pam-auth-update's syntax, which turns ``end``
into a jump; libpam rejects ``end``) followed by pam_unix, never by pam_permit or an
``optional`` module that succeeds regardless.

Trusted devices: an application that remembers a device sets ``TWOSTEP_DEVICE_TOKEN``
with pam_putenv before pam_authenticate; a valid token skips the code. To have a device
trusted after a code, it sets ``TWOSTEP_TRUST_DEVICE`` (the value becomes the device's
label) and reads the new token from ``TWOSTEP_NEW_DEVICE_TOKEN`` with pam_getenv.

Return codes: PAM_SUCCESS; PAM_AUTH_ERR (wrong password or code); PAM_USER_UNKNOWN;
PAM_MAXTRIES (locked out); PAM_AUTHINFO_UNAVAIL (twostepd or the directory cannot be
reached, or anything unexpected: it fails closed); PAM_CONV_ERR (the application could
not ask); PAM_IGNORE (``skip_system``). ``account`` and ``setcred`` succeed (there is
nothing to add there), except for accounts ``skip_system`` skips (PAM_IGNORE);
``password`` is left to other modules (PAM_IGNORE).
"""

# Keeps libpython mapped between PAM transactions. pam_python starts and finalizes an
# interpreter for every transaction; when nothing else holds libpython, it is unloaded and
# loaded again each time, and every reload leaks its static data: 2.6 MB per transaction on
# Python 3.13 (Debian 13), 0.75 MB with libpython kept. A dynamically loaded extension
# module is never unloaded and holds libpython. On 3.11 _json (imported by wire) was such
# a module; on 3.13 it is built in, so this, the smallest extension on both, takes its
# place. Measured in tests/test_pam_module.py::test_200_transactions_in_one_process.
import _contextvars  # noqa: F401
import time  # built in (no file to read): only the reminder's date needs it

from . import wire

# typing costs several milliseconds to import, and this module is imported anew for every
# PAM transaction: the annotations below are strings, resolved by type checkers only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = [
    "DEVICE_TOKEN",
    "LOGIN_DEFS",
    "NEW_DEVICE_TOKEN",
    "PASSWD",
    "TRUST_DEVICE",
    "pam_sm_acct_mgmt",
    "pam_sm_authenticate",
    "pam_sm_chauthtok",
    "pam_sm_close_session",
    "pam_sm_open_session",
    "pam_sm_setcred",
    "system_account",
    "uid_min",
]

DEVICE_TOKEN = "TWOSTEP_DEVICE_TOKEN"
TRUST_DEVICE = "TWOSTEP_TRUST_DEVICE"
NEW_DEVICE_TOKEN = "TWOSTEP_NEW_DEVICE_TOKEN"
_TIMEOUT = 10.0
_MAX_INPUT = 1024
_MAX_USER = 256

# skip_system: read at call time, so tests may point them elsewhere
PASSWD = "/etc/passwd"
LOGIN_DEFS = "/etc/login.defs"
_DEFAULT_UID_MIN = 1000
_MAX_PASSWD = 8 << 20  # bytes; a larger file is an error: nothing is skipped
_MAX_LOGIN_DEFS = 1 << 20
_MAX_UID = 0xFFFFFFFF
# never in a skipped name: whitespace (no stripping), "@" (realm spellings), and what
# cannot be in a passwd name field
_NOT_IN_NAMES = b" \t\n\r\x0b\x0c@:\x00"


class _Options:
    def __init__(self, argv: list[str]) -> None:
        self.flow: str | None = None
        self.try_first_pass = False
        self.use_first_pass = False
        self.socket = wire.DEFAULT_SOCKET
        self.timeout = _TIMEOUT
        self.enroll_url = ""
        self.skip_system = False
        for arg in argv[1:]:
            name, _, value = arg.partition("=")
            if arg == "skip_system":  # exactly: "skip_system=no" must not turn it on
                self.skip_system = True
            elif name in ("mail", "interactive"):
                self.flow = name
            elif name == "try_first_pass":
                self.try_first_pass = True
            elif name == "use_first_pass":
                self.use_first_pass = True
            elif name == "socket" and value:
                self.socket = value
            elif name == "timeout":
                try:
                    seconds = float(value)
                except ValueError:
                    seconds = _TIMEOUT
                self.timeout = seconds if 0.1 <= seconds <= 60 else _TIMEOUT
            elif name == "enroll_url":
                self.enroll_url = value


def _read(path: str, limit: int) -> bytes:
    """The file's bytes; OSError when it cannot be read or holds more than ``limit``."""
    with open(path, "rb") as stream:
        data = stream.read(limit + 1)
    if len(data) > limit:
        raise OSError(f"{path}: larger than {limit} bytes")
    return data


def _ulong(text: bytes) -> int | None:
    """What shadow's getulong accepts (strtoul, base 0), strictly: decimal, ``0x`` hex or
    ``0`` octal digits and nothing else (no sign, no space, no underscore)."""
    if text[:2] in (b"0x", b"0X"):
        digits, base, allowed = text[2:], 16, b"0123456789abcdefABCDEF"
    elif text[:1] == b"0" and len(text) > 1:
        digits, base, allowed = text[1:], 8, b"01234567"
    else:
        digits, base, allowed = text, 10, b"0123456789"
    if not digits or len(digits) > 20 or digits.translate(None, allowed):
        return None
    return int(digits, base)


def uid_min(login_defs: str = LOGIN_DEFS) -> int:
    """``UID_MIN`` as shadow's tools read ``login.defs``: the last definition wins, its
    value is what follows the name (blanks and quotes skipped, up to a quote); 1000 when
    the file or the definition is absent or the value unparseable. ``OSError`` when the
    file exists but cannot be read (the caller then skips nothing)."""
    try:
        data = _read(login_defs, _MAX_LOGIN_DEFS)
    except FileNotFoundError:
        return _DEFAULT_UID_MIN
    value = None
    for raw in data.split(b"\n"):
        line = raw.rstrip().lstrip(b" \t")
        if not line or line[:1] == b"#":
            continue
        name, blank, rest = line.replace(b"\t", b" ").partition(b" ")
        if blank and name == b"UID_MIN":
            value = rest.lstrip(b' "').partition(b'"')[0]
    number = None if value is None else _ulong(value)
    return _DEFAULT_UID_MIN if number is None or number > _MAX_UID else number


def _nss_uid(user: str) -> int:
    import pwd  # noqa: PLC0415 - only on this path, for system accounts

    return pwd.getpwnam(user).pw_uid


def system_account(
    user: str,
    passwd: str = PASSWD,
    login_defs: str = LOGIN_DEFS,
    nss_uid: "Callable[[str], int] | None" = None,
) -> bool:
    """Whether ``user`` is a local system account, which ``skip_system`` leaves to others.

    True only when the name is spelled exactly as in ``passwd`` (no case folding, no
    stripping; never with whitespace, "@" or ":", nor NIS's leading "+"/"-"), at least
    one line names it, and every line naming it is well formed (seven fields, no NUL, a
    uid of 1 to 10 ASCII digits) with uid 0 or a uid below ``UID_MIN``, no line is a NIS
    "+"/"-" entry or names it after leading blanks, and NSS (what pam_unix will ask)
    gives the same uid. Anything else, and any error, is False: twostepd decides. Never
    raises."""
    try:
        name = user.encode("utf-8", "surrogateescape")
        if (
            not name
            or name[:1] in (b"+", b"-")
            or len(name) != len(name.translate(None, _NOT_IN_NAMES))
        ):
            return False
        prefix = name + b":"
        uids = []
        for line in _read(passwd, _MAX_PASSWD).split(b"\n"):
            if line[:1] in (b"+", b"-"):
                return False  # NIS compat entries: NSS may answer with another account
            if not line.startswith(prefix):
                if line.lstrip().startswith(prefix):
                    return False  # glibc reads past leading blanks: another entry of it
                continue
            fields = line.split(b":")
            uid = fields[2] if len(fields) == 7 else b""
            if b"\0" in line or not 0 < len(uid) <= 10 or not uid.isdigit():
                return False  # a malformed line naming the user: do not guess
            uids.append(int(uid))
        if not uids:
            return False
        limit = uid_min(login_defs)  # read even for root: an error means not skipped
        if not all(uid == 0 or uid < limit for uid in uids):
            return False
        # what the modules after this one see (NSS: files, then perhaps sss or ldap)
        # must be that same local account, not a directory user of the same name
        return (nss_uid or _nss_uid)(user) in uids
    except Exception:  # noqa: BLE001 - on any doubt the account is twostepd's
        return False


def _skipped(pamh: "Any", argv: list[str]) -> bool:
    """For ``setcred`` and ``account``: a ``skip_system`` line and a system account."""
    try:
        if not _Options(argv).skip_system:
            return False
        user = pamh.get_user(None)
        return (
            bool(user) and len(user) <= _MAX_USER and system_account(str(user), PASSWD, LOGIN_DEFS)
        )
    except Exception:  # noqa: BLE001 - pamh.exception included: not skipped
        return False


def _say(pamh: "Any", flags: int, style: int, text: str) -> None:
    if flags & pamh.PAM_SILENT:
        return
    try:  # noqa: SIM105 - contextlib would cost an import on every transaction
        pamh.conversation(pamh.Message(style, text))
    except pamh.exception:
        pass  # an application that cannot show text still gets the right return code


def _ask(pamh: "Any", prompt: str) -> str | None:
    response = pamh.conversation(pamh.Message(pamh.PAM_PROMPT_ECHO_OFF, prompt))
    answer = response.resp
    if answer is None or len(answer) > _MAX_INPUT:
        return None
    return str(answer)


def _env(pamh: "Any", name: str) -> str | None:
    try:
        value = pamh.env[name]
    except KeyError:
        return None
    return str(value) if value else None


def _remind(pamh: "Any", flags: int, reply: "dict[str, object]", options: _Options) -> None:
    """A sign-in its policy will refuse from a date on: say so, and where to act."""
    when = reply.get("required_from")
    if not isinstance(when, int) or isinstance(when, bool) or not 0 < when < 253402300800:
        return
    moment = time.gmtime(when)
    day = time.strftime("%Y-%m-%d" if moment[3:6] == (0, 0, 0) else "%Y-%m-%d %H:%M UTC", moment)
    where = f" at {options.enroll_url}" if options.enroll_url else ""
    _say(
        pamh,
        flags,
        pamh.PAM_TEXT_INFO,
        f"Two-step verification will be required for this account from {day}. "
        f"Set it up{where} before then.",
    )


def _deny(
    pamh: "Any", flags: int, reply: "dict[str, object]", options: _Options, interactive: bool
) -> int:
    reason = reply.get("reason")
    if reason == "unknown-user":
        return int(pamh.PAM_USER_UNKNOWN)
    if reason == "locked":
        if interactive:
            _say(
                pamh,
                flags,
                pamh.PAM_ERROR_MSG,
                "This account is locked after too many "
                "failed attempts. Try again later, or ask an administrator to unlock it.",
            )
        return int(pamh.PAM_MAXTRIES)
    if reason == "enrollment-required" and interactive:
        where = f" at {options.enroll_url}" if options.enroll_url else ""
        _say(
            pamh,
            flags,
            pamh.PAM_ERROR_MSG,
            "Two-step verification is required for this "
            f"account. Set it up{where} (or ask an administrator), then sign in again.",
        )
    return int(pamh.PAM_AUTH_ERR)


def _authenticate(pamh: "Any", flags: int, argv: list[str]) -> int:
    options = _Options(argv)
    user = pamh.get_user(None)
    if not user or len(user) > _MAX_USER:
        return int(pamh.PAM_USER_UNKNOWN)
    if options.skip_system and system_account(str(user), PASSWD, LOGIN_DEFS):
        return int(pamh.PAM_IGNORE)  # before any prompt, without asking twostepd
    password = pamh.authtok if (options.try_first_pass or options.use_first_pass) else None
    if not password:
        if options.use_first_pass:
            return int(pamh.PAM_AUTH_ERR)
        password = _ask(pamh, "Password: ")
        if password is None:
            return int(pamh.PAM_CONV_ERR)
    request: dict[str, object] = {
        "op": "auth",
        "user": str(user),
        "password": str(password),
        "service": str(pamh.service or "unknown"),
        "remote": str(pamh.rhost or ""),
    }
    if options.flow:
        request["flow"] = options.flow
    token = _env(pamh, DEVICE_TOKEN)
    if token and options.flow != "mail":
        request["device_token"] = token
    try:
        reply = wire.ask(options.socket, request, options.timeout)
        if reply.get("result") == "challenge":
            code = _ask(pamh, "Verification code: ")
            if code is None:
                return int(pamh.PAM_CONV_ERR)
            request["code"] = code
            continuation = reply.get("continuation")
            if isinstance(continuation, str):
                request["continuation"] = continuation  # spares a second password check
            trust = _env(pamh, TRUST_DEVICE)
            if trust:
                request["trust_device"] = True
                request["device_label"] = trust[:64] if trust != "1" else str(pamh.service)
            reply = wire.ask(options.socket, request, options.timeout)
    except (OSError, wire.ProtocolError):
        return int(pamh.PAM_AUTHINFO_UNAVAIL)
    result = reply.get("result")
    if result == "accept":
        if not pamh.authtok:
            pamh.authtok = password  # for modules stacked after us (use_first_pass)
        new_token = reply.get("device_token")
        if isinstance(new_token, str):
            pamh.env[NEW_DEVICE_TOKEN] = new_token
        if options.flow != "mail":
            _remind(pamh, flags, reply, options)
        return int(pamh.PAM_SUCCESS)
    if result == "deny":
        return _deny(pamh, flags, reply, options, interactive=options.flow != "mail")
    if result == "challenge":  # a code was given and still asked for: not accepted
        return int(pamh.PAM_AUTH_ERR)
    return int(pamh.PAM_AUTHINFO_UNAVAIL)


def pam_sm_authenticate(pamh: "Any", flags: int, argv: list[str]) -> int:
    try:
        return _authenticate(pamh, flags, argv)
    except pamh.exception:
        return int(pamh.PAM_CONV_ERR)
    except Exception:  # noqa: BLE001 - fail closed: never an accept by accident
        return int(pamh.PAM_AUTHINFO_UNAVAIL)


def pam_sm_setcred(pamh: "Any", flags: int, argv: list[str]) -> int:
    return int(pamh.PAM_IGNORE if _skipped(pamh, argv) else pamh.PAM_SUCCESS)


def pam_sm_acct_mgmt(pamh: "Any", flags: int, argv: list[str]) -> int:
    return int(pamh.PAM_IGNORE if _skipped(pamh, argv) else pamh.PAM_SUCCESS)


def pam_sm_open_session(pamh: "Any", flags: int, argv: list[str]) -> int:
    return int(pamh.PAM_SUCCESS)


def pam_sm_close_session(pamh: "Any", flags: int, argv: list[str]) -> int:
    return int(pamh.PAM_SUCCESS)


def pam_sm_chauthtok(pamh: "Any", flags: int, argv: list[str]) -> int:
    return int(pamh.PAM_IGNORE)
