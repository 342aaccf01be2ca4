"""The search for secrets in logs (support/leaks.py, run over every log of the session by
conftest.py) finds a secret however a log line wraps it, and only as a whole word."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from support import leaks

PASSCODE = "QWERTYUIOPASDFGHJKLZXCVB"


@pytest.mark.parametrize(
    "line",
    [
        f"auth alice {PASSCODE}",
        f"password={PASSCODE}",
        f"request {json.dumps({'password': PASSCODE})}",
        f"request {{'password': {PASSCODE!r}}}",
        f"[{PASSCODE}]",
        f"got {PASSCODE}.",
    ],
)
def test_a_secret_is_found_however_it_is_wrapped(tmp_path: Path, line: str) -> None:
    log = tmp_path / "x.log"
    log.write_text(f"one line\n{line}\nanother line\n")
    assert leaks.scan([log], [PASSCODE, "123456"]) == [(PASSCODE, log)]


def test_a_code_inside_a_longer_number_is_not_a_leak(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("t=1800123456 pid 9123456\n")
    assert leaks.scan([log], ["123456"]) == []


def test_secrets_with_separators_are_searched_as_they_are(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("token ab12cd.EF34gh56ij78\n")
    assert leaks.scan([log], ["ab12cd.EF34gh56ij78"]) == [("ab12cd.EF34gh56ij78", log)]


def test_remembered_forms_include_the_grouped_and_compact_spelling() -> None:
    leaks.remember("ABCD EFGH-JKLM")
    assert {"ABCD EFGH-JKLM", "ABCDEFGHJKLM"} <= leaks.remembered()
    leaks.remember("short")  # too short to search for without noise
    assert "short" not in leaks.remembered()


def test_python_logging_reaches_the_session_log(caplog: pytest.LogCaptureFixture) -> None:
    handlers = [h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]
    assert handlers and logging.getLogger().level == logging.DEBUG
    assert Path(handlers[0].baseFilename).name == "in-process.log"
