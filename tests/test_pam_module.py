"""The PAM module through real libpam: pamtester, Debian's python3-pam in-process, a C loop
like Dovecot's auth worker, OpenSSH keyboard-interactive, and Dovecot's PAM passdb."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
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
from pam_twostep.pam_module import _Options, system_account, uid_min

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


# -- skip_system: local system accounts are left to pam_unix ---------------------------


def local_uid(name: str) -> int | None:
    """The uid /etc/passwd itself gives ``name`` (the machine the tests run on)."""
    for line in Path("/etc/passwd").read_text(errors="replace").splitlines():
        fields = line.split(":")
        if fields[0] == name and len(fields) == 7 and fields[2].isdigit():
            return int(fields[2])
    return None


def system_user(name: str) -> str:
    uid = local_uid(name)
    if uid is None or uid >= 1000:
        pytest.skip(f"no local system account {name} here")
    return name


def audit_lines(setup: Setup) -> int:
    log = setup.base / "audit.log"
    return len(log.read_text().splitlines()) if log.exists() else 0


def pamtester_ops(service: str, user: str, *ops: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["pamtester", "-v", service, user, *ops],
        input="",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("name", ["root", "daemon"])
def test_skip_system_ignores_system_accounts_without_twostepd(setup: Setup, name: str) -> None:
    """PAM_IGNORE exactly (any other code dies in ``[ignore=ignore default=die]``), from
    auth, setcred and account, with no prompt and twostepd unreachable."""
    user = system_user(name)
    module = f"pam_python.so {setup.loader} socket={setup.base}/no-such-socket"
    lines = [
        f"auth [ignore=ignore default=die] {module} skip_system",
        "auth required pam_permit.so",
        f"account [ignore=ignore default=die] pam_python.so {setup.loader} skip_system",
        "account required pam_permit.so",
    ]
    with pam_service(lines) as service:
        result = in_process(service, [{"user": user, "answers": []}])[0]
        assert result == {"code": PAM_SUCCESS, "messages": [], "new_token": None}, result
        ran = pamtester_ops(service, user, "authenticate", "setcred", "acct_mgmt")
        assert ran.returncode == 0, ran.stdout + ran.stderr
        assert "Password" not in ran.stdout + ran.stderr
    without = [line.replace(" skip_system", "") for line in lines]
    with pam_service(without) as service:
        asked = in_process(service, [{"user": user, "answers": ["x"]}])[0]
    assert asked["code"] == PAM_AUTHINFO_UNAVAIL  # the argument is what makes the difference


def test_skip_system_in_the_profile_stack(setup: Setup, admin: Engine) -> None:
    """debian/pam-configs/twostep as pam-auth-update writes it into common-auth ("end"
    becomes a jump past the Primary block; libpam itself rejects "end"), with a stand-in
    for pam_unix that accepts root only: root goes on to it without twostepd hearing of
    it, daemon goes on to it and is refused there, a name twostepd does not know is
    refused at once (no fall-through), other users are twostepd's."""
    root, daemon = system_user("root"), system_user("daemon")
    lines = [
        "auth [success=2 ignore=ignore default=die] "
        f"pam_python.so {setup.loader} socket={setup.daemon.socket} skip_system",
        "auth [success=1 default=ignore] pam_succeed_if.so quiet uid eq 0",  # "pam_unix"
        "auth requisite pam_deny.so",
        "auth required pam_permit.so",
        "account required pam_permit.so",
    ]
    with pam_service(lines) as service:
        before = audit_lines(setup)
        skipped, refused_there = in_process(
            service, [{"user": root, "answers": []}, {"user": daemon, "answers": []}]
        )
        assert skipped["code"] == PAM_SUCCESS and skipped["messages"] == [], skipped
        assert refused_there["code"] == PAM_AUTH_ERR and refused_there["messages"] == []
        assert audit_lines(setup) == before  # twostepd was not asked
        spellings = ["alice@example", "root@example", " root", "root ", "Root", "ROOT"]
        refused = in_process(service, [{"user": n, "answers": ["x"]} for n in spellings])
        for name, result in zip(spellings, refused, strict=True):
            assert result["code"] in (PAM_USER_UNKNOWN, PAM_AUTH_ERR), (name, result)
            assert result["messages"] == [["prompt", "Password: ", True]], (name, result)
        assert refused[0]["code"] == PAM_USER_UNKNOWN
        assert audit_lines(setup) > before
        bob, wrong = in_process(
            service,
            [{"user": "bob", "answers": [USERS["bob"]]}, {"user": "bob", "answers": ["no"]}],
        )
        assert bob["code"] == PAM_SUCCESS and wrong["code"] == PAM_AUTH_ERR
    plain = [line.replace(" skip_system", "") for line in lines]
    with pam_service(plain) as service:  # without it: root is twostepd's, unknown there
        result = in_process(service, [{"user": root, "answers": ["x"]}])[0]
    assert result["code"] == PAM_USER_UNKNOWN


