"""The example configuration shipped in config/ parses as it stands."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from pam_twostep.config import load_config

CONFIG = Path(__file__).resolve().parents[1] / "config"


def test_example_twostep_yaml_is_valid() -> None:
    config = load_config(CONFIG / "twostep.yaml")
    assert config.users.username_attribute == "uid"
    assert config.totp.issuer == "Example Mail"


@pytest.mark.skipif(shutil.which("postconf") is None, reason="Postfix is not installed")
def test_the_postfix_snippet_appended_as_its_header_says_gives_exact_values(
    tmp_path: Path,
) -> None:
    """Postfix keeps a trailing "# ..." as part of the value: appended with such comments,
    smtpd_sasl_auth_enable was "no # enabled per service..." and Postfix stopped."""
    snippet = (CONFIG / "postfix/main.cf.twostep").read_text()
    (tmp_path / "main.cf").write_text("compatibility_level = 3.6\n" + snippet)
    (tmp_path / "master.cf").write_text("")
    settings = dict(re.findall(r"(?m)^(\w+) = (.*)$", snippet))
    shown = subprocess.run(
        ["postconf", "-c", str(tmp_path), "-n"], capture_output=True, text=True, check=True
    ).stdout
    told = dict(re.findall(r"(?m)^(\w+) = (.*)$", shown))
    assert settings and all(told[name] == value for name, value in settings.items())
    assert not any("#" in value for value in told.values())
    assert told["smtpd_sasl_auth_enable"] == "no"
    assert told["smtpd_sasl_path"] == "private/auth"
