"""logrotate: config/logrotate/twostep run by the real logrotate on an audit file in a
scratch directory (its path, and its owner twostep, rewritten to this test's), forced.

twostepd's FileSink opens the file for every event, so rotating is renaming: the copies
must be the names ``twostep report readiness`` reads back (``auditlog.rotated_files``),
and an event written after a rotation, by the same sink, lands in the new file."""

from __future__ import annotations

import gzip
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from pam_twostep.audit import AuditEvent, FileSink
from pam_twostep.auditlog import AuditReader, rotated_files

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "config/logrotate/twostep"
SHIPPED_PATH = "/var/log/twostep/audit.log"
LOGROTATE = shutil.which("logrotate") or (
    "/usr/sbin/logrotate" if os.access("/usr/sbin/logrotate", os.X_OK) else None
)
needs_logrotate = pytest.mark.skipif(
    LOGROTATE is None, reason="logrotate is not installed (Debian package logrotate)"
)

T0 = 1_800_000_000
NOW = T0 + 86400


def event(n: int) -> AuditEvent:
    return AuditEvent(T0 + n, "login", "bob", "deny", "imap", "192.0.2.7", reason="wrong-password")


def directives() -> list[str]:
    """The directives in the shipped file's one block, comments left out."""
    text = CONFIG.read_text()
    block = re.search(r"^(\S+) \{\n(.*?)^\}", text, re.M | re.S)
    assert block is not None and block.group(1) == SHIPPED_PATH
    lines = (line.split("#", 1)[0].strip() for line in block.group(2).splitlines())
    return [line for line in lines if line]


def test_rotation_is_by_rename_with_a_new_file_for_twostep() -> None:
    """No copytruncate (it loses what is written between copy and truncate) and no
    signal: FileSink reopens the path for every event. No dateext needed either:
    readiness reads numbered copies (and dated ones, were dateext set)."""
    found = directives()
    assert "copytruncate" not in found
    assert not any(d.startswith(("postrotate", "prerotate", "dateext")) for d in found)
    for wanted in ("compress", "delaycompress", "missingok", "notifempty"):
        assert wanted in found
    assert "create 0640 twostep adm" in found
    assert "su twostep adm" in found
    assert "daily" in found or "weekly" in found
    kept = next(int(d.split()[1]) for d in found if d.startswith("rotate "))
    assert kept >= 60  # the report's default --since is 30 days; twice that at least


def scratch_config(tmp_path: Path) -> tuple[Path, Path]:
    """The shipped file for ``tmp_path``/audit.log, root's instead of twostep's (there
    is no user twostep here, and tmp_path is root's)."""
    log = tmp_path / "audit.log"
    text = CONFIG.read_text()
    assert f"\n{SHIPPED_PATH} {{" in text
    text = text.replace(f"\n{SHIPPED_PATH} {{", f"\n{log} {{")
    text = text.replace("create 0640 twostep adm", "create 0640 root root")
    text = text.replace("su twostep adm", "su root root")
    config = tmp_path / "logrotate.conf"
    config.write_text(text)
    config.chmod(0o644)  # logrotate ignores a configuration others may write
    return config, log


def logrotate(config: Path, state: Path) -> subprocess.CompletedProcess[str]:
    assert LOGROTATE is not None
    result = subprocess.run(
        [LOGROTATE, "--force", "--verbose", "--state", str(state), str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "error" not in result.stderr.lower(), result.stderr
    return result


def times(paths: list[Path]) -> list[int]:
    with AuditReader(paths, NOW) as reader:
        return [e.time - T0 for e in reader.events()]


@needs_logrotate
@pytest.mark.skipif(os.geteuid() != 0, reason="logrotate's su and create need root")
def test_rotated_copies_are_what_readiness_reads(tmp_path: Path) -> None:
    config, log = scratch_config(tmp_path)
    state = tmp_path / "logrotate.state"
    sink = FileSink(log)  # one sink all along, as in a twostepd that keeps running

    sink.emit(event(1))
    sink.emit(event(2))
    logrotate(config, state)
    # renamed, not compressed yet (delaycompress), and an empty new file for twostepd
    assert sorted(p.name for p in tmp_path.glob("audit.log*")) == ["audit.log", "audit.log.1"]
    created = log.stat()
    assert created.st_size == 0
    assert stat.S_IMODE(created.st_mode) == 0o640
    assert (created.st_uid, created.st_gid) == (0, 0)

    sink.emit(event(3))  # the same sink writes to the new file, not to audit.log.1
    assert log.stat().st_ino == created.st_ino
    assert times([log]) == [3]
    assert times([tmp_path / "audit.log.1"]) == [1, 2]

    logrotate(config, state)
    sink.emit(event(4))
    copies = rotated_files(log)
    assert [p.name for p in copies] == ["audit.log.2.gz", "audit.log.1", "audit.log"]
    with gzip.open(tmp_path / "audit.log.2.gz") as compressed:
        assert len(compressed.read().splitlines()) == 2
    assert times(copies) == [1, 2, 3, 4]

    logrotate(config, state)
    rotated = ["audit.log.3.gz", "audit.log.2.gz", "audit.log.1", "audit.log"]
    assert [p.name for p in rotated_files(log)] == rotated
    # nothing written since: notifempty leaves the empty new file alone
    logrotate(config, state)
    assert [p.name for p in rotated_files(log)] == rotated
    assert times(rotated_files(log)) == [1, 2, 3, 4]


@needs_logrotate
@pytest.mark.skipif(os.geteuid() != 0, reason="logrotate's su needs root")
def test_no_audit_file_yet_is_no_error(tmp_path: Path) -> None:
    """missingok: before twostepd's first event (or with audit.file unset)."""
    config, log = scratch_config(tmp_path)
    logrotate(config, tmp_path / "logrotate.state")
    assert not log.exists()
    FileSink(log).emit(event(1))
    assert times(rotated_files(log)) == [1]