def test_skip_system_keeps_password_and_code_for_users(
    setup: Setup, admin: Engine, clock: Clock
) -> None:
    key, _ = enroll(admin, clock.now)
    with pam_service(setup.lines("skip_system")) as service:
        answers = [USERS["alice"], fresh_code(key, clock.now)]
        result = in_process(service, [{"user": "alice", "answers": answers}])[0]
    assert result["code"] == PAM_SUCCESS, result
    assert result["messages"] == [
        ["prompt", "Password: ", True],
        ["prompt", "Verification code: ", True],
    ]


def test_skip_system_account_hook(setup: Setup) -> None:
    """account: PAM_IGNORE for a skipped account, PAM_SUCCESS (as ever) for the others
    and for everyone without the argument."""
    root = system_user("root")
    assert local_uid("bob") is None
    module = f"pam_python.so {setup.loader}"

    def account(*lines: str) -> list[object]:
        with pam_service(["auth required pam_permit.so", *lines]) as service:
            results = in_process(
                service, [{"user": root, "answers": []}, {"user": "bob", "answers": []}]
            )
        return [r["code"] for r in results]

    ignore_only = [f"account [ignore=ignore default=die] {module} skip_system"]
    assert account(*ignore_only, "account required pam_permit.so")[0] == PAM_SUCCESS
    assert account(*ignore_only, "account required pam_permit.so")[1] != PAM_SUCCESS
    success_only = f"account [success=ok default=die] {module}"
    root_code, bob_code = account(f"{success_only} skip_system")
    assert root_code != PAM_SUCCESS and bob_code == PAM_SUCCESS
    assert account(success_only) == [PAM_SUCCESS, PAM_SUCCESS]


def test_skip_system_argument_is_exact() -> None:
    assert _Options(["m", "skip_system"]).skip_system
    for arg in ("skip_system=no", "skip_system=1", "Skip_system", "skip_system "):
        assert not _Options(["m", arg]).skip_system, arg
    assert not _Options(["m", "mail"]).skip_system


ROOT = b"root:x:0:0:root:/root:/bin/bash\n"
DAEMON = b"daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"


def _uid_in(passwd: Path) -> Callable[[str], int]:
    """NSS as a files-only host answers: the first entry of that name in ``passwd``."""

    def uid(user: str) -> int:
        for line in passwd.read_bytes().split(b"\n"):
            fields = line.split(b":")
            if len(fields) == 7 and fields[0] == user.encode("utf-8", "surrogateescape"):
                return int(fields[2])
        raise KeyError(user)

    return uid


