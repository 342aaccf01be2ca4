"""The example configuration shipped in config/ parses as it stands."""

from __future__ import annotations

from pathlib import Path

from pam_twostep.config import load_config

CONFIG = Path(__file__).resolve().parents[1] / "config"


def test_example_twostep_yaml_is_valid() -> None:
    config = load_config(CONFIG / "twostep.yaml")
    assert config.users.username_attribute == "uid"
    assert config.totp.issuer == "Example Mail"
