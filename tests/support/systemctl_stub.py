#!/usr/bin/python3
"""``systemctl`` in a fresh root without systemd: what the README's steps ask of it.

tests/test_source_install.py installs this as /usr/local/sbin/systemctl, ahead of the
real one in PATH, so that the README's blocks run as written. Units of twostep are
started as their unit files say (User, Group, SupplementaryGroups, RuntimeDirectory,
UMask, ExecStartPre, ExecStart), read from where ``make install`` put them; Debian's
daemons are started by their own programs, which daemonize. Each request is logged
in /var/log/systemctl-stub.log; anything it does not know fails, loudly.
Standard library only: it runs on the root's own python3.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

_LOG = Path("/var/log/systemctl-stub.log")
_UNIT_DIRS = ("/usr/local/lib/systemd/system", "/etc/systemd/system", "/usr/lib/systemd/system")
# what says a unit is up
_READY = {
    "twostepd": "/run/twostep/twostepd.sock",
    "twostep-portal": "/run/twostep-portal/portal.sock",
}


def _log(text: str) -> None:
    with _LOG.open("a") as log:
        log.write(text + "\n")


def _unit(name: str) -> dict[str, list[str]] | None:
    for folder in _UNIT_DIRS:
        path = Path(folder) / f"{name}.service"
        if path.exists():
            settings: dict[str, list[str]] = {}
            for line in path.read_text().splitlines():
                key, sep, value = line.partition("=")
                if sep and not line.startswith(("#", ";", "[")):
                    settings.setdefault(key.strip(), []).append(value.strip())
            return settings
    return None


def _pidfile(name: str) -> Path:
    return Path(f"/run/systemctl-stub/{name}.pid")


def _stop_unit(name: str) -> None:
    pidfile = _pidfile(name)
    if not pidfile.exists():
        return
    pid = int(pidfile.read_text())
    try:
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            os.kill(pid, 0)
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    pidfile.unlink()


def _start_unit(name: str, unit: dict[str, list[str]]) -> None:
    user = unit.get("User", ["root"])[-1]
    group = unit.get("Group", [user])[-1]
    groups = [group, *" ".join(unit.get("SupplementaryGroups", [])).split()]
    for folder in " ".join(unit.get("RuntimeDirectory", [])).split():
        mode = unit.get("RuntimeDirectoryMode", ["0755"])[-1]
        subprocess.run(
            ["install", "-d", "-m", mode, "-o", user, "-g", group, f"/run/{folder}"], check=True
        )
    become = ["setpriv", f"--reuid={user}", f"--regid={group}", f"--groups={','.join(groups)}"]
    umask = int(unit.get("UMask", ["0022"])[-1], 8)
    for command in unit.get("ExecStartPre", []):
        done = subprocess.run([*become, "--", *shlex.split(command)], check=False)
        if done.returncode != 0:
            sys.exit(f"{name}: ExecStartPre {command} failed: {done.returncode}")
    [command] = unit["ExecStart"]
    log = open(f"/var/log/{name}.stub.log", "ab")  # noqa: SIM115 (the child keeps it)
    child = subprocess.Popen(
        [*become, "--", *shlex.split(command)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        start_new_session=True,
        preexec_fn=lambda: os.umask(umask),
    )
    _pidfile(name).parent.mkdir(exist_ok=True)
    _pidfile(name).write_text(str(child.pid))
    ready = _READY.get(name)
    for _ in range(300):
        if child.poll() is not None:
            sys.exit(f"{name} exited: {child.returncode}; see /var/log/{name}.stub.log")
        if ready is None or Path(ready).exists():
            return
        time.sleep(0.1)
    sys.exit(f"{name}: {ready} did not appear")


def _debian(name: str, verb: str) -> list[list[str]]:
    """The commands that do ``verb`` to one of Debian's daemons."""
    running = {
        "dovecot": lambda: Path("/run/dovecot/master.pid").exists(),
        "postfix": lambda: subprocess.run(["postfix", "status"], check=False).returncode == 0,
        "ssh": lambda: Path("/run/sshd.pid").exists(),
        "nginx": lambda: Path("/run/nginx.pid").exists(),
        "slapd": lambda: Path("/run/slapd/slapd.pid").exists(),
    }[name]()
    start = {
        "dovecot": [["dovecot"]],
        "postfix": [["postfix", "start"]],
        "ssh": [["install", "-d", "-m", "0755", "/run/sshd"], ["/usr/sbin/sshd"]],
        "nginx": [["nginx"]],
        "slapd": [
            ["install", "-d", "-m", "0755", "-o", "openldap", "-g", "openldap", "/run/slapd"],
            ["slapd", "-h", "ldapi:///", "-u", "openldap", "-g", "openldap"],
        ],
    }[name]
    stop = {
        "dovecot": [["doveadm", "stop"]],
        "postfix": [["postfix", "stop"]],
        "ssh": [["pkill", "-F", "/run/sshd.pid"]],
        "nginx": [["nginx", "-s", "quit"]],
        "slapd": [["pkill", "-F", "/run/slapd/slapd.pid"]],
    }[name]
    reload = {"postfix": [["postfix", "reload"]], "nginx": [["nginx", "-s", "reload"]]}
    if verb == "start":
        return [] if running else start
    if verb == "stop":
        return stop if running else []
    if verb == "reload" and running and name in reload:
        return reload[name]
    return [*(stop if running else []), ["sleep", "1"], *start]


def main(argv: list[str]) -> int:
    _log(" ".join(argv))
    now = "--now" in argv
    verb, *names = [a for a in argv if a != "--now"]
    if verb == "daemon-reload":
        return 0
    if verb in ("enable", "disable") and not now:
        return 0
    if verb in ("enable", "disable"):
        verb = "start" if verb == "enable" else "stop"
    if verb not in ("start", "stop", "restart", "reload"):
        sys.exit(f"systemctl stub: {verb} is not known here")
    for name in (n.removesuffix(".service") for n in names):
        unit = _unit(name) if name.startswith("twostep") else None
        if unit is not None:
            _stop_unit(name)
            if verb != "stop":
                _start_unit(name, unit)
            continue
        with open("/var/log/systemctl-stub.log", "ab") as log:
            for command in _debian(name, verb):
                subprocess.run(
                    command, check=True, stdin=subprocess.DEVNULL, stdout=log, stderr=log
                )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