@pytest.mark.parametrize(
    ("user", "passwd", "expected"),
    [
        ("root", ROOT, True),
        ("daemon", ROOT + DAEMON, True),
        ("alice", b"alice:x:999:999::/home/alice:/bin/sh\n", True),
        ("alice", b"alice:x:1000:1000::/home/alice:/bin/sh\n", False),
        ("alice", b"alice:x:4294967295:1::/:/bin/sh\n", False),
        ("root", b"root:x:0:0:root:/root:/bin/bash", True),  # no final newline
        ("root", b"root:x:0:0:root:/root:/bin/bash\r\n", True),
        ("root", b"root:x:00:0:root:/root:/bin/bash\n", True),
        ("alice", b"", False),
        ("alice", ROOT + DAEMON, False),  # not listed: LDAP's, twostepd decides
        ("", ROOT, False),
        # the name exactly: no case folding, no stripping, no realm
        ("Root", ROOT, False),
        ("ROOT", ROOT, False),
        (" root", ROOT, False),
        ("root ", ROOT, False),
        ("root\t", ROOT, False),
        ("root\n", ROOT, False),
        ("root@example", ROOT, False),
        ("root@example", b"root@example:x:0:0::/:/bin/sh\n", False),
        (" root", b" root:x:0:0::/:/bin/sh\n", False),
        ("ro", ROOT, False),
        ("roo", b"root:x:0:0::/:/bin/sh\nroo\n", False),
        ("root:x", ROOT, False),
        ("root:x:0:0:root:/root:/bin/bash", ROOT, False),
        # NIS compat entries are not local accounts
        ("+root", b"+root:x:0:0::/:/bin/sh\n", False),
        ("-root", b"-root:x:0:0::/:/bin/sh\n", False),
        ("root", b"+root::::::\n", False),
        ("root", b"+::::::\n", False),
        # malformed lines naming the user: not skipped
        ("root", b"root\n", False),
        ("root", b"root:\n", False),
        ("root", b"root:x:0\n", False),
        ("root", b"root:x:0:0::/root\n", False),
        ("root", b"root:x:0:0::/root:/bin/sh:extra\n", False),
        ("root", b"root:x::0::/root:/bin/sh\n", False),
        ("root", b"root:x:zero:0::/root:/bin/sh\n", False),
        ("root", b"root:x: 0:0::/root:/bin/sh\n", False),
        ("root", b"root:x:0 :0::/root:/bin/sh\n", False),
        ("root", b"root:x:+0:0::/root:/bin/sh\n", False),
        ("root", b"root:x:-1:0::/root:/bin/sh\n", False),
        ("root", b"root:x:0_0:0::/root:/bin/sh\n", False),
        ("root", b"root:x:0x0:0::/root:/bin/sh\n", False),
        ("root", "root:x:\u0660:0::/root:/bin/sh\n".encode(), False),  # Arabic-Indic zero
        ("root", b"root:x:00000000000:0::/root:/bin/sh\n", False),  # 11 digits
        ("root", b"root:x:9" + b"9" * 5000 + b":0::/:/bin/sh\n", False),
        ("root", b"root:x:0:0:\x00:/root:/bin/sh\n", False),
        ("root", b"root:x:0\x00:0::/root:/bin/sh\n", False),
        ("root", b"root\x00:x:0:0::/root:/bin/sh\n", False),
        ("root", b"root:x:0:0:\xff\xfe:/root:/bin/sh\n", True),  # not UTF-8, still sound
        # several lines for one name: every one must be sound and below UID_MIN
        ("root", ROOT + b"root:x:1001:1001::/home/root:/bin/sh\n", False),
        ("root", b"root:x:1001:1001::/home/root:/bin/sh\n" + ROOT, False),
        ("root", ROOT + b"root:x:0\n", False),
        ("daemon", DAEMON + b"daemon:x:2:2::/:/bin/sh\n", True),
        # hostile lines that do not name the user do not matter
        ("root", b"\x00\x00\x00\n" + ROOT, True),
        ("root", b"\xff\xfe\xfd:x:0:0::/:/bin/sh\n" + ROOT, True),
        ("root", b"x" * 1_000_000 + b"\n" + ROOT, True),
        ("root", b"::::::\n:\n\n\n" + ROOT, True),
        ("root", b"alice:x:0:0::/:/bin/sh:root:x:0:0::/:/bin/sh\n", False),
        ("root", b"root:x:0:0:" + b"g" * 100_000 + b":/root:/bin/bash\n", True),
        ("b\u00f6b", "b\u00f6b:x:5:5::/:/bin/sh\n".encode(), True),
        ("b\u00f6b", "b\u00f6b:x:5:5::/:/bin/sh\n".encode("latin-1"), False),
        ("\ud800", ROOT, False),  # cannot be encoded: not skipped, no exception
    ],
)
def test_system_account_reads_passwd_strictly(
    tmp_path: Path, user: str, passwd: bytes, expected: bool
) -> None:
    path = tmp_path / "passwd"
    path.write_bytes(passwd)
    assert (
        system_account(user, str(path), str(tmp_path / "no-login.defs"), _uid_in(path)) is expected
    )


