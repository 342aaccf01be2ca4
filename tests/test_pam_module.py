"""The PAM module through real libpam: pamtester, Debian's python3-pam in-process, a C loop
like Dovecot's auth worker, OpenSSH keyboard-interactive, and Dovecot's PAM passdb."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Clock, config_data, make_secrets_dir
from support.engines import engine_for
from support.flows import enroll
from support.pam import PAM_D, build_loop, in_process, loop, module_lines, pam_service, pamtester
from support.slapd import USERS, Slapd, user_dn
from support.stack import install_clients, world_readable_directory

from pam_twostep.config import parse_config
from pam_twostep.core.totp import decode_secret, time_step, totp
from pam_twostep.engine import Engine
from pam_twostep.lab.twostepd import Twostepd

PAM_SUCCESS, PAM_AUTH_ERR, PAM_AUTHINFO_UNAVAIL, PAM_USER_UNKNOWN, PAM_MAXTRIES = 0, 7, 9, 10, 11


class Setup:
    def __init__(self, base: Path, daemon: Twostepd, loader: Path) -> None:
        self.base = base
        self.daemon = daemon
        self.loader = loader

    def lines(self, *args: str) -> list[str]:
        return module_lines(self.loader, f"socket={self.daemon.socket}", *args)


@pytest.fixture(scope="module")
def setup(slapd_server: Slapd) -> Iterator[Setup]:
    base = world_readable_directory("twostep-pam-")
    config = config_data(
        slapd_server, make_secrets_dir(base / "etc"), audit={"file": str(base / "audit.log")}
    )
    daemon = Twostepd(base / "daemon", config)
    daemon.start()
    loader = install_clients(base / "prefix") / "lib/twostep/client/twostep_pam.py"
    yield Setup(base, daemon, loader)
    daemon.stop()


@pytest.fixture
def clock() -> Clock:
    return Clock(time.time())


@pytest.fixture
def admin(setup: Setup, slapd: Slapd, clock: Clock) -> Iterator[Engine]:
    with engine_for(parse_config(setup.daemon.config), clock) as engine:
        yield engine


def fresh_code(key: bytes, after: float) -> str:
    """A code for a time step later than the one used at ``after``: the app's next code,
    which the +-1 step window accepts already; never an older step than the current one, so
    a slow pamtester cannot carry it out of the window; waits only if that is not enough."""
    wanted = max(time_step(after, 30) + 1, time_step(time.time(), 30))
    while wanted > time_step(time.time(), 30) + 1:
        time.sleep(0.2)
    return totp(key, wanted * 30)


# -- interactive logins through pamtester ----------------------------------------------


def test_password_only_while_two_step_is_off(setup: Setup, admin: Engine) -> None:
    with pam_service(setup.lines()) as service:
        ok = pamtester(service, "bob", [USERS["bob"]], rhost="192.0.2.77")
        assert ok.returncode == 0, ok.stderr
        assert "Verification code" not in ok.stdout + ok.stderr
        assert pamtester(service, "bob", ["wrong"]).returncode == 1
    events = [json.loads(line) for line in (setup.base / "audit.log").read_text().splitlines()]
    assert {
        "user": "bob",
        "service": service,
        "remote": "192.0.2.77",
        "outcome": "accept",
        "method": "password",
    }.items() <= events[-2].items()


def test_password_then_code(setup: Setup, admin: Engine, clock: Clock) -> None:
    key, codes = enroll(admin, clock.now)
    with pam_service(setup.lines()) as service:
        code = fresh_code(key, clock.now)
        result = pamtester(service, "alice", [USERS["alice"], code])
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Password: " in result.stderr and "Verification code: " in result.stderr
        assert pamtester(service, "alice", [USERS["alice"], code]).returncode == 1  # replayed
        assert pamtester(service, "alice", [USERS["alice"], "000000"]).returncode == 1
        assert "Verification code" not in pamtester(service, "alice", ["wrong"]).stderr
        assert pamtester(service, "alice", ["wrong", codes[0]]).returncode == 1
        assert pamtester(service, "alice", [USERS["alice"], codes[0]]).returncode == 0
        assert pamtester(service, "alice", [USERS["alice"], codes[0]]).returncode == 1  # used


def test_reusing_the_password_of_an_earlier_module(
    setup: Setup, admin: Engine, clock: Clock
) -> None:
    key, _ = enroll(admin, clock.now)
    asker = "auth optional pam_exec.so expose_authtok quiet /bin/true"
    last = clock.now
    for option in ("use_first_pass", "try_first_pass"):
        lines = [asker, *setup.lines(option)]
        with pam_service(lines) as service:
            code = fresh_code(key, last)
            last = time.time() + 30
            results = in_process(service, [{"user": "alice", "answers": [USERS["alice"], code]}])
            prompts = [m[1] for m in results[0]["messages"] if m[0] == "prompt"]  # type: ignore[index]
            assert results[0]["code"] == PAM_SUCCESS, results
            assert prompts.count("Verification code: ") == 1 and len(prompts) == 2


def test_use_first_pass_without_an_earlier_password_fails(setup: Setup, admin: Engine) -> None:
    with pam_service(setup.lines("use_first_pass")) as service:
        result = in_process(service, [{"user": "bob", "answers": [USERS["bob"]]}])
    assert result[0]["code"] == PAM_AUTH_ERR and result[0]["messages"] == []


def test_required_policy_tells_how_to_enroll(setup: Setup, admin: Engine, slapd: Slapd) -> None:
    slapd.set_attributes(
        user_dn("bob"), objectClass=["inetOrgPerson", "twostepAccount"], twostepRequired=["TRUE"]
    )
    with pam_service(setup.lines("enroll_url=https://mail.example.org/security")) as service:
        result = in_process(service, [{"user": "bob", "answers": [USERS["bob"]]}])[0]
    assert result["code"] == PAM_AUTH_ERR
    errors = [m[1] for m in result["messages"] if m[0] == "error"]  # type: ignore[index]
    assert errors and "https://mail.example.org/security" in errors[0]


def _generalized(epoch: float) -> str:
    return time.strftime("%Y%m%d%H%M%SZ", time.gmtime(epoch))


@pytest.mark.parametrize("days", [1, 0, -1], ids=["day-before", "day-of", "day-after"])
def test_required_from_a_date_reminds_until_then(
    setup: Setup, admin: Engine, slapd: Slapd, days: int
) -> None:
    """Before ``required_from`` the sign-in goes through with a reminder of the date and
    of where to enroll; on the date (the same second) and after, it is refused."""
    when = int(time.time()) + days * 86400 + (5 if days > 0 else 0)
    slapd.set_attributes(
        user_dn("bob"),
        objectClass=["inetOrgPerson", "twostepAccount"],
        twostepRequired=["TRUE"],
        twostepRequiredFrom=[_generalized(when)],
    )
    with pam_service(setup.lines("enroll_url=https://mail.example.org/security")) as service:
        result = in_process(service, [{"user": "bob", "answers": [USERS["bob"]]}])[0]
    texts = [m[1] for m in result["messages"] if m[0] in ("info", "error")]  # type: ignore[index]
    if days > 0:
        assert result["code"] == PAM_SUCCESS, result
        day = time.strftime("%Y-%m-%d", time.gmtime(when))
        assert texts == [
            f"Two-step verification will be required for this account from {day} "
            f"{time.strftime('%H:%M', time.gmtime(when))} UTC. Set it up at "
            "https://mail.example.org/security before then."
        ]
    else:
        assert result["code"] == PAM_AUTH_ERR
        assert texts and "is required for this account" in texts[0]


def test_locked_unknown_and_unreachable(setup: Setup, admin: Engine, slapd: Slapd) -> None:
    slapd.set_attributes(
        user_dn("carol"),
        objectClass=["inetOrgPerson", "twostepAccount"],
        twostepLockedAt=["20200101000000Z"],
        twostepLockoutDuration=["0"],
    )
    with pam_service(setup.lines()) as service:
        locked, unknown = in_process(
            service,
            [
                {"user": "carol", "answers": [USERS["carol"]]},
                {"user": "nobody-at-all", "answers": ["x"]},
            ],
        )
    assert locked["code"] == PAM_MAXTRIES
    assert any("locked" in m[1] for m in locked["messages"])  # type: ignore[union-attr]
    assert unknown["code"] == PAM_USER_UNKNOWN
    lines = module_lines(setup.loader, f"socket={setup.base}/no-such-socket")
    with pam_service(lines) as service:
        down = in_process(service, [{"user": "bob", "answers": [USERS["bob"]]}])[0]
    assert down["code"] == PAM_AUTHINFO_UNAVAIL


def sign_in_trusting(service: str, key: bytes, clock: Clock, label: str) -> dict[str, object]:
    """Alice signs in with password and code, asking to trust this device (``label``)."""
    answers = [USERS["alice"], fresh_code(key, clock.now)]
    env = {"TWOSTEP_TRUST_DEVICE": label}
    return in_process(service, [{"user": "alice", "answers": answers, "env": env}])[0]


def test_trusted_devices_skip_the_code(setup: Setup, admin: Engine, clock: Clock) -> None:
    key, _ = enroll(admin, clock.now)
    with pam_service(setup.lines()) as service:
        trusted = sign_in_trusting(service, key, clock, "web browser")
        assert trusted["code"] == PAM_SUCCESS
        token = trusted["new_token"]
        assert isinstance(token, str)
        again = in_process(
            service,
            [
                {
                    "user": "alice",
                    "answers": [USERS["alice"]],
                    "env": {"TWOSTEP_DEVICE_TOKEN": token},
                }
            ],
        )[0]
        assert again["code"] == PAM_SUCCESS
        assert [m[0] for m in again["messages"]] == ["prompt"]  # password only
        admin.revoke_all_devices("alice")
        revoked = in_process(
            service,
            [
                {
                    "user": "alice",
                    "answers": [USERS["alice"], "000000"],
                    "env": {"TWOSTEP_DEVICE_TOKEN": token},
                }
            ],
        )[0]
        assert revoked["code"] == PAM_AUTH_ERR and len(revoked["messages"]) == 2
    assert admin.status("alice").devices == ()


def test_expired_device_asks_the_code(
    setup: Setup, admin: Engine, clock: Clock, slapd: Slapd
) -> None:
    slapd.set_attributes(
        "cn=default,ou=policies,dc=example,dc=org", twostepTrustedDeviceLifetime=["60"]
    )
    key, _ = enroll(admin, clock.now)
    with pam_service(setup.lines()) as service:
        trusted = sign_in_trusting(service, key, clock, "1")
        entry = slapd.entry(user_dn("alice"))
        from pam_twostep.core.records import Device

        device = Device.load(entry["twostepdevice"][0].decode())
        aged = Device(
            device.id,
            device.label,
            device.digest,
            device.created - 120,
            device.created - 60,
            device.stamp,
        )
        slapd.set_attributes(user_dn("alice"), twostepDevice=[aged.dump()])
        expired = in_process(
            service,
            [
                {
                    "user": "alice",
                    "answers": [USERS["alice"], "000000"],
                    "env": {"TWOSTEP_DEVICE_TOKEN": str(trusted["new_token"])},
                }
            ],
        )[0]
    assert expired["code"] == PAM_AUTH_ERR
    assert [m[1] for m in expired["messages"]] == ["Password: ", "Verification code: "]


@pytest.mark.parametrize("user", ["*", "bob)(uid=*", "x" * 600, "bob\\", "b\u00f6b"])
def test_hostile_user_names(setup: Setup, admin: Engine, slapd: Slapd, user: str) -> None:
    before = slapd.snapshot()
    with pam_service(setup.lines()) as service:
        result = in_process(service, [{"user": user, "answers": [USERS["bob"], "123456"]}])[0]
    assert result["code"] in (PAM_USER_UNKNOWN, PAM_AUTH_ERR)
    assert slapd.snapshot() == before


def test_oversized_answers(setup: Setup, admin: Engine, clock: Clock) -> None:
    enroll(admin, clock.now)
    with pam_service(setup.lines()) as service:
        long_password, long_code = in_process(
            service,
            [
                {"user": "bob", "answers": ["p" * 5000]},
                {"user": "alice", "answers": [USERS["alice"], "1" * 5000]},
            ],
        )
    assert long_password["code"] in (PAM_AUTH_ERR, 19)  # 19: PAM_CONV_ERR
    assert long_code["code"] == 19


# -- mail services through PAM ---------------------------------------------------------


def test_mail_argument_takes_passcodes_only(setup: Setup, admin: Engine, clock: Clock) -> None:
    enroll(admin, clock.now)
    passcode = admin.add_passcode("alice", "Phone").passcode
    with pam_service(setup.lines("mail")) as service:
        assert pamtester(service, "alice", [passcode]).returncode == 0
        assert pamtester(service, "alice", [USERS["alice"]]).returncode == 1
        assert pamtester(service, "bob", [USERS["bob"]]).returncode == 0


# -- many transactions in one process --------------------------------------------------

ASK_ONCE = """
import _json, _contextvars
def pam_sm_authenticate(pamh, flags, argv):
    pamh.conversation(pamh.Message(pamh.PAM_PROMPT_ECHO_OFF, "Password: "))
    return pamh.PAM_SUCCESS
