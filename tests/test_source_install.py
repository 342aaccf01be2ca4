"""README's "Install from source", walked as written on a fresh server (issue 21).

A fresh root of this machine's release (``support.freshroot``; on the other release the
suite runs in its chroot, and so does this) gets Debian's slapd, Dovecot, Postfix,
OpenSSH and nginx from the README's own package list, and then every shell block of
that section, extracted from README.md and run unchanged, in order, as root in a copy
of this checkout. The test adds only what a sysadmin has and the README cannot give:
debconf's answers, a user in the directory (with a local account for sshd, as sssd
would give), and a ``systemctl`` (tests/support/systemctl_stub.py) that starts daemons
by hand, as the unit files say, since nothing is booted here.

The services run in a network namespace of the root's own with loopback only
(``FreshRoot.private_network``): they listen on their usual ports (25, 587, 143, 110,
22, 443) and cannot meet this machine's. Mail programs, ssh and the browser are the
suite's Python there (tests/support/install_probe.py). The tests then walk the server
in order, each starting where the one before left it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from support.freshroot import FreshRoot

from pam_twostep.core.totp import decode_secret, totp

REPO = Path(__file__).resolve().parents[1]
CHECKOUT = "/srv/twostep"
PASSWORD = "alice-password-21"
# The README's blocks, by what each begins with: a block added, dropped or reordered
# there fails here first, by name.
STEPS = (
    ("packages", "apt-get install -y make python3-venv"),
    ("install", "make install"),
    ("directory", "ldapadd    -Q -Y EXTERNAL -H ldapi:/// -f ldap_schema/twostep.ldif"),
    ("daemon", "twostepd --check"),
    ("dovecot", "sed -i 's/^!include auth-/#&/' /etc/dovecot/conf.d/10-auth.conf"),
    ("postfix", "cat /usr/local/share/twostep/config/postfix/main.cf.twostep"),
    ("sshd", "cp -b /usr/local/share/twostep/config/pam.d/sshd /etc/pam.d/sshd"),
    ("nginx", "cp /usr/local/share/twostep/config/nginx/twostep-portal"),
    ("uninstall", "systemctl disable --now twostepd twostep-portal"),
)
# debconf's questions, answered as a sysadmin would
_DEBCONF = """\
slapd slapd/domain string example.org
slapd shared/organization string Example
slapd slapd/password1 password admin-pw-21
slapd slapd/password2 password admin-pw-21
postfix postfix/main_mailer_type select Internet Site
postfix postfix/mailname string mail.example.org
"""
# the test's own tools, not the README's
_TOOLS = "pamtester"
# Where uninstall may leave changes: the package manager's state, caches, logs, data.
_VOLATILE = re.compile(
    r"^(proc|dev|run|tmp|srv|var/tmp|var/cache|var/lib|var/backups|var/spool|var/mail"
    r"|var/vmail|root|usr/local/sbin/systemctl)(/|$)|^var/log/(?!twostep)"
)

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("debootstrap") or not shutil.which("unshare"),
    reason="needs root, debootstrap and unshare (make deps installs them)",
)


def readme_blocks() -> list[str]:
    """The shell blocks of README's "Install from source", in order."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Install from source\n") :]
    section = section[: section.index("\n### Interactive logins through PAM")]
    return re.findall(r"(?ms)^```sh\n(.*?)^```$", section)


def test_the_readme_blocks_are_the_steps_this_test_takes() -> None:
    blocks = readme_blocks()
    assert [
        b.splitlines()[0][: len(start)] for b, (_, start) in zip(blocks, STEPS, strict=False)
    ] == [start for _, start in STEPS]
    assert len(blocks) == len(STEPS)


