"""The Debian package, built and used the way a sysadmin would (issue 19).

Built with ``dpkg-buildpackage`` from a copy of this checkout and checked with lintian,
then installed into a fresh root of this machine's release (``support.freshroot``) next
to Debian's slapd and Dovecot. The tests then walk one server in order, each starting
where the one before left it: installing enables nothing, ``twostep check`` names what is
missing, a mail client logs in over IMAP with an application passcode through the
installed Lua passdb, an upgrade keeps configuration and keys, the PAM profile is off
until enabled, and a purge removes what the package made and nothing else. On the
other release the suite runs in its chroot (tests/release), and so does this.
"""

from __future__ import annotations

import imaplib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from support.freshroot import FreshRoot

from pam_twostep.core.totp import decode_secret, totp
from pam_twostep.lab.processes import free_port, port_open, wait_for

REPO = Path(__file__).resolve().parents[1]
_CHANGELOG = (REPO / "debian/changelog").read_text()
VERSION = re.match(r"twostep \(([^)]+)\)", _CHANGELOG).group(1)  # type: ignore[union-attr]
NEXT = f"{VERSION}+next1"
# What a mail server has before twostep comes: Debian's own packages.
MAIL_HOST = (
    "slapd",
    "ldap-utils",
    "dovecot-imapd",
    "dovecot-pop3d",
    "dovecot-auth-lua",
    "lua-socket",
    "libpam-python",
    "pamtester",
    # not running (nothing is booted here), but its tools read the units
    "systemd",
    # the units' Documentation=man:twostepd(8), which systemd-analyze opens
    "man-db",
)
_BUILD_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
PASSWORD = "alice-password-19"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("dpkg-buildpackage") or not shutil.which("debootstrap"),
    reason="needs root, dpkg-buildpackage and debootstrap (make deps installs them)",
)