def pam_sm_acct_mgmt(pamh, flags, argv):
    return pamh.PAM_SUCCESS
"""


def growth(rows: list[tuple[int, int, int]]) -> float:
    """kB per transaction from the 20th to the last (after warm-up)."""
    start = next(r for r in rows if r[0] == 19)
    return (rows[-1][2] - start[2]) / (rows[-1][0] - start[0])


def test_200_transactions_in_one_process(setup: Setup, admin: Engine, clock: Clock) -> None:
    """As Dovecot's auth worker: pam_start/authenticate/end over and over, a fresh
    interpreter each time. Every one succeeds, and memory grows no faster than with a
    do-nothing pam_python module that asks one question (pam_python and CPython leak
    on every re-initialisation; that floor is measured here, in the same run). The floor
    keeps libpython loaded as ours does (pam_module.py says why): measured per
    transaction, Debian 12 (3.11) 348 kB with it, 2020 kB without; Debian 13 (3.13)
    751 kB with it, 2609 kB without; _socket adds 24 kB with it (390 kB without, 3.13)."""
    binary = build_loop(setup.base)
    reference = setup.base / "reference_pam.py"
    reference.write_text(ASK_ONCE)
    with pam_service(module_lines(reference)) as service:
        floor = growth(loop(binary, service, "bob", 200, ["x"]))
    with pam_service(setup.lines()) as service:
        rows = loop(binary, service, "bob", 200, [USERS["bob"]], rhost="192.0.2.8")
    assert {r[1] for r in rows} == {PAM_SUCCESS}
    assert growth(rows) <= floor * 1.1 + 8, (growth(rows), floor)


def test_no_service_file_is_left_behind() -> None:
    assert not list(PAM_D.glob("twostep-test-*"))


# -- OpenSSH, keyboard-interactive -----------------------------------------------------


@pytest.fixture
def sshd(setup: Setup, slapd: Slapd) -> Iterator[tuple[int, str]]:
    """A private sshd on loopback, using our test PAM service, not /etc/pam.d/sshd.

    OpenSSH 9 (Debian 12) names its PAM service after the program, so it runs through a
    link named like the service; OpenSSH 10 (Debian 13) takes ``PAMServiceName`` instead
    and ignores the name. The option is written only where sshd accepts it."""
    import os
    import subprocess

    from pam_twostep.lab.processes import Process, free_port, port_open, wait_for
    from pam_twostep.lab.slapd import ssha

    admin = slapd.admin()  # sshd needs a local account: nobody, also in our directory
    admin.add(
        user_dn("nobody"),
        ["inetOrgPerson"],
        {"uid": "nobody", "cn": "N", "sn": "N", "userPassword": ssha("nobody-pw-8")},
    )
    admin.unbind()
    base = setup.base / "sshd"
    base.mkdir(exist_ok=True)
    key = base / "host_key"
    if not key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    port = free_port()
    lines = [*setup.lines(), "session required pam_permit.so"]
    with pam_service(lines) as service:
        program = base / service
        program.unlink(missing_ok=True)
        program.symlink_to("/usr/sbin/sshd")
        config = base / "sshd_config"
        config.write_text(f"""Port {port}