@dataclass
class Host:
    root: FreshRoot
    work: Path
    blocks: dict[str, str]
    before: dict[str, str] = field(default_factory=dict)
    secret: str = ""
    backup_codes: list[str] = field(default_factory=list)
    passcode: str = ""
    used_steps: set[int] = field(default_factory=set)

    def step(self, name: str, *, online: bool = False) -> str:
        """README's block ``name``, as written, in the checkout; its output."""
        script = f"cd {CHECKOUT}\n{self.blocks[name]}"
        return self.root.run(script, private=not online, timeout=1800).stdout

    def sh(self, script: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.root.run(script, check=check, private=True)

    def probe(self, *argv: str) -> dict[str, Any]:
        done = subprocess.run(
            [
                *self.root.network_argv(),
                sys.executable,
                str(REPO / "tests/support/install_probe.py"),
                *argv,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        result: dict[str, Any] = json.loads(done.stdout)
        return result

    def code(self) -> str:
        """alice's code of now, from her app; each time step's code works once."""
        step = int(time.time()) // 30
        while int(time.time()) // 30 == step and step in self.used_steps:
            time.sleep(0.5)
        now = time.time()
        self.used_steps.add(int(now) // 30)
        return totp(decode_secret(self.secret), now)

    def logs(self) -> str:
        parts = []
        for path in sorted(self.root.file("/var/log").rglob("*")):
            if path.is_file() and re.match(r"twostep|systemctl|nginx|error|audit", path.name):
                parts.append(f"== {path.name}\n{path.read_text(errors='replace')[-3000:]}")
        return "\n".join(parts)


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Host]:
    work = tmp_path_factory.mktemp("source-install")
    with FreshRoot.opened(work / "root") as root:
        root.private_network()
        source = root.file(CHECKOUT)
        junk = (".git", ".venv*", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis", "build")
        shutil.copytree(REPO, source, symlinks=True, ignore=shutil.ignore_patterns(*junk))
        stub = root.file("/usr/local/sbin/systemctl")
        shutil.copy(REPO / "tests/support/systemctl_stub.py", stub)
        stub.chmod(0o755)
        root.run(f"printf '%s' '{_DEBCONF}' | debconf-set-selections && apt-get update -q")
        blocks = dict(zip((name for name, _ in STEPS), readme_blocks(), strict=True))
        yield Host(root, work, blocks)


def test_debians_packages_and_make_install(host: Host) -> None:
    host.step("packages", online=True)
    host.root.run(f"apt-get install -y -q --no-install-recommends {_TOOLS}")
    # what apt starts on a booted server (here policy-rc.d stops it)
    host.sh("systemctl start slapd dovecot postfix ssh nginx")
    host.before = host.root.snapshot(_VOLATILE)
    host.step("install", online=True)
    for path in (
        "/usr/local/sbin/twostepd",
        "/usr/local/lib/systemd/system/twostepd.service",
        "/usr/local/lib/tmpfiles.d/twostep.conf",
        "/etc/twostep/keys/k1.key",
        "/etc/twostep/portal.key",
    ):
        host.sh(f"test -e {path}")  # inside: the links are absolute
    stat = host.sh("stat -c '%a %U:%G' /etc/twostep/keys/k1.key").stdout.strip()
    assert stat == "600 twostep:twostep"
    # scripts name where they run from, not where they were built
    shebang = host.root.file("/usr/local/lib/twostep/venv/bin/twostepd").read_text()
    assert shebang.startswith("#!/usr/local/lib/twostep/venv/bin/python")


def test_the_directory_and_the_daemon(host: Host) -> None:
    host.step("directory")
    # the site's users, as it has them (here one, added by root as the README's rules allow)
    hashed = host.sh(f"slappasswd -s {PASSWORD}").stdout.strip()
    host.sh(
        "ldapadd -Q -Y EXTERNAL -H ldapi:/// <<'EOF'\n"
        "dn: ou=people,dc=example,dc=org\nobjectClass: organizationalUnit\nou: people\n\n"
        "dn: uid=alice,ou=people,dc=example,dc=org\nobjectClass: inetOrgPerson\n"
        f"uid: alice\ncn: Alice\nsn: A\nuserPassword: {hashed}\nEOF"
    )
    # NSS knows her (sssd or libnss-ldapd would); her local account has the same
    # password, so a system passdb or pam_unix left in front of twostep would let it in
    host.sh(
        f"useradd --uid 2001 --no-create-home --shell /bin/bash alice && "
        f"echo alice:{PASSWORD} | chpasswd"
    )
    try:
        out = host.step("daemon")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{host.logs()}") from None
    assert "FAIL" not in out, out
    begin = json.loads(
        host.sh(f"printf %s {PASSWORD} | twostep --json enroll alice --begin").stdout
    )
    host.secret = begin["secret"]
    confirmed = json.loads(host.sh(f"twostep --json enroll alice --confirm {host.code()}").stdout)
    host.backup_codes = confirmed["backup_codes"]
    host.passcode = json.loads(host.sh("twostep --json passcode add alice phone").stdout)[
        "passcode"
    ]


def _step(host: Host, name: str) -> None:
    try:
        host.step(name)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{host.logs()}") from None


def test_mail_takes_passcodes_only_and_port_25_takes_mail(host: Host) -> None:
    _step(host, "dovecot")
    _step(host, "postfix")
    # twostep's is Dovecot's only passdb
    passdbs = host.sh("doveconf -n").stdout.count("\npassdb")
    assert passdbs == 1, host.sh("doveconf -n").stdout
    for service in ("imap", "pop3", "submission"):
        accepted = host.probe(service, "alice", host.passcode)
        assert accepted["ok"], (service, accepted, host.logs())
        assert accepted.get("select", "OK") == "OK", accepted
        refused = host.probe(service, "alice", PASSWORD)
        assert not refused["ok"], (service, refused)
    assert host.probe("submission", "alice", PASSWORD)["code"] == 535
    inbound = host.probe("smtp25", "alice@localhost")
    assert inbound["ok"] and not inbound["auth_offered"], inbound
    audit = host.root.file("/var/log/twostep/audit.log").read_text()
    assert '"method":"passcode"' in audit and '"outcome":"deny"' in audit


def test_sshd_and_pam_ask_for_the_password_and_a_code(host: Host) -> None:
    _step(host, "sshd")
    wrong = host.probe("ssh", "alice", PASSWORD, "000000")
    assert not wrong["ok"], wrong
    right = host.probe("ssh", "alice", PASSWORD, host.code())
    assert right["ok"], (right, host.logs())
    assert any("Password" in p for p in right["asked"]), right
    assert any("Verification code" in p for p in right["asked"]), right
    # libpam itself, through the same stack, with a backup code at the code prompt
    backup = host.backup_codes.pop()
    pam = host.sh(
        f"printf '%s\\n' {PASSWORD} {backup} | pamtester sshd alice authenticate", check=False
    )
    assert pam.returncode == 0, pam.stdout + pam.stderr
    again = host.sh(
        f"printf '%s\\n' {PASSWORD} {backup} | pamtester sshd alice authenticate", check=False
    )
    assert again.returncode != 0  # a backup code works once


def test_the_portal_behind_nginx_with_tls(host: Host) -> None:
    _step(host, "nginx")
    signed_in = host.probe(
        "portal", "https://127.0.0.1", "-", "alice", PASSWORD, host.backup_codes.pop()
    )
    assert signed_in["ok"], (signed_in, host.logs())
    refused = host.probe("portal", "https://127.0.0.1", "-", "alice", PASSWORD, "000000")
    assert not refused["ok"], refused


def _etc_twostep(host: Host) -> dict[str, str]:
    return {k: v for k, v in host.root.snapshot(_VOLATILE).items() if k.startswith("etc/twostep")}


def test_a_second_make_install_keeps_configuration_and_keys(host: Host) -> None:
    before = _etc_twostep(host)
    assert "etc/twostep/ldap.secret" in before and "etc/twostep/keys/k1.key" in before
    host.step("install", online=True)
    assert _etc_twostep(host) == before
    host.sh("systemctl restart twostepd twostep-portal")
    assert host.probe("imap", "alice", host.passcode)["ok"]


def test_make_uninstall_removes_what_install_added_and_nothing_else(host: Host) -> None:
    host.step("uninstall")
    assert not host.root.file("/run/twostep/twostepd.sock").exists()
    after = host.root.snapshot(_VOLATILE)
    # users and groups stay (files elsewhere may be theirs), as Debian keeps them
    accounts = {
        f"etc/{name}{end}"
        for name in ("passwd", "group", "shadow", "gshadow", "subuid", "subgid")
        for end in ("", "-")
    }
    # what the README's steps changed in Debian's own configuration, the site's to undo
    edited = {
        "etc/dovecot/conf.d/10-auth.conf",
        "etc/postfix/main.cf",
        "etc/postfix/master.cf",
        "etc/pam.d/sshd",
        "etc/pam.d/sshd~",
        "etc/ssh/sshd_config.d/00-twostep.conf",
        "etc/nginx/sites-available/twostep-portal",
        "etc/nginx/sites-enabled/twostep-portal",
    }
    # ... and the directory's configuration, the schema and rules its step loaded
    slapd = re.compile(r"etc/ldap/slapd\.d/")
    added = sorted(
        k for k in set(after) - set(host.before) - accounts - edited if not slapd.match(k)
    )
    removed = sorted(set(host.before) - set(after))
    changed = sorted(
        k
        for k in set(after) & set(host.before)
        if after[k] != host.before[k] and not slapd.match(k)
    )
    kept = [k for k in added if not k.startswith(("etc/twostep", "var/log/twostep"))]
    assert kept == [], kept
    assert {"etc/twostep/twostep.yaml", "etc/twostep/keys/k1.key"} <= set(added)
    assert removed == []
    assert set(changed) <= accounts | edited, changed