@dataclass(frozen=True)
class Built:
    deb: Path
    next_deb: Path
    """The same files under a higher version: what an upgrade brings."""


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    work = tmp_path_factory.mktemp("package")
    source = work / "twostep"
    junk = (".git", ".venv*", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis")
    shutil.copytree(REPO, source, symlinks=True, ignore=shutil.ignore_patterns(*junk))
    done = subprocess.run(
        ["dpkg-buildpackage", "-us", "-uc", "-b"],
        cwd=source,
        env={**_BUILD_ENV, "HOME": str(work)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    deb = work / f"twostep_{VERSION}_all.deb"
    unpacked = work / "next"
    subprocess.run(["dpkg-deb", "-R", str(deb), str(unpacked)], check=True)
    control = unpacked / "DEBIAN/control"
    control.write_text(re.sub(r"(?m)^Version: .*$", f"Version: {NEXT}", control.read_text()))
    next_deb = work / f"twostep_{NEXT}_all.deb"
    subprocess.run(
        ["dpkg-deb", "-b", str(unpacked), str(next_deb)], check=True, capture_output=True
    )
    return Built(deb, next_deb)


def test_lintian_finds_no_error_and_no_warning_left_unexplained(built: Built) -> None:
    done = subprocess.run(
        ["lintian", "--pedantic", "--info", str(built.deb)],
        env=_BUILD_ENV,
        capture_output=True,
        text=True,
        check=False,
    )
    tags = re.findall(r"(?m)^([EWIPX]): twostep: (\S+)", done.stdout)
    # the warnings kept are overridden in debian/twostep.lintian-overrides, each with why
    assert [t for t in tags if t[0] in "EW"] == [], done.stdout
    assert not {"unused-override", "mismatched-override"} & {name for _, name in tags}
    assert done.returncode == 0, done.stdout + done.stderr


# -- one server, in order ---------------------------------------------------------------


@dataclass
class Server:
    root: FreshRoot
    logs: Path
    before: dict[str, str]
    info: dict[str, str] = field(default_factory=dict)
    twostepd: subprocess.Popen[bytes] | None = None
    imap_port: int = 0
    passcode: str = ""
    secret: str = ""
    used_steps: set[int] = field(default_factory=set)

    def sh(self, script: str) -> str:
        return self.root.run(script).stdout

    def start_twostepd(self) -> None:
        if self.twostepd is not None:
            self.twostepd.kill()
            self.twostepd.wait()
        socket = self.root.file("/run/twostep/twostepd.sock")
        socket.unlink(missing_ok=True)
        # as the unit runs it: the twostep user, with its groups (twostep-clients)
        argv = ["setpriv", "--reuid=twostep", "--regid=twostep", "--init-groups", "--"]
        self.twostepd = self.root.spawn([*argv, "/usr/sbin/twostepd"], self.logs / "twostepd")
        wait_for(socket.exists, 30, f"twostepd: {(self.logs / 'twostepd').read_text()[-2000:]}")


def _depends(deb: Path) -> list[str]:
    field_text = subprocess.run(
        ["dpkg-deb", "-f", str(deb), "Depends"], capture_output=True, text=True, check=True
    ).stdout
    names = [part.split("|")[0].split("(")[0].strip() for part in field_text.split(",")]
    return [n.replace(":any", "") for n in names if n]


# Where a purge may leave traces that are not the package's: the package manager's own
# state, caches and logs, the test's own files, and the data of slapd and Dovecot.
_VOLATILE = re.compile(
    r"^(proc|dev|run|tmp|srv|var/tmp|var/cache|var/lib/apt|var/lib/dpkg|var/backups"
    r"|var/lib/ldap|var/lib/dovecot|var/vmail|root)(/|$)|^var/log/(?!twostep)"
)


def _snapshot(root: FreshRoot) -> dict[str, str]:
    return root.snapshot(_VOLATILE)


@pytest.fixture(scope="module")
def server(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    work = tmp_path_factory.mktemp("server")
    with FreshRoot.opened(work / "root") as root:
        root.run("apt-get update -q")
        packages = " ".join([*_depends(built.deb), *MAIL_HOST])
        root.run(f"apt-get install -y -q --no-install-recommends {packages}")
        # the mail user the shipped Dovecot snippets name, as the README tells a site
        root.run(
            "useradd --system --user-group --home-dir /var/vmail --no-create-home"
            " --shell /usr/sbin/nologin vmail && install -d -m 770 -o vmail -g vmail /var/vmail"
        )
        debs = root.file("/srv/debs")
        debs.mkdir(parents=True)
        for deb in (built.deb, built.next_deb):
            shutil.copy(deb, debs)
        shutil.copy(REPO / "tests/support/package_inside.py", root.file("/srv/inside.py"))
        logs = work / "logs"
        logs.mkdir()
        yield Server(root, logs, _snapshot(root))


def _stat(server: Server, path: str) -> str:
    return server.sh(f"stat -c '%a %U:%G' {path}").strip()


def test_installing_sets_up_users_and_private_files_and_enables_nothing(server: Server) -> None:
    server.sh(f"apt-get install -y -q /srv/debs/twostep_{VERSION}_all.deb")
    assert _stat(server, "/etc/twostep") == "750 root:twostep"
    assert _stat(server, "/etc/twostep/twostep.yaml") == "640 root:twostep"
    assert _stat(server, "/etc/twostep/keys") == "700 twostep:twostep"
    assert _stat(server, "/etc/twostep/keys/k1.key") == "600 twostep:twostep"
    assert _stat(server, "/etc/twostep/portal.key") == "600 twostep-portal:twostep-portal"
    assert _stat(server, "/var/log/twostep") == "750 twostep:adm"
    assert _stat(server, "/var/log/twostep/audit.log") == "640 twostep:adm"
    members = server.sh("getent group twostep-clients").strip().rsplit(":", 1)[1].split(",")
    # Dovecot was there first: its user is in the socket's group
    assert {"twostep", "twostep-portal", "dovecot"} <= set(members)
    # the thin clients are compiled at installation, so the dovecot user never writes
    assert list(server.root.file("/usr/lib/twostep/pam_twostep/__pycache__").glob("wire.*.pyc"))
    assert "twostep" not in server.root.file("/etc/pam.d/common-auth").read_text()
    assert not server.root.file("/run/twostep/twostepd.sock").exists()
    assert server.sh("twostepd --help").startswith("usage: twostepd")
    units = server.sh("dpkg -L twostep | grep '/systemd/system/.*[.]service$'").split()
    assert sorted(Path(u).name for u in units) == ["twostep-portal.service", "twostepd.service"]
    # as systemd would read them on a booted server: no unknown setting, programs exist
    server.sh(f"SYSTEMD_LOG_LEVEL=warning systemd-analyze verify {' '.join(units)}")
    unit = server.root.file(next(u for u in units if u.endswith("/twostepd.service")))
    # ProtectSystem=strict: the audit file's folder is the one place twostepd may write
    assert "ReadWritePaths=-/var/log/twostep" in unit.read_text()
    assert server.sh("systemctl is-enabled twostepd || true").strip() == "disabled"
    for page in ("man1/twostep.1", "man8/twostepd.8", "man5/twostep.yaml.5"):
        assert server.root.file(f"/usr/share/man/{page}.gz").exists(), page


def test_twostep_check_names_what_is_missing_and_how_to_fix_it(server: Server) -> None:
    done = server.root.run("twostep check", check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    [secret] = [line for line in lines if "/etc/twostep/ldap.secret" in line]
    assert secret.startswith("FAIL ") and "put the service identity's password in" in secret
    [daemon] = [line for line in lines if "twostepd at /run/twostep/twostepd.sock" in line]
    assert daemon.startswith("FAIL ") and "systemctl start twostepd" in daemon


def _configure(server: Server) -> None:
    """What README's "Install from the package" has the administrator do."""
    info = json.loads(server.sh(f"python3 /srv/inside.py directory /srv/ldap {PASSWORD}"))
    server.info = info
    server.sh(
        "install -m 0600 -o twostep -g twostep /dev/null /etc/twostep/ldap.secret"
        f" && printf %s '{info['service_password']}' > /etc/twostep/ldap.secret"
    )
    path = server.root.file("/etc/twostep/twostep.yaml")
    config = yaml.safe_load(path.read_text())
    config["ldap"].update(uris=[info["uri"]], bind_dn=info["service_dn"])
    config["ldap"].pop("ca_file", None)
    config["users"]["base"] = info["people"]
    config["policy"].update(base=info["policies"], default=info["default_policy"])
    config["daemon"]["processes"] = 1
    path.write_text(yaml.safe_dump(config))
    # no systemd here: the folders its tmpfiles snippet names, made as it would
    tmpfiles = server.root.file("/usr/lib/tmpfiles.d/twostep.conf").read_text()
    for _kind, folder, mode, user, group, *_ in (
        line.split() for line in tmpfiles.splitlines() if line.startswith("d ")
    ):
        server.sh(f"install -d -m {mode} -o {user} -g {group} {folder}")


def _code(server: Server) -> str:
    """alice's code of now, from her authenticator app; each step's code works once."""
    step = int(time.time()) // 30
    while int(time.time()) // 30 == step and step in server.used_steps:
        time.sleep(0.5)
    now = time.time()
    server.used_steps.add(int(now) // 30)
    return totp(decode_secret(server.secret), now)


def _imap_login(port: int, user: str, secret: str) -> bool:
    client = imaplib.IMAP4("127.0.0.1", port)
    try:
        client.login(user, secret)
    except imaplib.IMAP4.error:
        return False
    finally:
        client.shutdown()
    return True


def test_a_mail_client_logs_in_over_imap_with_an_application_passcode(server: Server) -> None:
    _configure(server)
    server.start_twostepd()
    check = server.root.run("twostep check", check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    begin = json.loads(server.sh(f"printf %s {PASSWORD} | twostep --json enroll alice --begin"))
    server.secret = begin["secret"]
    server.sh(f"twostep --json enroll alice --confirm {_code(server)}")
    added = json.loads(server.sh("twostep --json passcode add alice thunderbird"))
    server.passcode = added["passcode"]

    is_24 = server.sh("dovecot --version").startswith("2.4")
    snippet = "auth-twostep-lua-2.4.conf.ext" if is_24 else "auth-twostep-lua.conf.ext"
    server.imap_port = _start_dovecot(server, "/srv/dovecot", snippet)

    assert _imap_login(server.imap_port, "alice", server.passcode)
    # two-step is on: the password alone no longer opens mail
    assert not _imap_login(server.imap_port, "alice", PASSWORD)
    audit = server.root.file("/var/log/twostep/audit.log").read_text()
    assert '"method":"passcode"' in audit and '"outcome":"deny"' in audit


def _start_dovecot(server: Server, folder: str, snippet: str) -> int:
    """A Dovecot that includes one of the package's snippets; its IMAP port."""
    imap_port = free_port()
    made = json.loads(
        server.sh(
            f"python3 /srv/inside.py dovecot {folder} {imap_port} {free_port()}"
            f" /usr/share/twostep/dovecot/conf.d/{snippet}"
        )
    )
    log = server.logs / folder.rsplit("/", 1)[1]
    server.root.spawn(["dovecot", "-F", "-c", made["config"]], log)
    wait_for(lambda: port_open(imap_port), 30, f"dovecot: {log.read_text()[-2000:]}")
    return imap_port


def test_dovecot_23_logs_in_through_the_checkpassword_program(server: Server) -> None:
    if server.sh("dovecot --version").startswith("2.4"):
        pytest.skip("Dovecot 2.4 has no checkpassword passdb")
    port = _start_dovecot(server, "/srv/dovecot-cp", "auth-twostep-checkpassword.conf.ext")
    assert _imap_login(port, "alice", server.passcode)
    assert not _imap_login(port, "alice", PASSWORD)


def _etc_twostep(server: Server) -> dict[str, str]:
    return {k: v for k, v in _snapshot(server.root).items() if k.startswith("etc/twostep")}


def test_an_upgrade_keeps_configuration_and_keys(server: Server) -> None:
    before = _etc_twostep(server)
    assert "etc/twostep/ldap.secret" in before and "etc/twostep/keys/k1.key" in before
    server.sh(f"apt-get install -y -q /srv/debs/twostep_{NEXT}_all.deb")
    assert server.sh("dpkg-query -W -f '${Version}' twostep") == NEXT
    assert _etc_twostep(server) == before
    server.start_twostepd()
    assert _imap_login(server.imap_port, "alice", server.passcode)


def _pamtester(server: Server, user: str, *answers: str) -> bool:
    feed = "".join(f"{a}\n" for a in answers)
    done = server.root.run(
        f"printf %s '{feed}' | pamtester twostep-check {user} authenticate", check=False
    )
    return done.returncode == 0


# A stand-in for pam_sss or pam_winbind, a later Primary module that would take a
# directory password alone: it accepts "backup" (a system account here) with "dirpw".
_DIRECTORY_PROFILE = """Name: a directory module (test)
Default: no
Priority: 128
Auth-Type: Primary
Auth:
\t[success=end default=ignore] pam_exec.so quiet expose_authtok /usr/local/bin/dircheck
"""
_DIRCHECK = '#!/bin/sh\nread -r pw; [ "$PAM_USER" = backup ] && [ "$pw" = dirpw ]\n'


def test_the_pam_profile_is_off_until_enabled_and_then_fails_closed(server: Server) -> None:
    common_auth = server.root.file("/etc/pam.d/common-auth")
    assert "twostep" not in common_auth.read_text()
    server.root.file("/etc/pam.d/twostep-check").write_text("@include common-auth\n")
    server.root.file("/usr/share/pam-configs/zz-directory").write_text(_DIRECTORY_PROFILE)
    server.root.file("/usr/local/bin/dircheck").write_text(_DIRCHECK)
    server.root.file("/usr/local/bin/dircheck").chmod(0o755)
    server.sh("pam-auth-update --enable zz-directory")
    assert _pamtester(server, "backup", "dirpw", "dirpw")  # the stand-in works
    server.sh("pam-auth-update --enable twostep")
    lines = [line for line in common_auth.read_text().splitlines() if line.startswith("auth")]
    assert "pam_python.so /usr/lib/twostep/twostep_pam.py skip_system" in lines[0]
    # success ends it; a system account (root) goes to its own pam_unix, and only there:
    # whatever else fails ends the login, and no later module is reached
    assert re.search(r"\[success=\d+ ignore=ignore default=die\]", lines[0])
    assert re.search(r"\[success=\d+ default=die\] pam_unix.so", lines[1])
    # a directory account named like a local system account: its password alone no more
    assert not _pamtester(server, "backup", "dirpw", "dirpw")
    # root is pam_unix's, without asking twostepd: it logs in with twostepd down too
    server.sh("echo root:root-local-pw | chpasswd")
    assert _pamtester(server, "root", "root-local-pw")
    assert not _pamtester(server, "root", "wrong")
    # alice is in the directory, and here also a local account with the same password:
    # only the password and a code let her in, and no failure of twostep's falls through
    server.sh(f"useradd alice && echo alice:{PASSWORD} | chpasswd")
    assert _pamtester(server, "alice", PASSWORD, _code(server))
    assert not _pamtester(server, "alice", PASSWORD, "000000", PASSWORD)
    # a name twostepd does not know is refused, not handed on (sssd would take
    # "alice@example" for alice, with her password alone)
    assert not _pamtester(server, "alice@example", PASSWORD, PASSWORD)
    assert server.twostepd is not None
    server.twostepd.kill()
    server.twostepd.wait()
    code = totp(decode_secret(server.secret), time.time())
    assert not _pamtester(server, "alice", PASSWORD, code, PASSWORD)
    assert _pamtester(server, "root", "root-local-pw")
    server.start_twostepd()
    server.sh(
        "pam-auth-update --disable zz-directory && rm /usr/share/pam-configs/zz-directory"
        " /usr/local/bin/dircheck /etc/pam.d/twostep-check && userdel alice"
    )


def test_removing_stops_while_a_pam_file_still_uses_the_module(server: Server) -> None:
    """pam-auth-update leaves a common-auth edited by hand as it is: removing the
    package then would leave every login refused, root's included."""
    common_auth = server.root.file("/etc/pam.d/common-auth")
    # a service of the site's own that uses the module: nothing is changed, not even
    # common-auth, which keeps asking for a code
    server.sh("cp /usr/share/twostep/pam.d/twostep-dovecot /etc/pam.d/")
    done = server.root.run("apt-get remove -y -q twostep", check=False)
    assert done.returncode != 0 and "/etc/pam.d/twostep-dovecot" in done.stdout + done.stderr
    assert "twostep_pam.py" in common_auth.read_text()
    server.sh("rm /etc/pam.d/twostep-dovecot")
    lines = common_auth.read_text().splitlines(keepends=True)
    first = next(i for i, line in enumerate(lines) if line.startswith("auth"))
    # inside the block pam-auth-update writes (an edit outside it, it keeps and goes on)
    lines.insert(first + 1, "# edited by hand\n")
    common_auth.write_text("".join(lines))
    done = server.root.run("apt-get remove -y -q twostep", check=False)
    assert done.returncode != 0
    assert "still use /usr/lib/twostep/twostep_pam.py" in done.stderr + done.stdout
    assert server.sh("dpkg-query -W -f '${Status}' twostep") == "install ok installed"
    server.sh("pam-auth-update --force --disable twostep")
    assert "twostep" not in common_auth.read_text()
    # its copies of the files as they were (no services; one names the module)
    server.sh("rm /etc/pam.d/*.pam-old")


def test_purge_removes_what_the_package_made_and_nothing_else(server: Server) -> None:
    server.root.stop_all()
    server.sh("apt-get purge -y -q twostep")
    after = _snapshot(server.root)
    # the account databases (and their backups) changed with the users the package and
    # the tests made; the users stay, as Debian keeps system users (files elsewhere may
    # be theirs)
    accounts = {
        f"etc/{name}{end}"
        for name in ("passwd", "group", "shadow", "gshadow", "subuid", "subgid")
        for end in ("", "-")
    }
    added = sorted(set(after) - set(server.before) - accounts)
    removed = sorted(set(server.before) - set(after))
    changed = sorted(k for k in set(after) & set(server.before) if after[k] != server.before[k])
    # the administrator's ldap.secret stays, and so its folder
    assert added == ["etc/twostep", "etc/twostep/ldap.secret"]
    assert removed == []
    assert set(changed) <= accounts, changed
    assert "twostep" not in server.root.file("/etc/pam.d/common-auth").read_text()
