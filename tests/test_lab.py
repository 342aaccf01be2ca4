"""twostep lab: up, status and down, stopping exactly what it started."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.stack import DOVECOT_24, LAB_INFO_KEYS, world_readable_directory

from pam_twostep.lab.stack import Lab, LabError

# the command installed beside the interpreter running the tests (.venv's, or another venv's)
TWOSTEP = Path(sys.executable).with_name("twostep")


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False


def test_up_down_and_up_again() -> None:
    lab = Lab(world_readable_directory("twostep-lab-") / "lab")
    passdb = "lua" if DOVECOT_24 else "checkpassword"
    info = lab.up(passdb=passdb)
    try:
        state = lab.status()
        assert set(state["running"]) == {"slapd", "twostepd", "dovecot", "postfix", "portal"}
        pids = dict(__import__("json").loads(lab.state_path.read_text())["pids"])
        assert all(alive(pid) for pid in pids.values())
        assert info["passdb"] == passdb
        assert Path(info["config"]).exists() and Path(info["daemon_socket"]).is_socket()
        pam_file = Path("/etc/pam.d") / info["pam_service"]
        assert pam_file.exists() and "twostep_pam.py" in pam_file.read_text()
    finally:
        stopped = lab.down()
    assert not pam_file.exists()
    assert set(stopped) == {"slapd", "twostepd", "dovecot", "postfix", "portal"}
    assert not any(alive(pid) for pid in pids.values())
    assert lab.status()["running"] == []
    assert lab.down() == []  # nothing left to stop
    lab.up()  # the same directory again
    lab.down()


@pytest.mark.skipif(not DOVECOT_24, reason="Dovecot 2.3 has the checkpassword passdb")
def test_checkpassword_on_dovecot_24_is_refused_in_one_sentence(tmp_path: Path) -> None:
    lab = Lab(tmp_path / "lab")
    with pytest.raises(LabError) as caught:
        lab.up(passdb="checkpassword")
    assert caught.value.code == 64
    assert "no checkpassword passdb" in str(caught.value) and "Lua" in str(caught.value)
    assert not (tmp_path / "lab").exists()  # refused before anything was made
    result = subprocess.run(
        [
            str(TWOSTEP),
            "lab",
            "up",
            "--passdb",
            "checkpassword",
            "--dir",
            str(tmp_path / "cli"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 64, result.stderr
    assert "Traceback" not in result.stderr and "Lua passdb" in result.stderr


def test_refuses_directories_that_are_not_its_own(tmp_path: Path) -> None:
    crowded = tmp_path / "crowded"
    crowded.mkdir()
    (crowded / "precious.txt").write_text("keep me")
    with pytest.raises(LabError, match="not empty"):
        Lab(crowded).up()
    assert (crowded / "precious.txt").read_text() == "keep me"
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    with pytest.raises(LabError, match="writable by others"):
        Lab(shared).up()


def test_lab_command_json(tmp_path: Path) -> None:
    directory = world_readable_directory("twostep-lab-") / "lab"
    twostep = [str(TWOSTEP)] if TWOSTEP.exists() else [sys.executable, "-m", "pam_twostep.cli"]
    up = subprocess.run(
        [*twostep, "lab", "up", "--dir", str(directory), "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        assert up.returncode == 0, up.stderr
        data = json.loads(up.stdout)
        assert set(data) >= LAB_INFO_KEYS
        assert {u["name"] for u in data["users"]} == {"alice", "bob", "carol"}
    finally:
        down = subprocess.run(
            [*twostep, "lab", "down", "--dir", str(directory)],
            capture_output=True,
            text=True,
            check=False,
        )
    assert (
        down.returncode == 0 and "stopped: portal, postfix, dovecot, twostepd, slapd" in down.stdout
    )