@pytest.mark.parametrize(
    ("login_defs", "expected"),
    [
        (None, 1000),  # absent
        (b"", 1000),
        (b"UID_MIN 500\n", 500),
        (b"UID_MIN\t\t\t 500\n", 500),
        (b"  \tUID_MIN 500  \r\n", 500),
        (b'UID_MIN "500"\n', 500),
        (b"UID_MIN 500", 500),
        (b"UID_MIN 0\n", 0),
        (b"UID_MIN 0x1f4\n", 500),  # shadow reads numbers as strtoul(base 0)
        (b"UID_MIN 0X1F4\n", 500),
        (b"UID_MIN 0764\n", 500),
        (b"UID_MIN 500\nUID_MIN 2000\n", 2000),  # the last one wins
        (b"UID_MIN 500\nUID_MIN\n", 500),  # a name alone is no definition
        (b"#UID_MIN 500\n", 1000),
        (b"  # UID_MIN 500\n", 1000),
        (b"UID_MIN 500 # a comment\n", 1000),  # shadow cannot parse it either
        (b"UID_MIN=500\n", 1000),
        (b"uid_min 500\n", 1000),
        (b"UID_MINIMUM 500\n", 1000),
        (b"SYS_UID_MIN 500\n", 1000),
        (b"UID_MIN 08\n", 1000),
        (b"UID_MIN 0x\n", 1000),
        (b"UID_MIN 0xg\n", 1000),
        (b"UID_MIN -1\n", 1000),
        (b"UID_MIN +500\n", 1000),
        (b"UID_MIN 5_00\n", 1000),
        (b"UID_MIN 1e3\n", 1000),
        (b"UID_MIN 5 00\n", 1000),
        (b"UID_MIN 500.0\n", 1000),
        (b"UID_MIN 4294967295\n", 4294967295),
        (b"UID_MIN 4294967296\n", 1000),
        (b"UID_MIN " + b"9" * 100_000 + b"\n", 1000),
        (b"UID_MIN 5\x000\n", 1000),
        (b"UID_MIN \xd9\xa5\n", 1000),  # a non-ASCII digit
        (b"\xff\xfe\x00\n" + b"y" * 500_000 + b"\nUID_MIN 500\n", 500),
    ],
)
def test_uid_min_reads_login_defs_as_shadow_does(
    tmp_path: Path, login_defs: bytes | None, expected: int
) -> None:
    path = tmp_path / "login.defs"
    if login_defs is not None:
        path.write_bytes(login_defs)
    assert uid_min(str(path)) == expected


@pytest.mark.parametrize(
    ("user", "login_defs", "expected"),
    [
        ("root", b"UID_MIN 0\n", True),  # uid 0 always counts
        ("daemon", b"UID_MIN 0\n", False),
        ("daemon", b"UID_MIN 1\n", False),
        ("daemon", b"UID_MIN 2\n", True),
        ("svc", b"UID_MIN 500\n", False),
        ("svc", b"UID_MIN 501\n", True),
        ("svc", b"UID_MIN 500 # comment\n", True),  # unparseable: 1000
        ("svc", None, True),  # absent: 1000
        ("user", None, False),
        ("user", b"UID_MIN 60000\n", True),
    ],
)
def test_system_account_below_uid_min(
    tmp_path: Path, user: str, login_defs: bytes | None, expected: bool
) -> None:
    passwd = tmp_path / "passwd"
    passwd.write_bytes(
        ROOT + DAEMON + b"svc:x:500:500::/:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n"
    )
    defs = tmp_path / "login.defs"
    if login_defs is not None:
        defs.write_bytes(login_defs)
    assert system_account(user, str(passwd), str(defs), _uid_in(passwd)) is expected


def test_system_account_on_read_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file that cannot be read means "not a system account": twostepd decides."""
    import pam_twostep.pam_module as module

    passwd = tmp_path / "passwd"
    passwd.write_bytes(ROOT)
    defs = tmp_path / "login.defs"
    defs.write_bytes(b"UID_MIN 1000\n")
    assert system_account("root", str(passwd), str(defs))
    assert not system_account("root", str(tmp_path / "none"), str(defs))
    assert not system_account("root", str(tmp_path), str(defs))  # a directory
    assert not system_account("root", str(passwd), str(tmp_path))  # login.defs unreadable
    with pytest.raises(OSError):
        uid_min(str(tmp_path))
    monkeypatch.setattr(module, "_MAX_PASSWD", len(ROOT) - 1)
    assert not system_account("root", str(passwd), str(defs))  # too large
    monkeypatch.setattr(module, "_MAX_PASSWD", len(ROOT))
    assert system_account("root", str(passwd), str(defs))
    monkeypatch.setattr(module, "_MAX_LOGIN_DEFS", 4)
    assert not system_account("root", str(passwd), str(defs))


class FakePamh:
    """Just enough of pam_python's handle to call the hooks directly."""

    PAM_SUCCESS, PAM_AUTH_ERR, PAM_AUTHINFO_UNAVAIL, PAM_USER_UNKNOWN = 0, 7, 9, 10
    PAM_MAXTRIES, PAM_CONV_ERR, PAM_IGNORE, PAM_SILENT = 11, 19, 25, 0x8000
    PAM_PROMPT_ECHO_OFF, PAM_ERROR_MSG, PAM_TEXT_INFO = 1, 3, 4

    class exception(Exception):  # noqa: N801 - pam_python's name
        pass

    def __init__(self, user: str) -> None:
        self.user = user
        self.asked: list[object] = []
        self.authtok: str | None = None
        self.service, self.rhost = "test", ""
        self.env: dict[str, str] = {}

    def get_user(self, prompt: object) -> str:
        return self.user

    def Message(self, style: int, text: str) -> tuple[int, str]:  # noqa: N802
        return (style, text)

    def conversation(self, message: object) -> object:
        self.asked.append(message)
        raise self.exception("no conversation here")


