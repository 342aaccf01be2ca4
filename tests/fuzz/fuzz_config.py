"""Fuzz target: the YAML configuration. Every input is a Config or a ConfigError."""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["pam_twostep"]):
    from pam_twostep.config import Config, config_from_yaml
    from pam_twostep.core.errors import ConfigError


def test_one_input(data: bytes) -> None:
    try:
        config = config_from_yaml(data)
    except ConfigError as exc:
        message = str(exc)
        assert message and "Traceback" not in message
        return
    assert isinstance(config, Config)


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
