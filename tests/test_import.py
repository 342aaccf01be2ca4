"""``twostep import`` end to end against the lab: files made by the real tools, codes made
by oathtool from the original secrets, logins through the lab's real PAM service."""

from __future__ import annotations

import io
import json
import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import leaks
from support.pam import pam_service, pamtester
from support.stack import world_readable_directory
from support.tools import google_authenticator
from test_migrate_zimbra import ACCOUNT_ID, SEALED_CODES, SEALED_SECRET, SECRET

from pam_twostep import cli
from pam_twostep.core.totp import time_step
from pam_twostep.lab.stack import Lab

pytestmark = pytest.mark.skipif(os.getuid() != 0, reason="the lab's PAM service needs root")


@pytest.fixture(scope="module")
def lab() -> Iterator[dict[str, Any]]:
    instance = Lab(world_readable_directory("twostep-import-") / "lab")
    info = instance.up()
    yield info
    instance.down()


class Twostep:
    def __init__(self, lab: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
        self.lab, self.capsys = lab, capsys
        monkeypatch.setenv("TWOSTEP_CONFIG", lab["config"])
        monkeypatch.setattr("sys.stdin", io.StringIO(""))

    def __call__(self, *args: str) -> tuple[int, dict[str, Any], str]:
        code = cli.main([*args, "--json"])
        captured = self.capsys.readouterr()
        return code, json.loads(captured.out), captured.err

    def password(self, user: str) -> str:
        return str(next(u["password"] for u in self.lab["users"] if u["name"] == user))

    def login(self, user: str, code: str) -> bool:
        leaks.remember(code)
        result = pamtester(self.lab["pam_service"], user, [self.password(user), code])
        return result.returncode == 0


@pytest.fixture
def twostep(lab: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: Any) -> Twostep:
    run = Twostep(lab, monkeypatch, capsys)
    for user in ("alice", "bob", "carol"):
        run("reset", user)
        run("policy", "assign", user, "--default")
    return run


def oathtool(secret: str, *args: str) -> str:
    return subprocess.run(
        ["oathtool", "--totp", *args, secret], capture_output=True, text=True, check=True
    ).stdout.strip()


def outcomes(data: dict[str, Any]) -> dict[str, str]:
    return {r["user"] or r["match"]: r["outcome"] for r in data["results"]}


def google_file(home: Path) -> Path:
    home.mkdir(parents=True)
    path = google_authenticator(home / ".google_authenticator", "-w", "3")
    leaks.remember(path.read_text().split())
    return path


def test_google_authenticator_files(twostep: Twostep, tmp_path: Path) -> None:
    path = google_file(tmp_path / "alice")
    secret, *_ = path.read_text().split("\n")
    scratch = path.read_text().split()[-1]

    code, dry, _ = twostep("import", "google-authenticator", str(path), "--user-from-path")
    assert code == 0 and outcomes(dry) == {"alice": "would-import"} and not dry["applied"]
    assert twostep("status", "alice")[1]["enabled"] is False  # a dry run writes nothing

    code, done, _ = twostep(
        "import", "google-authenticator", str(path), "--user-from-path", "--apply"
    )
    assert code == 0 and outcomes(done) == {"alice": "imported"}
    notes = done["results"][0]["notes"]
    assert any("RATE_LIMIT 3 30 not carried" in n for n in notes)
    status = twostep("status", "alice")[1]
    assert status["enabled"] and status["backup_codes"] == 5

    assert twostep.login("alice", oathtool(secret, "-b"))
    assert twostep.login("alice", scratch)
    assert not twostep.login("alice", scratch)  # a scratch code works once

    code, again, _ = twostep(
        "import", "google-authenticator", str(path), "--user-from-path", "--apply"
    )
    assert code == 0 and outcomes(again) == {"alice": "unchanged"}


def test_a_pam_oath_users_file_after_a_real_pam_oath_login(
    twostep: Twostep, tmp_path: Path
) -> None:
    key = secrets.token_hex(20)
    leaks.remember(key)
    users = tmp_path / "users.oath"
    users.write_text(f"HOTP/T30 bob - {key}\n")
    os.chmod(users, 0o600)
    lines = [
        f"auth required pam_oath.so usersfile={users} window=3",
        "account required pam_permit.so",
    ]
    with pam_service(lines) as service:
        code = oathtool(key)
        used = pamtester(service, "bob", [code])
        assert used.returncode == 0, used.stderr
    line = users.read_text().split()
    assert line[5] == code and line[6].endswith("L")  # pam_oath recorded the code and when

    code_, done, _ = twostep("import", "oath", str(users), "--apply")
    assert code_ == 0 and outcomes(done) == {"bob": "imported"}
    assert not twostep.login("bob", code)  # spent in pam_oath: spent here too
    step = time_step(time.time(), 30)
    assert twostep.login("bob", oathtool(key, "-N", f"@{(step + 1) * 30}"))


def test_a_zimbra_export(twostep: Twostep, tmp_path: Path) -> None:
    export = tmp_path / "zimbra.ldif"
    export.write_text(
        f"""dn: cn=mobile,cn=cos,cn=zimbra
objectClass: zimbraCOS
cn: mobile
zimbraId: cos-mobile
zimbraFeatureTwoFactorAuthRequired: TRUE
zimbraTwoFactorAuthNumScratchCodes: 3

dn: uid=carol,ou=people,dc=example,dc=org
objectClass: zimbraAccount
uid: carol
zimbraId: {ACCOUNT_ID}
zimbraCOSId: cos-mobile
zimbraTwoFactorAuthEnabled: TRUE
zimbraTwoFactorAuthSecret: {SEALED_SECRET}
zimbraTwoFactorAuthScratchCodes: {SEALED_CODES}
zimbraAppSpecificPassword: d2:dci1420113600000e1:n11:Thunderbird1:p18:{{SSHA512}}abcdefghie
"""
    )
    os.chmod(export, 0o600)
    code, done, _ = twostep("import", "zimbra", str(export), "--apply")
    assert code == 0, done
    assert [(p["match"], p["outcome"]) for p in done["policies"]] == [("mobile", "created")]
    assert outcomes(done) == {"carol": "imported"}
    assert any("'Thunderbird' must be issued anew" in n for n in done["results"][0]["notes"])
    status = twostep("status", "carol")[1]
    assert status["policy"]["required"] and status["policy_dn"].startswith("cn=mobile,")
    assert twostep.login("carol", oathtool(SECRET, "-b"))
    assert twostep.login("carol", "ASDFGHJK")
    assert not twostep.login("carol", "ASDFGHJK")
    _, again, _ = twostep("import", "zimbra", str(export), "--apply")
    assert outcomes(again) == {"carol": "unchanged"}
    assert again["policies"][0]["outcome"] == "updated"


def test_hostile_input_is_refused_per_user_and_writes_nothing(
    twostep: Twostep, tmp_path: Path
) -> None:
    good = google_file(tmp_path / "alice")
    cases = {
        "truncated": good.read_text()[:10],
        "unknown": good.read_text() + '" AUTH_CACHE 3\n',
        "garbage": "\x00\x01\x02garbage\n",
    }
    files = []
    for name, text in cases.items():
        path = tmp_path / name
        path.write_text(text)
        os.chmod(path, 0o400)
        files.append(str(path))
    writable = tmp_path / "writable"
    writable.write_text(good.read_text())
    os.chmod(writable, 0o666)
    files.append(str(writable))
    for path in files:
        code, data, _ = twostep("import", "google-authenticator", path, "--user", "bob", "--apply")
        assert code == 1 and outcomes(data) == {"bob": "skipped"}, data
        assert data["results"][0]["why"]
    assert twostep("status", "bob")[1]["enabled"] is False

    duplicate = tmp_path / "again" / "alice"
    duplicate.mkdir(parents=True)
    (duplicate / ".google_authenticator").write_text(good.read_text())
    os.chmod(duplicate / ".google_authenticator", 0o400)
    code, data, _ = twostep(
        "import",
        "google-authenticator",
        str(good),
        str(duplicate / ".google_authenticator"),
        "--user-from-path",
    )
    assert code == 1
    assert [r["outcome"] for r in data["results"]] == ["would-import", "skipped"]
    assert "already taken from" in data["results"][1]["why"]

    code, data, _ = twostep("import", "oath", str(writable))
    assert code == 1 and "writable by others" in data["message"]
    code, _, _ = twostep("import", "google-authenticator", str(good), str(good), "--user", "x")
    assert code == 64


def test_a_progress_bar_for_many_users(twostep: Twostep, tmp_path: Path) -> None:
    users = tmp_path / "users.oath"
    key = secrets.token_hex(20)
    users.write_text("".join(f"HOTP/T30 nobody{n} - {key}\n" for n in range(25)))
    os.chmod(users, 0o600)
    code, data, err = twostep("import", "oath", str(users), "--progress")
    assert code == 1 and set(outcomes(data).values()) == {"skipped"}
    assert "no directory user has uid=nobody7" in data["results"][7]["why"]
    assert "25/25" in err and "[" + "#" * 30 + "]" in err