def test_hooks_read_the_files_at_call_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The hooks themselves, on an injected passwd: a made-up system account gets
    PAM_IGNORE from all three, nothing asked; a user is asked (and the conversation
    failing here gives PAM_CONV_ERR); without skip_system, the answers of old."""
    import pam_twostep.pam_module as module

    passwd = tmp_path / "passwd"
    passwd.write_bytes(b"svc-x:x:500:500::/:/bin/sh\nuser-x:x:1500:1500::/:/bin/sh\n")
    monkeypatch.setattr(module, "PASSWD", str(passwd))
    monkeypatch.setattr(module, "LOGIN_DEFS", str(tmp_path / "none"))
    monkeypatch.setattr(module, "_nss_uid", _uid_in(passwd))
    argv = ["twostep_pam.py", f"socket={tmp_path}/no-such-socket", "skip_system"]
    svc = FakePamh("svc-x")
    assert module.pam_sm_authenticate(svc, 0, argv) == FakePamh.PAM_IGNORE
    assert module.pam_sm_setcred(svc, 0, argv) == FakePamh.PAM_IGNORE
    assert module.pam_sm_acct_mgmt(svc, 0, argv) == FakePamh.PAM_IGNORE
    assert svc.asked == []
    user = FakePamh("user-x")
    assert module.pam_sm_authenticate(user, 0, argv) == FakePamh.PAM_CONV_ERR
    assert user.asked == [(FakePamh.PAM_PROMPT_ECHO_OFF, "Password: ")]
    assert module.pam_sm_setcred(user, 0, argv) == FakePamh.PAM_SUCCESS
    assert module.pam_sm_acct_mgmt(user, 0, argv) == FakePamh.PAM_SUCCESS
    plain = argv[:2]
    assert module.pam_sm_authenticate(FakePamh("svc-x"), 0, plain) == FakePamh.PAM_CONV_ERR
    assert module.pam_sm_setcred(svc, 0, plain) == FakePamh.PAM_SUCCESS
    assert module.pam_sm_acct_mgmt(svc, 0, plain) == FakePamh.PAM_SUCCESS


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
        "pam_twostep.pam_module.system_account('root'); "  # skip_system: pwd, built in
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
        "pwd",  # built into the interpreter (no file): NSS's view of a system account
    }


def test_a_system_name_nss_resolves_elsewhere_is_not_skipped(tmp_path: Path) -> None:
    """sssd or LDAP first in nsswitch.conf, and a directory user named like a local
    system account: pam_unix would see that user, so twostepd must decide."""
    passwd = tmp_path / "passwd"
    passwd.write_text("backup:x:34:34:backup:/var/backups:/usr/sbin/nologin\n")
    defs = tmp_path / "login.defs"
    assert system_account("backup", str(passwd), str(defs), _uid_in(passwd))
    assert not system_account("backup", str(passwd), str(defs), lambda _: 5001)

    def unknown(user: str) -> int:
        raise KeyError(user)

    assert not system_account("backup", str(passwd), str(defs), unknown)


@pytest.mark.parametrize(
    "text",
    [
        "+::::::\nmail:x:8:8:mail:/var/mail:/usr/sbin/nologin\n",
        "-baduser::::::\nmail:x:8:8:mail:/var/mail:/usr/sbin/nologin\n",
        " mail:x:1001:1001::/home/mail:/bin/sh\nmail:x:8:8:mail:/var/mail:/usr/sbin/nologin\n",
    ],
)
def test_passwd_files_nss_may_read_otherwise_skip_nobody(tmp_path: Path, text: str) -> None:
    passwd = tmp_path / "passwd"
    passwd.write_text(text)
    assert not system_account("mail", str(passwd), str(tmp_path / "none"), lambda _: 8)
