"""The twostep command against a running lab: every command, text and JSON, its refusals
and exit codes; the terminal QR code decoded by an independent reader (zbarimg)."""

from __future__ import annotations

import io
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.stack import LAB_INFO_KEYS, world_readable_directory

from pam_twostep import cli, qr, wire
from pam_twostep.core.totp import decode_secret, time_step, totp
from pam_twostep.lab.stack import Lab


@pytest.fixture(scope="module")
def lab() -> Iterator[dict[str, Any]]:
    instance = Lab(world_readable_directory("twostep-cli-") / "lab")
    info = instance.up()
    yield info
    instance.down()


def password(info: dict[str, Any], user: str) -> str:
    return str(next(u["password"] for u in info["users"] if u["name"] == user))


class Run:
    def __init__(
        self,
        info: dict[str, Any],
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        self.info = info
        self.monkeypatch = monkeypatch
        self.capsys = capsys
        monkeypatch.setenv("TWOSTEP_CONFIG", info["config"])

    def __call__(self, *args: str, stdin: str = "") -> tuple[int, str, str]:
        self.monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        try:
            code = cli.main(list(args))
        except SystemExit as exc:  # argparse's own exits
            code = int(exc.code or 0)
        out, err = self.capsys.readouterr()
        return code, out, err

    def json(self, *args: str, stdin: str = "") -> tuple[int, dict[str, Any]]:
        code, out, _ = self(*args, "--json", stdin=stdin)
        return code, json.loads(out)


@pytest.fixture
def run(
    lab: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[Run]:
    runner = Run(lab, monkeypatch, capsys)
    for user in ("alice", "bob", "carol"):
        runner("reset", user)
        runner("policy", "assign", user, "--default")
    yield runner


def enroll(run: Run, user: str = "alice") -> tuple[bytes, list[str]]:
    code, begun = run.json("enroll", user, "--begin", stdin=password(run.info, user) + "\n")
    assert code == 0
    key = decode_secret(begun["secret"])
    code, confirmed = run.json("enroll", user, "--confirm", totp(key, time.time()))
    assert code == 0
    return key, confirmed["backup_codes"]


# -- status and enrollment -------------------------------------------------------------


def test_status(run: Run) -> None:
    code, out, _ = run("status", "alice")
    assert code == 0 and "two-step verification is OFF" in out
    code, data = run.json("status", "alice")
    assert code == 0 and data["ok"] is True
    assert set(data) >= {
        "user",
        "enabled",
        "policy",
        "policy_dn",
        "backup_codes",
        "passcodes",
        "devices",
        "locked",
        "locked_until",
        "recent_failures",
    }
    assert data["policy"]["passcode_limit"] == 25


def test_enroll_in_two_halves(run: Run) -> None:
    code, out, _ = run("enroll", "alice", "--begin", stdin=password(run.info, "alice") + "\n")
    assert code == 0
    assert "otpauth://totp/" in out and "Or type the key:" in out and "\u2580" in out
    code, data = run.json("enroll", "alice", "--begin", stdin=password(run.info, "alice") + "\n")
    assert data["uri"].startswith("otpauth://totp/twostep%20lab:alice?secret=")
    assert len(data["key"].split()) == 8
    key = decode_secret(data["secret"])
    code, out, _ = run("enroll", "alice", "--confirm", totp(key, time.time()))
    assert code == 0 and "Backup codes" in out and out.count("-") >= 10
    code, status = run.json("status", "alice")
    assert status["enabled"] and status["backup_codes"] == 10


def test_the_confirming_code_need_not_be_in_argv(run: Run) -> None:
    """Given bare, --confirm reads the code from stdin: argv shows in ps and history."""
    code, data = run.json("enroll", "bob", "--begin", stdin=password(run.info, "bob") + "\n")
    assert code == 0
    assert (
        "--confirm (reads the code from stdin)"
        in run("enroll", "carol", "--begin", stdin=password(run.info, "carol") + "\n")[1]
    )
    key = decode_secret(data["secret"])
    code, out, _ = run("enroll", "bob", "--confirm", stdin=totp(key, time.time()) + "\n")
    assert code == 0 and "Backup codes" in out
    code, out, err = run("enroll", "carol", "--confirm", stdin="\n")
    assert code == 1 and "Traceback" not in err


def test_interactive_enroll(run: Run) -> None:
    """The wizard through pipes, as at a terminal: password, key shown, a wrong code
    (retried), the right code, the backup codes."""
    import os
    import sys

    process = subprocess.Popen(
        [sys.executable, "-m", "pam_twostep.cli", "enroll", "bob"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TWOSTEP_CONFIG": run.info["config"]},
    )
    assert process.stdin and process.stdout
    process.stdin.write(password(run.info, "bob") + "\n")
    process.stdin.flush()
    shown = ""
    while "Or type the key:" not in shown:
        shown += process.stdout.readline()
    key = decode_secret(shown.split("Or type the key: ")[1].split("\n")[0])
    process.stdin.write("000000\n")
    process.stdin.write(totp(key, time.time()) + "\n")
    process.stdin.flush()
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "that code does not match" in err
    assert "Two-step verification is on." in out and "Backup codes" in out
    assert run.json("status", "bob")[1]["enabled"]


def test_input_ending_early_is_a_refusal_not_a_traceback(run: Run) -> None:
    code, _, err = run("enroll", "bob", stdin=password(run.info, "bob") + "\n")
    assert code == 1 and "input ended" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "stdin", "code", "reason"),
    [
        (("enroll", "alice", "--begin"), "wrong password\n", 1, "wrong-password"),
        (("enroll", "alice", "--confirm", "123456"), "", 1, "no-pending-enrollment"),
        (("enroll", "nobody", "--begin"), "x\n", 1, "unknown-user"),
        (("status", "nobody"), "", 1, "unknown-user"),
        (("status", "al*"), "", 1, "unknown-user"),
        (("codes", "alice", "--regenerate"), "", 1, "not-enabled"),
        (("passcode", "add", "alice", "Phone"), "", 1, "not-enabled"),
        (("disable", "alice"), "", 1, "not-enabled"),
        (("device", "revoke", "alice", "abcdefgh"), "", 1, "no-such-device"),
        (("passcode", "revoke", "alice", "none"), "", 1, "no-such-passcode"),
        (("policy", "show", "nonexistent"), "", 1, "no-such-policy"),
        (("policy", "assign", "alice", "nonexistent"), "", 1, "no-such-policy"),
        (("policy", "create", "bad name"), "", 1, "invalid-input"),
    ],
)
def test_refusals_say_one_sentence_and_exit_1(
    run: Run, args: tuple[str, ...], stdin: str, code: int, reason: str
) -> None:
    exit_code, _out, err = run(*args, stdin=stdin)
    assert exit_code == code
    assert err.startswith("twostep: ") and err.count("\n") == 1
    exit_code, data = run.json(*args, stdin=stdin)
    assert exit_code == code and data == {
        "ok": False,
        "exit": code,
        "reason": reason,
        "message": data["message"],
    }


@pytest.mark.parametrize(
    "args",
    [
        ("frobnicate",),
        ("status",),
        ("passcode", "add", "alice", "X", "--expires", "soon"),
        ("passcode", "add", "alice", "X", "--expires", "0"),
        ("policy", "set", "default"),
        ("policy", "set", "default", "backup_codes"),
        ("policy", "set", "default", "colour=red"),
        ("policy", "create", "p1", "backup_codes=many"),
        ("policy", "assign", "alice"),
        ("lab", "up", "--imap-port", "x"),
    ],
)
def test_usage_errors_exit_64(run: Run, args: tuple[str, ...]) -> None:
    code, _, err = run(*args)
    assert code == 64, err
    assert "Traceback" not in err


def test_configuration_error_exits_78(run: Run, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("ldap: {uris: nope}\n")
    code, _, err = run("status", "alice", "--config", str(bad))
    assert code == 78 and "ldap.uris" in err


def test_daemon_unreachable_exits_75(run: Run) -> None:
    code, _, err = run("status", "alice", "--socket", "/nonexistent/socket")
    assert code == 75 and "not answering" in err


# -- passcodes, devices, codes, lock ---------------------------------------------------


def test_passcodes(run: Run) -> None:
    enroll(run)
    code, out, _ = run(
        "passcode", "add", "alice", "Thunderbird", "--services", "imap,smtp", "--expires", "90d"
    )
    assert code == 0 and "shown only this once" in out
    shown = out.split("\n\n")[1].strip()
    assert len(shown) == 29 and shown == shown.upper()
    code, data = run.json("passcode", "add", "alice", "Phone")
    assert len(data["passcode"]) == 29 and data["services"] == [] and data["expires"] is None
    code, data = run.json("passcode", "list", "alice")
    assert [p["label"] for p in data["passcodes"]] == ["Thunderbird", "Phone"]
    assert data["passcodes"][0]["services"] == ["imap", "smtp"]
    code, out, _ = run("passcode", "list", "alice")
    assert "Thunderbird  [imap,smtp]" in out
    assert run("passcode", "add", "alice", "phone")[0] == 1  # label taken
    assert run("passcode", "add", "alice", "Mail", "--services", "sshd")[0] == 1
    assert run("passcode", "revoke", "alice", "Phone")[0] == 0
    assert run("passcode", "revoke-all", "alice")[0] == 0
    assert run.json("passcode", "list", "alice")[1]["passcodes"] == []


def test_passcode_limit(run: Run) -> None:
    enroll(run)
    assert run("policy", "create", "tight", "passcode_limit=1")[0] in (0, 1)
    run("policy", "set", "tight", "passcode_limit=1")
    run("policy", "assign", "alice", "tight")
    assert run("passcode", "add", "alice", "One")[0] == 0
    code, data = run.json("passcode", "add", "alice", "Two")
    assert (code, data["reason"]) == (1, "limit-reached")


def test_status_of_a_full_account_is_larger_than_a_request_may_be(run: Run) -> None:
    enroll(run)
    labels = [f"{n:02d} " + "\u00e9\u4e2d" * 30 for n in range(25)]
    for label in labels:
        assert run("passcode", "add", "alice", label, "--services", "imap,smtp,pop3")[0] == 0
    code, data = run.json("status", "alice")
    assert code == 0
    assert sorted(p["label"] for p in data["passcodes"]) == labels
    assert len(json.dumps(data)) > wire.MAX_MESSAGE


def test_codes_and_disable_and_unlock(run: Run) -> None:
    enroll(run)
    assert run.json("codes", "alice")[1]["remaining"] == 10
    code, data = run.json("codes", "alice", "--regenerate")
    assert code == 0 and len(data["backup_codes"]) == 10
    from pam_twostep import wire

    for i in range(100):  # the lock takes 100, from enough addresses to pass the throttle
        wire.ask(
            run.info["daemon_socket"],
            {
                "op": "auth",
                "user": "alice",
                "password": f"x{i}",
                "service": "imap",
                "remote": f"192.0.2.{i + 1}",
            },
            5,
        )
    code, out, _ = run("status", "alice")
    assert "LOCKED until" in out
    code, data = run.json("passcode", "add", "alice", "Phone")
    assert code == 0  # management is not a login: a lock does not stop the admin
    assert run("unlock", "alice")[0] == 0
    assert "not locked" in run("status", "alice")[1]
    assert run("disable", "alice")[0] == 0
    assert not run.json("status", "alice")[1]["enabled"]


def test_disable_as_the_user(run: Run) -> None:
    _, codes = enroll(run)
    code, _, err = run(
        "disable", "alice", "--verify", stdin=f"{password(run.info, 'alice')}\n000000\n"
    )
    assert code == 1 and "not accepted" in err
    code, _, _ = run(
        "disable", "alice", "--verify", stdin=f"{password(run.info, 'alice')}\n{codes[0]}\n"
    )
    assert code == 0


def test_devices(run: Run) -> None:
    from pam_twostep import wire

    key, _ = enroll(run)
    step = time_step(time.time(), 30)
    while time_step(time.time(), 30) == step:
        time.sleep(0.2)
    reply = wire.ask(
        run.info["daemon_socket"],
        {
            "op": "auth",
            "user": "alice",
            "password": password(run.info, "alice"),
            "service": "portal",
            "code": totp(key, time.time()),
            "trust_device": True,
            "device_label": "Firefox",
        },
        5,
    )
    assert reply["result"] == "accept" and reply["device"]
    _code, data = run.json("device", "list", "alice")
    assert [d["label"] for d in data["devices"]] == ["Firefox"]
    assert "Firefox" in run("device", "list", "alice")[1]
    device = str(reply["device"])
    assert run("device", "revoke-others", "alice", device)[0] == 0
    assert run("device", "revoke", "alice", device)[0] == 0
    assert run("device", "revoke-all", "alice")[0] == 0
    assert run.json("device", "list", "alice")[1]["devices"] == []


# -- policies --------------------------------------------------------------------------


def test_policies(run: Run) -> None:
    name = f"staff{int(time.time() * 1000) % 10**8}"
    code, data = run.json(
        "policy", "create", name, "required=yes", "backup_codes=5", "device_lifetime=7d"
    )
    assert code == 0
    assert data["policy"]["settings"] == {
        "required": True,
        "backup_codes": 5,
        "device_lifetime": 604800,
    }
    code, data = run.json("policy", "set", name, "backup_codes=", "trusted_devices=off")
    assert data["policy"]["settings"] == {
        "required": True,
        "device_lifetime": 604800,
        "trusted_devices": False,
    }
    assert data["policy"]["effective"]["backup_codes"] == 10
    assert run("policy", "create", name)[0] == 1  # exists
    names = [p["name"] for p in run.json("policy", "list")[1]["policies"]]
    assert "default" in names and name in names
    assert run("policy", "assign", "alice", name)[0] == 0
    assert run.json("status", "alice")[1]["policy"]["required"] is True
    assert "required" in run("policy", "show", name)[1]


def test_grace_period_dates(run: Run) -> None:
    """Issue 18: dates typed as a person writes them, shown back so, and in the status of
    an account they apply to; a date that is not one is refused before anything is written."""
    name = f"rollout{int(time.time() * 1000) % 10**8}"
    ahead = time.strftime("%Y-%m-%d", time.gmtime(time.time() + 10 * 86400))
    code, data = run.json(
        "policy", "create", name, "required=yes", f"required_from={ahead}",
        f"mail_password_until={ahead}T12:00:00+02:00",
    )  # fmt: skip
    assert code == 0, data
    assert data["policy"]["effective"]["required_from"] % 86400 == 0
    assert data["policy"]["effective"]["mail_password_until"] % 86400 == 10 * 3600
    shown = run("policy", "show", name)[1]
    assert f"required_from={ahead}" in shown and f"mail_password_until={ahead}T10:00:00Z" in shown
    assert f"required from {ahead}" in shown
    for bad in ("required_from=2027-02-30", "required_from=tomorrow", "required_from=1999-01-01"):
        code, out, err = run("policy", "set", name, bad)
        assert code == 64 and "required_from" in err and "Traceback" not in err, (bad, out, err)
    assert run("policy", "assign", "bob", name)[0] == 0
    code, out, _ = run("status", "bob")
    assert code == 0 and f"two-step becomes required on {ahead}" in out
    assert run.json("status", "bob")[1]["required_from"] % 86400 == 0
    enroll(run, "bob")
    code, out, _ = run("status", "bob")
    assert "becomes required" not in out
    assert f"mail services take the password until {ahead}T10:00:00Z" in out
    code, out, _ = run("end-mail-password", "bob")
    assert code == 0 and "passcodes only, from now" in out, out
    assert "mail services take the password" not in run("status", "bob")[1]
    code, out, err = run("end-mail-password", "bob")  # nothing left to end
    assert code == 1 and "already refuse" in err and "Traceback" not in err


# -- check, QR, lab --------------------------------------------------------------------


def test_check(run: Run) -> None:
    code, out, _ = run("check")
    assert code == 0, out
    assert "FAIL" not in out and "twostep schema loaded" in out
    code, out, _ = run("check", "--user", "bob", stdin=password(run.info, "bob") + "\n")
    assert code == 0 and "bob has no two-step values yet" in out
    enroll(run, "bob")
    code, out, _ = run("check", "--user", "bob", stdin=password(run.info, "bob") + "\n")
    assert code == 0 and "bob bound as themselves reads none" in out
    code, data = run.json("check", "--socket", "/nonexistent")
    assert code == 1 and data["problems"] == 1


def test_terminal_qr_decodes_to_the_uri(tmp_path: Path) -> None:
    uri = "otpauth://totp/twostep%20lab:alice?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&issuer=x"
    lines = qr.terminal(uri).split("\n")
    halves = {
        " ": (False, False),
        "\u2580": (True, False),
        "\u2584": (False, True),
        "\u2588": (True, True),
    }
    rows: list[list[bool]] = []
    for line in lines:
        top, bottom = zip(*(halves[c] for c in line), strict=True)
        rows += [list(top), list(bottom)]
    scale = 8
    width = len(rows[0])
    pixels = [
        [not light for light in row for _ in range(scale)] for row in rows for _ in range(scale)
    ]
    image = tmp_path / "qr.pbm"
    image.write_text(
        f"P1\n{width * scale} {len(pixels)}\n"
        + "\n".join(" ".join("1" if dark else "0" for dark in row) for row in pixels)
        + "\n"
    )
    decoded = subprocess.run(
        ["zbarimg", "--raw", "-q", str(image)], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert decoded == uri


def test_lab_refuses_a_second_start_and_taken_ports(run: Run, lab: dict[str, Any]) -> None:
    code, _, err = run("lab", "up", "--dir", lab["dir"])
    assert code == 1 and "already running" in err
    other = world_readable_directory("twostep-cli-") / "lab2"
    code, _, err = run("lab", "up", "--dir", str(other), "--imap-port", str(lab["imap_port"]))
    assert code == 1 and "taken" in err
    code, data = run.json("lab", "status", "--dir", lab["dir"])
    assert set(data["running"]) == {"slapd", "twostepd", "dovecot", "postfix", "portal"}
    assert set(data) >= LAB_INFO_KEYS
