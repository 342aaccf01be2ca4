"""fail2ban: the filter (config/fail2ban/filter.d/twostep.conf) through the real
fail2ban-regex, on audit events as twostepd writes them, in the audit file's form and in
syslog's; one set of them from real failed logins through a running twostepd; and the
jail example (config/fail2ban/jail.d/twostep.conf) through fail2ban-client's own
configuration test.

An address is banned only from "remote", never from what a user typed: a user name or a
passcode label that spells out another address must not get that address banned."""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import config_data, make_secrets_dir
from support.checkpassword import DENY, credentials, run
from support.slapd import USERS, Slapd

from pam_twostep.audit import AuditEvent, FileSink
from pam_twostep.core.decision import Outcome, Reason
from pam_twostep.core.duration import parse_duration
from pam_twostep.core.policy import Policy
from pam_twostep.lab.files import install_clients
from pam_twostep.lab.twostepd import Twostepd

ROOT = Path(__file__).resolve().parents[1]
FILTER = ROOT / "config/fail2ban/filter.d/twostep.conf"
JAIL = ROOT / "config/fail2ban/jail.d/twostep.conf"
LOGROTATE = ROOT / "config/logrotate/twostep"

REGEX = shutil.which("fail2ban-regex")
CLIENT = shutil.which("fail2ban-client")
needs_regex = pytest.mark.skipif(
    REGEX is None, reason="fail2ban-regex is not installed (Debian package fail2ban)"
)
needs_client = pytest.mark.skipif(
    CLIENT is None, reason="fail2ban-client is not installed (Debian package fail2ban)"
)

T0 = 1_800_000_000
COUNTED = {
    "wrong-password",
    "wrong-passcode",
    "wrong-code",
    "replayed",
    "unknown-user",
    "throttled",
    "source-throttled",
}
"""The reasons of a denied login that count as a failure (the filter says why)."""

DENIED = AuditEvent(
    time=T0,
    action="login",
    user="alice",
    outcome="deny",
    service="imap",
    remote="192.0.2.7",
    reason="wrong-passcode",
)
VICTIM = "198.51.100.9"
"""The address hostile user names and labels try to have banned."""

_ROW = re.compile(r"(\S+) (\d+)(?:\.\d*)?")
_LINES = re.compile(r"^Lines: (\d+) lines, (\d+) ignored, (\d+) matched, (\d+) missed", re.M)