ListenAddress 127.0.0.1
HostKey {key}
PidFile {base}/sshd.pid
UsePAM yes
KbdInteractiveAuthentication yes
PasswordAuthentication no
PubkeyAuthentication no
AuthenticationMethods keyboard-interactive
StrictModes no
""")
        with_option = config.read_text() + f"PAMServiceName {service}\n"
        probe = base / "sshd_config.probe"
        probe.write_text(with_option)
        probed = subprocess.run(
            ["/usr/sbin/sshd", "-t", "-f", str(probe)], check=False, capture_output=True
        )
        if probed.returncode == 0:
            config.write_text(with_option)
        created_run = not os.path.isdir("/run/sshd")
        if created_run:
            os.makedirs("/run/sshd", mode=0o755)
        process = Process([str(program), "-D", "-e", "-f", str(config)], base / "sshd.log")
        try:
            wait_for(lambda: port_open(port), 10, "sshd")
            yield port, "nobody-pw-8"
        finally:
            process.stop()
            if created_run:
                os.rmdir("/run/sshd")


def ssh_login(port: int, password: str, code: str) -> tuple[bool, list[str]]:
    import paramiko

    asked: list[str] = []

    def answer(title: str, instructions: str, prompts: list[tuple[str, bool]]) -> list[str]:
        replies = []
        for prompt, _echo in prompts:
            asked.append(prompt)
            replies.append(code if "code" in prompt.lower() else password)
        return replies

    transport = paramiko.Transport(("127.0.0.1", port))
    try:
        transport.start_client(timeout=15)
        try:
            transport.auth_interactive("nobody", answer)
        except paramiko.AuthenticationException:
            return False, asked
        return transport.is_authenticated(), asked
    finally:
        transport.close()


def test_ssh_keyboard_interactive(
    setup: Setup, admin: Engine, clock: Clock, sshd: tuple[int, str]
) -> None:
    port, password = sshd
    shown = admin.enroll_begin("nobody", password)
    key = decode_secret(shown.secret)
    admin.enroll_confirm("nobody", totp(key, clock.now))
    assert ssh_login(port, password, "000000")[0] is False
    accepted, asked = ssh_login(port, password, fresh_code(key, clock.now))
    assert accepted
    assert any("Password" in p for p in asked) and any("Verification code" in p for p in asked)


# -- Dovecot's PAM passdb --------------------------------------------------------------


def test_dovecot_pam_passdb(setup: Setup, admin: Engine, clock: Clock) -> None:
    from pam_twostep.lab.dovecot import Dovecot
    from pam_twostep.lab.dovecot_config import Passdb

    enroll(admin, clock.now)
    passcode = admin.add_passcode("alice", "Thunderbird").passcode
    with pam_service(setup.lines("mail")) as service:
        dovecot = Dovecot(world_readable_directory("twostep-pam-dovecot-"), Passdb.pam(service))
        dovecot.start()
        try:
            assert dovecot.imap_login("alice", passcode, "127.0.5.1") == ("OK", "")
            status, text = dovecot.imap_login("alice", USERS["alice"], "127.0.5.2")
            assert status == "NO" and "AUTHENTICATIONFAILED" in text
            assert dovecot.imap_login("bob", USERS["bob"], "127.0.5.3") == ("OK", "")
        finally:
            dovecot.stop()


def test_password_is_checked_once_per_interactive_login(
    setup: Setup, admin: Engine, clock: Clock
) -> None:
    """The challenge carries a continuation, so the code's request needs no second bind."""
    key, _ = enroll(admin, clock.now)

    def binds() -> int:
        return int(setup.daemon.ask({"op": "stats"})["directory"].get("user-bind", 0))  # type: ignore[union-attr]

    with pam_service(setup.lines()) as service:
        before = binds()
        result = pamtester(service, "alice", [USERS["alice"], fresh_code(key, clock.now)])
        assert result.returncode == 0
        assert binds() - before == 1


def test_the_module_imports_only_what_it_needs(setup: Setup) -> None:
    """pam_python imports the module anew for every transaction: no typing, no re."""
    import subprocess

    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import pam_twostep.pam_module; "
        "print(' '.join(sorted(sys.modules)))"
    )
    baseline = set(
        subprocess.run(
            ["/usr/bin/python3", "-IS", "-c", "import sys; print(' '.join(sorted(sys.modules)))"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
    )
    loaded = set(
        subprocess.run(
            ["/usr/bin/python3", "-IS", "-c", code, str(setup.loader.parent)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
    )
    assert loaded - baseline == {
        "_contextvars",  # keeps libpython loaded between transactions (pam_module.py)
        "_json",
        "_socket",
        "pam_twostep",
        "pam_twostep.wire",
        "pam_twostep.pam_module",
    }
