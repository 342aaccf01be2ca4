"""Shared fixtures: one private slapd per session, entries reset for every test.

And one check over the whole session: no secret the tests handled may appear in any
log the session wrote (support/leaks.py). It runs when the last test has finished and
fails the run if it finds one.
"""

from __future__ import annotations

import os
import secrets
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import leaks
from support.engines import engine_for
from support.slapd import (
    DEFAULT_POLICY,
    PEOPLE,
    POLICIES,
    SERVICE_DN,
    SERVICE_PASSWORD,
    Slapd,
)

from pam_twostep.audit import MemorySink
from pam_twostep.config import Config, parse_config
from pam_twostep.engine import Engine
from pam_twostep.keyfiles import write_key_file

T0 = 1_800_000_000  # a fixed "now" for tests: 2027-01-15

_STARTED = time.time()


def _release() -> str:
    """The Debian release the suite runs on, named in the header, the summary and JUnit."""
    try:
        fields = dict(
            line.split("=", 1)
            for line in Path("/etc/os-release").read_text().splitlines()
            if "=" in line
        )
    except OSError:
        return "unknown release"
    return fields.get("PRETTY_NAME", "unknown release").strip('"')


RELEASE = _release()


def pytest_report_header(config: pytest.Config) -> str:
    return f"release: {RELEASE}"


@pytest.fixture(scope="session", autouse=True)
def _name_the_release(record_testsuite_property: Any) -> None:
    record_testsuite_property("release", RELEASE)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int) -> None:
    failed = len(terminalreporter.stats.get("failed", [])) + len(
        terminalreporter.stats.get("error", [])
    )
    verdict = f"{failed} failed or errored" if failed else "no failures"
    terminalreporter.write_line(f"release: {RELEASE}: {verdict}", red=bool(failed))


def pytest_configure(config: pytest.Config) -> None:
    logs = Path(tempfile.mkdtemp(prefix="twostep-test-logs-"))
    leaks.install(logs / "in-process.log")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Search every log this session wrote for every secret it handled."""
    temp = Path(tempfile.gettempdir())
    roots = [p for p in temp.iterdir() if _modified_since(p, _STARTED)]
    files = leaks.log_files(roots, _STARTED)
    findings = leaks.scan(files, leaks.remembered())
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    summary = (
        f"secrets in logs: searched {len(files)} log files for "
        f"{len(leaks.remembered())} secrets, found {len(findings)}"
    )
    if reporter is not None:
        reporter.write_line(summary)
        for secret, path in findings[:20]:
            reporter.write_line(f"  {secret[:3]}... in {path}", red=True)
    if findings:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _modified_since(path: Path, since: float) -> bool:
    try:
        return path.is_dir() and path.stat().st_mtime >= since
    except OSError:
        return False


class Clock:
    """The injected clock: tests move time by assignment, never by patching."""

    def __init__(self, now: float = T0) -> None:
        self.now = float(now)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="session")
def slapd_server() -> Iterator[Slapd]:
    directory = Path(tempfile.mkdtemp(prefix="twostep-slapd-"))
    server = Slapd.create_for_tests(directory / "ldap")
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
def slapd(slapd_server: Slapd) -> Slapd:
    if slapd_server.process is None or not slapd_server.process.alive():
        slapd_server.start()
    slapd_server.reset()
    return slapd_server


def make_secrets_dir(directory: Path) -> Path:
    """A key directory and service password file with safe permissions."""
    (directory / "keys").mkdir(parents=True)
    os.chmod(directory / "keys", 0o700)
    write_key_file(directory / "keys" / "k1.key", secrets.token_bytes(32))
    password = directory / "ldap.secret"
    password.write_text(SERVICE_PASSWORD + "\n")
    os.chmod(password, 0o600)
    return directory


@pytest.fixture
def secrets_dir(tmp_path: Path) -> Path:
    return make_secrets_dir(tmp_path / "etc")


def config_data(slapd: Slapd, secrets_dir: Path, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "ldap": {
            "uris": [slapd.uri],
            "bind_dn": SERVICE_DN,
            "bind_password_file": str(secrets_dir / "ldap.secret"),
            "timeout": 3,
            "pool_size": 16,
        },
        "users": {"base": PEOPLE},
        "policy": {"base": POLICIES, "default": DEFAULT_POLICY},
        "keys": {"current": "k1", "directory": str(secrets_dir / "keys")},
        "totp": {"issuer": "Example Mail"},
        "audit": {"syslog": False},
        # The tests' portal runs as root, as self-service (it must be listed there to
        # open sessions at all); root keeps manage for the admin commands.
        "daemon": {"processes": 1, "self_service": {"users": ["root", "twostep-portal"]}},
    }
    for section, values in overrides.items():
        data.setdefault(section, {}).update(values)
    return data


@pytest.fixture
def config(slapd: Slapd, secrets_dir: Path) -> Config:
    return parse_config(config_data(slapd, secrets_dir))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def audit() -> MemorySink:
    return MemorySink()


@pytest.fixture
def engine(config: Config, clock: Clock, audit: MemorySink) -> Iterator[Engine]:
    with engine_for(config, clock, audit) as engine:
        yield engine