def fail2ban_regex(log: Path, *options: str, filter_spec: str = str(FILTER)) -> str:
    assert REGEX is not None
    result = subprocess.run(
        [REGEX, "--raw", *options, str(log), filter_spec],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return result.stdout


def write_log(directory: Path, lines: Sequence[str]) -> Path:
    log = directory / "input.log"
    log.write_text("".join(line + "\n" for line in lines))
    return log


def failures(log: Path, filter_spec: str = str(FILTER)) -> list[tuple[str, int]]:
    """(address, time) of every failure fail2ban finds in ``log``, in order."""
    out = fail2ban_regex(log, "--out", "<ip> <time>", filter_spec=filter_spec)
    found = []
    for row in out.splitlines():
        matched = _ROW.fullmatch(row)
        assert matched is not None, f"unexpected fail2ban-regex output: {row!r}"
        found.append((matched.group(1), int(matched.group(2))))
    return found


def line_counts(log: Path) -> tuple[int, int, int]:
    """(lines, matched, missed) from fail2ban-regex's summary."""
    found = _LINES.search(fail2ban_regex(log, "--print-all-matched"))
    assert found is not None
    lines, ignored, matched, missed = map(int, found.groups())
    assert ignored == 0
    return lines, matched, missed


# -- the audit file's lines ------------------------------------------------------------

FILE_CASES: list[tuple[str, AuditEvent, list[str]]] = [
    ("deny-ipv4", DENIED, ["192.0.2.7"]),
    ("deny-ipv6", replace(DENIED, remote="2001:db8::7"), ["2001:db8::7"]),
    ("deny-v4-mapped", replace(DENIED, remote="::ffff:192.0.2.8"), ["192.0.2.8"]),
    (
        "deny-sshd-password",
        replace(DENIED, service="sshd", reason="wrong-password", remote="203.0.113.5"),
        ["203.0.113.5"],
    ),
    (
        "deny-optional-fields",
        replace(DENIED, reason="wrong-code", label="Phone", device="d1", method="totp"),
        ["192.0.2.7"],
    ),
    ("deny-unknown-user", replace(DENIED, reason="unknown-user", user="nobody"), ["192.0.2.7"]),
    # twostepd counted this wrong secret already: a client retrying it, not a guess
    ("deny-repeat", replace(DENIED, repeat=True), []),
    ("deny-throttled", replace(DENIED, reason="throttled", retry_at=T0 + 60), ["192.0.2.7"]),
    (
        "deny-source-throttled",
        replace(DENIED, reason="source-throttled", retry_at=T0 + 60),
        ["192.0.2.7"],
    ),
    ("deny-non-ascii-user", replace(DENIED, user="åsa"), ["192.0.2.7"]),
    ("deny-no-user-field", replace(DENIED, user=""), ["192.0.2.7"]),
    # not failures
    (
        "accept",
        replace(DENIED, outcome="accept", reason=None, method="passcode", label="Phone"),
        [],
    ),
    ("challenge", replace(DENIED, outcome="challenge", reason="code-required"), []),
    ("tempfail", replace(DENIED, outcome="tempfail", reason="directory-unavailable"), []),
    ("locked", replace(DENIED, reason="locked", retry_at=T0 + 3600), []),
    ("empty-remote", replace(DENIED, remote=""), []),
    ("host-name-remote", replace(DENIED, remote="mail.example.org"), []),
    ("malformed", replace(DENIED, reason="malformed", user=""), []),
    (
        "a-change-not-a-login",
        replace(DENIED, action="passcode-add", outcome="refused", reason="wrong-password"),
        [],
    ),
    # hostile user names and labels: only "remote" is ever an address
    ("user-spells-remote", replace(DENIED, remote="", user=f'x","remote":"{VICTIM}'), []),
    (
        "user-spells-remote-beside-remote",
        replace(DENIED, user=f'x","remote":"{VICTIM}'),
        ["192.0.2.7"],
    ),
    ("user-backslash", replace(DENIED, remote="", user=f'x\\","remote":"{VICTIM}'), []),
    (
        "user-newline-and-a-whole-event",
        replace(DENIED, remote="", user='x"}\n' + replace(DENIED, remote=VICTIM).to_json()),
        [],
    ),
    (
        "accept-user-spells-a-deny",
        replace(
            DENIED,
            outcome="accept",
            reason=None,
            user=f'","outcome":"deny","reason":"wrong-password","remote":"{VICTIM}',
        ),
        [],
    ),
    (
        "accept-label-spells-a-deny",
        replace(
            DENIED,
            outcome="accept",
            reason=None,
            remote="",
            label=f'x","outcome":"deny","reason":"wrong-password","remote":"{VICTIM}',
        ),
        [],
    ),
    (
        "user-unicode-escapes",
        replace(DENIED, remote="", user=f"x\\u0022,\\u0022remote\\u0022:\\u0022{VICTIM}"),
        [],
    ),
]


@needs_regex
@pytest.mark.parametrize(
    ("event", "banned"), [pytest.param(e, b, id=name) for name, e, b in FILE_CASES]
)
def test_audit_file_lines(tmp_path: Path, event: AuditEvent, banned: list[str]) -> None:
    log = tmp_path / "audit.log"
    FileSink(log).emit(event)
    assert failures(log) == [(address, event.time) for address in banned]


@needs_regex
def test_every_reason_is_counted_or_not_on_purpose(tmp_path: Path) -> None:
    """Each reason a login is denied for, one event each: exactly those in COUNTED are
    failures (a new reason fails here until it is put on one side or the other)."""
    reasons = [r.value for r in Reason]
    assert set(reasons) >= COUNTED
    log = tmp_path / "audit.log"
    sink = FileSink(log)
    for n, reason in enumerate(reasons):
        sink.emit(replace(DENIED, time=T0 + n, reason=reason, remote=f"192.0.2.{n + 1}"))
    found = {reasons[t - T0] for _, t in failures(log)}
    assert found == COUNTED
    assert line_counts(log) == (len(reasons), len(COUNTED), len(reasons) - len(COUNTED))


@needs_regex
def test_only_deny_is_a_failure(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    sink = FileSink(log)
    outcomes = [o.value for o in Outcome]
    for n, outcome in enumerate(outcomes):
        sink.emit(replace(DENIED, time=T0 + n, outcome=outcome))
    assert [outcomes[t - T0] for _, t in failures(log)] == ["deny"]


@needs_regex
def test_the_counted_reasons_can_be_changed_by_the_jail(tmp_path: Path) -> None:
    """filter = twostep[reasons="..."], as the filter's comment says."""
    log = tmp_path / "audit.log"
    sink = FileSink(log)
    sink.emit(replace(DENIED, reason="wrong-password", remote="192.0.2.1"))
    sink.emit(replace(DENIED, reason="wrong-passcode", remote="192.0.2.2"))
    narrowed = f'{FILTER}[reasons="wrong-password"]'
    assert failures(log, narrowed) == [("192.0.2.1", T0)]


@needs_regex
def test_a_whole_file_is_counted_line_by_line(tmp_path: Path) -> None:
    events = [event for _, event, _ in FILE_CASES]
    expected = sum(len(banned) for _, _, banned in FILE_CASES)
    log = tmp_path / "audit.log"
    sink = FileSink(log)
    for event in events:
        sink.emit(event)
    lines = len(log.read_text().splitlines())  # a hostile user's newline stays escaped
    assert lines == len(events)
    assert line_counts(log) == (lines, expected, lines - expected)
    assert VICTIM not in {address for address, _ in failures(log)}


# -- syslog's lines: /var/log/auth.log, the journal -------------------------------------

SYSLOG_CASES = [
    pytest.param("Jan 15 10:00:00 mail twostep[1234]: twostep: {}", True, id="rfc3164"),
    pytest.param("Jan  5 10:00:00 mail twostep[1234]: twostep: {}", True, id="rfc3164-day"),
    pytest.param(
        "2027-01-15T10:00:00.123456+01:00 mail twostep[1234]: twostep: {}", True, id="rfc3339"
    ),
    pytest.param("2027-01-15T09:00:00Z mail twostep[1234]: twostep: {}", True, id="rfc3339-z"),
    pytest.param("mail twostep[1234]: twostep: {}", True, id="journal"),
    pytest.param("Jan 15 10:00:00 mail twostep: twostep: {}", True, id="no-pid"),
    pytest.param("Jan 15 10:00:00 mail twostep[1234]: {}", True, id="no-repeated-tag"),
    pytest.param("<38>Jan 15 10:00:00 mail twostep[1234]: twostep: {}", True, id="priority"),
    # another program's line with twostep's text in it
    pytest.param("Jan 15 10:00:00 mail sshd[99]: twostep: {}", False, id="other-tag"),
    pytest.param("Jan 15 10:00:00 mail nottwostep[99]: twostep: {}", False, id="longer-tag"),
    pytest.param(
        "Jan 15 10:00:00 mail su[99]: pam_unix(su:auth): authentication failure; user=twostep: {}",
        False,
        id="pam-unix-user",
    ),
    pytest.param("Jan 15 10:00:00 mail twostep[1234]: twostep: {} trailing", False, id="tail"),
]


@needs_regex
@pytest.mark.parametrize(("form", "counted"), SYSLOG_CASES)
def test_syslog_lines(tmp_path: Path, form: str, counted: bool) -> None:
    """The event's own time is used, not syslog's (Jan 15 of no year)."""
    event = replace(DENIED, time=T0 + 17, remote="2001:db8::17")
    log = write_log(tmp_path, [form.replace("{}", event.to_json())])
    assert failures(log) == ([("2001:db8::17", T0 + 17)] if counted else [])


@needs_regex
@pytest.mark.parametrize(
    "event",
    [
        pytest.param(replace(DENIED, outcome="accept", reason=None), id="accept"),
        pytest.param(replace(DENIED, remote=""), id="empty-remote"),
        pytest.param(replace(DENIED, remote="", user=f'x","remote":"{VICTIM}'), id="hostile"),
        pytest.param(replace(DENIED, reason="locked"), id="locked"),
    ],
)
def test_syslog_lines_that_are_not_failures(tmp_path: Path, event: AuditEvent) -> None:
    log = write_log(
        tmp_path,
        [
            "Jan 15 10:00:00 mail twostep[1234]: twostep: " + event.to_json(),
            "mail twostep[1234]: twostep: " + event.to_json(),
        ],
    )
    assert failures(log) == []


# -- real failed logins through twostepd ------------------------------------------------


@pytest.fixture(scope="module")
def twostepd(slapd_server: Slapd) -> Iterator[tuple[Twostepd, Path, Path]]:
    """A running twostepd writing its audit file, and the checkpassword client (run as
    the dovecot user: the directory is open to it, as support.stack's are)."""
    base = Path(tempfile.mkdtemp(prefix="twostep-fail2ban-"))
    os.chmod(base, 0o755)
    audit = base / "audit.log"
    config = config_data(slapd_server, make_secrets_dir(base / "etc"), audit={"file": str(audit)})
    daemon = Twostepd(base / "daemon", config)
    daemon.start()
    program = install_clients(base / "client", base / "share")
    try:
        yield daemon, program, audit
    finally:
        daemon.stop()


@needs_regex
def test_real_failed_logins_are_counted_by_their_address(
    twostepd: tuple[Twostepd, Path, Path], slapd: Slapd
) -> None:
    """IMAP logins as Dovecot makes them through the checkpassword client: a right
    password, wrong ones from IPv4 and IPv6, an unknown user, and an unknown user named
    to look like an address, from no address at all."""
    daemon, program, audit = twostepd
    audit.unlink(missing_ok=True)

    def login(user: str, password: str, remote: str) -> int:
        env = {"SERVICE": "imap", "TCPREMOTEIP": remote}
        return run(
            program, credentials(user, password), env=env, socket_path=str(daemon.socket)
        ).returncode

    start = int(time.time())
    assert login("bob", USERS["bob"], "192.0.2.61") == 0
    assert login("bob", "not his password", "192.0.2.62") == DENY
    assert login("bob", "not his password either", "2001:db8::63") == DENY
    # the same wrong password again: counted once, by twostepd and by fail2ban
    assert login("bob", "not his password either", "2001:db8::63") == DENY
    assert login("nobody", "whatever", "192.0.2.64") == DENY
    assert login(f'x","remote":"{VICTIM}', "whatever", "") == DENY
    end = int(time.time())

    events = [json.loads(line) for line in audit.read_text().splitlines()]
    logins = [(e["outcome"], e.get("reason"), e.get("remote")) for e in events]
    assert logins == [
        ("accept", None, "192.0.2.61"),
        ("deny", "wrong-password", "192.0.2.62"),
        ("deny", "wrong-password", "2001:db8::63"),
        ("deny", "wrong-password", "2001:db8::63"),
        ("deny", "unknown-user", "192.0.2.64"),
        ("deny", "unknown-user", None),
    ]
    found = failures(audit)
    assert [address for address, _ in found] == ["192.0.2.62", "2001:db8::63", "192.0.2.64"]
    assert [e.get("repeat") for e in events] == [None, None, None, True, None, None]
    assert [t for _, t in found] == [e["time"] for e in (events[1], events[2], events[4])]
    assert all(start <= t <= end for _, t in found)
    assert line_counts(audit) == (6, 3, 3)


# -- the jail ---------------------------------------------------------------------------


def jail_example() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(JAIL)
    assert parser.sections() == ["twostep"]  # the variants are comments
    return parser["twostep"]


def test_the_jail_example_is_off_and_reads_the_rotated_audit_file() -> None:
    jail = jail_example()
    assert jail.getboolean("enabled") is False
    assert jail["filter"] == "twostep"
    assert jail["backend"] == "auto"
    assert jail["logpath"] == "/var/log/twostep/audit.log"
    assert f"\n{jail['logpath']} {{" in LOGROTATE.read_text()
    text = JAIL.read_text()
    assert "# [twostep-journal]" in text and "# backend  = systemd" in text


def test_the_jail_leaves_typos_to_the_daemons_own_throttle() -> None:
    """More failures than the throttle lets through before its first wait, so a user's
    typos meet the daemon's 30 s wait before any ban; banned as long as the lock lasts."""
    jail = jail_example()
    defaults = Policy()
    assert int(jail["maxretry"]) > defaults.throttle_failures
    assert parse_duration(jail["findtime"]) <= defaults.lockout_window
    assert parse_duration(jail["bantime"]) == defaults.lockout_duration


def jail_variant(name: str) -> str:
    """A jail of the example as text: the one set, or a commented variant uncommented."""
    text = JAIL.read_text()
    if name == "twostep":
        return text[text.index("[twostep]") :].split("\n\n", 1)[0] + "\n"
    block = text[text.index(f"# [{name}]") :].split("\n#\n", 1)[0]
    return "".join(line.removeprefix("# ") + "\n" for line in block.splitlines())


@needs_client
@pytest.mark.parametrize("name", ["twostep", "twostep-journal", "twostep-syslog"])
def test_the_jails_pass_fail2bans_configuration_test(tmp_path: Path, name: str) -> None:
    """Each jail, enabled, in a copy of this host's /etc/fail2ban with no other jail
    (Debian's default enables sshd, which wants a log this host may not have); a file
    jail reads a file here. Only the configuration is tested: no server is started."""
    assert CLIENT is not None
    etc = tmp_path / "fail2ban"
    shutil.copytree("/etc/fail2ban", etc)
    shutil.rmtree(etc / "jail.d")
    (etc / "jail.d").mkdir()
    for local in etc.glob("*.local"):
        local.unlink()
    shutil.copy(FILTER, etc / "filter.d/twostep.conf")
    log = tmp_path / "audit.log"
    FileSink(log).emit(DENIED)
    jail = jail_variant(name)
    assert jail.startswith(f"[{name}]\nenabled  = false\n")
    jail = jail.replace("enabled  = false", "enabled  = true", 1)
    jail = re.sub(r"(?m)^logpath  = .*$", f"logpath  = {log}", jail)
    (etc / "jail.d/twostep.local").write_text(jail)

    tested = subprocess.run(
        [CLIENT, "-c", str(etc), "-t"], capture_output=True, text=True, timeout=60, check=False
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "configuration test is successful" in tested.stdout + tested.stderr
    dumped = subprocess.run(
        [CLIENT, "-c", str(etc), "-d"], capture_output=True, text=True, timeout=60, check=False
    )
    assert dumped.returncode == 0, dumped.stdout + dumped.stderr
    backend = "systemd" if name == "twostep-journal" else "auto"
    assert f"'add', '{name}', '{backend}'" in dumped.stdout
    assert (str(log) in dumped.stdout) is (backend == "auto")
    assert f"'{name}', 'maxretry', 10" in dumped.stdout
    assert "'_SYSTEMD_UNIT=twostepd.service', 'SYSLOG_IDENTIFIER=twostep'" in dumped.stdout
