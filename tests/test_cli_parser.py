"""The command set ``twostep`` offers, pinned: every command and action, its arguments
and the function that runs it.

The parser is put together from several modules' parts; a part left out, or an argument
lost on the way, changes what administrators' scripts can call, so it fails here rather
than in a lab test that happens to use it (or in none). Read from the parser itself, so
no slapd or daemon is needed.
"""

from __future__ import annotations

import argparse

import pytest

from pam_twostep import cli

COMMON = ("--config", "--socket", "--json")
"""Every command and action takes these, before or after its own arguments."""

COMMANDS: dict[str, tuple[str | None, tuple[str, ...]]] = {
    # path: (the function it runs, its own arguments in order; positionals by name)
    "": (None, ()),
    "status": ("cmd_status", ("user",)),
    "enroll": ("cmd_enroll", ("user", "--begin", "--confirm")),
    "disable": ("cmd_disable", ("user", "--verify")),
    "reset": ("cmd_reset", ("user",)),
    "codes": ("cmd_codes", ("user", "--regenerate")),
    "unlock": ("cmd_unlock", ("user",)),
    "end-mail-password": ("cmd_end_mail_password", ("user",)),
    "passcode": ("cmd_passcode", ()),
    "passcode add": ("cmd_passcode", ("user", "label", "--services", "--expires")),
    "passcode list": ("cmd_passcode", ("user",)),
    "passcode revoke-all": ("cmd_passcode", ("user",)),
    "passcode revoke": ("cmd_passcode", ("user", "label")),
    "device": ("cmd_device", ()),
    "device list": ("cmd_device", ("user",)),
    "device revoke-all": ("cmd_device", ("user",)),
    "device revoke": ("cmd_device", ("user", "id")),
    "device revoke-others": ("cmd_device", ("user", "id")),
    "webmail": ("cmd_webmail", ()),
    "webmail list": ("cmd_webmail", ("user",)),
    "webmail end": ("cmd_webmail", ("user", "id")),
    "stale-clients": ("cmd_stale_clients", ()),
    "stale-clients list": ("cmd_stale_clients", ("user",)),
    "stale-clients dismiss": ("cmd_stale_clients", ("user", "id")),
    "policy": ("cmd_policy", ()),
    "policy list": ("cmd_policy", ()),
    "policy show": ("cmd_policy", ("name",)),
    "policy create": ("cmd_policy", ("name", "settings*")),
    "policy set": ("cmd_policy", ("name", "settings*")),
    "policy assign": ("cmd_policy", ("user", "name?", "--default")),
    "keys": ("cmd_keys", ()),
    "keys status": ("cmd_keys", ()),
    "keys reseal": ("cmd_keys", ("--progress/--no-progress", "--batch")),
    "report": ("cmd_report", ()),
    "report readiness": (
        "cmd_report",
        ("--policy", "--audit", "--since", "--csv", "--progress/--no-progress"),
    ),
    "check": ("cmd_check", ("--user",)),
    "import": (None, ()),
    "import google-authenticator": (
        "cmd_import",
        (
            "files+",
            "--user",
            "--user-from-path",
            "--match",
            "--apply",
            "--replace",
            "--progress/--no-progress",
        ),
    ),
    "import oath": (
        "cmd_import",
        ("files1", "--match", "--apply", "--replace", "--progress/--no-progress"),
    ),
    "import zimbra": (
        "cmd_import",
        ("files1", "--match", "--apply", "--replace", "--progress/--no-progress"),
    ),
    "portal": ("cmd_portal", ("--listen",)),
    "lab": ("cmd_lab", ()),
    "lab up": (
        "cmd_lab",
        (
            "--dir",
            "--passdb",
            "--tls-proxy",
            "--webmail",
            "--ldap-port",
            "--imap-port",
            "--pop3-port",
            "--smtp-port",
            "--web-port",
            "--webmail-port",
        ),
    ),
    "lab status": ("cmd_lab", ("--dir",)),
    "lab down": ("cmd_lab", ("--dir",)),
}


def _spelling(action: argparse.Action) -> str:
    if action.option_strings:
        return "/".join(action.option_strings)
    nargs = "" if action.nargs is None else str(action.nargs)
    return f"{action.dest}{nargs}"


def _walk(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = (), inherited: object = None
) -> dict[str, tuple[str | None, tuple[str, ...]]]:
    """Every parser under ``parser``: the function it runs (its own default, else its
    command's) and its arguments, common ones first."""
    func = parser.get_default("func") or inherited
    own = tuple(
        _spelling(a)
        for a in parser._actions
        if not isinstance(a, argparse._SubParsersAction | argparse._HelpAction)
    )
    found = {" ".join(path): (getattr(func, "__name__", None), own)}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.update(_walk(sub, (*path, name), func))
    return found


def test_the_parser_offers_exactly_the_pinned_commands() -> None:
    found = _walk(cli._parser())
    assert list(found) == list(COMMANDS), "commands added, lost or reordered"
    for path, (func, own) in found.items():
        assert own[: len(COMMON)] == COMMON, f"twostep {path}: not every common option"
        assert (func, own[len(COMMON) :]) == COMMANDS[path], f"twostep {path}"


@pytest.mark.parametrize("words", [[], ["passcode"], ["no-such-command"], ["lab", "sideways"]])
def test_a_missing_or_unknown_command_is_a_usage_error(
    words: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(words)
    assert exit_.value.code == cli.EXIT_USAGE
    assert "usage: twostep" in capsys.readouterr().err
