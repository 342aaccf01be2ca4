"""``make bench``: how fast a login is, side by side with what a site would use instead.

Starts its own slapd, twostepd and Dovecot (one Dovecot per passdb, in turn) and
measures, in the same run on the same machine, with a warm-up and the median of
repeated rounds:

1. Dovecot's auth-client socket (AUTH PLAIN, closed loop) at concurrency 1, 4, 16:
   native LDAP auth_bind (the reference), a shell checkpassword (the spawn floor), an
   empty Python checkpassword under -I -S (Python's floor), and twostep through
   checkpassword, the Lua passdb and Dovecot's PAM passdb, each with a passcode;
2. IMAP LOGIN/LOGOUT end to end with imaplib for the same passdbs;
3. passcode scaling: a user holding 1 vs 25 passcodes, a right vs a wrong passcode;
4. PAM interactive (password + code) per transaction vs an empty pam_python module;
5. twostepd itself: decisions per second, directory operations per login, resident
   memory over 10,000 logins.

Prints one table with ratios against the goals, writes the raw figures as JSON, and
exits non-zero only when something could not be measured (never on a threshold).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cpu import cpu_seconds, per_login_ms
from deployed import deployed_config
from devlog import DevLog
from drivers import (
    Sample,
    auth_client,
    closed_loop,
    daemon_login,
    imap_login,
    median,
    serving_stats,
)
from scale import ScaleError, Sizes, measure_scale

from pam_twostep.audit import MemorySink
from pam_twostep.config import load_secrets, parse_config
from pam_twostep.core.totp import decode_secret, time_step, totp
from pam_twostep.directory import Directory
from pam_twostep.engine import Engine
from pam_twostep.lab.dovecot import Dovecot, passdb_block
from pam_twostep.lab.dovecot_config import (
    LDAP_SEARCH,
    LDAP_TEMPLATE,
    LdapPassdb,
    Passdb,
    installed_version,
    unsupported,
)
from pam_twostep.lab.files import PAM_LOADER, install_clients
from pam_twostep.lab.slapd import Directory as Names
from pam_twostep.lab.slapd import Slapd, user_ldif
from pam_twostep.lab.twostepd import Twostepd

HERE = Path(__file__).resolve().parent
PAM_D = Path("/etc/pam.d")
PLAIN_PASSWORD = "plain-pw-" + secrets.token_hex(4)
SEARCH_BIND = "native LDAP search+bind"
TEMPLATE_BIND = "native LDAP auth_bind_userdn"

EMPTY_PYTHON_CHECKPASSWORD = """#!/usr/bin/python3 -IS
import posix, sys
posix.read(3, 600)
env = dict(posix.environ)
env[b"USER"] = b"plain"
posix.execve(sys.argv[1], sys.argv[1:], env)
"""
SHELL_CHECKPASSWORD = """#!/bin/bash
read -r -d '' _ <&3
export USER=plain
exec "$1"
"""
EMPTY_PAM_MODULE = """def pam_sm_authenticate(pamh, flags, argv):
    return pamh.PAM_SUCCESS
def pam_sm_acct_mgmt(pamh, flags, argv):
    return pamh.PAM_SUCCESS
"""


class Unmeasured(Exception):
    pass


@contextmanager
def pam_file(name: str, text: str) -> Iterator[str]:
    path = PAM_D / name
    path.write_text(text)
    try:
        yield name
    finally:
        path.unlink(missing_ok=True)


class Bench:
    def __init__(
        self,
        base: Path,
        rounds: int,
        duration: float,
        concurrencies: tuple[int, ...],
        logins_for_memory: int,
        pam_transactions: int,
    ) -> None:
        self.base = base
        self.rounds = rounds
        self.duration = duration
        self.concurrencies = concurrencies
        self.logins_for_memory = logins_for_memory
        self.pam_transactions = pam_transactions
        self.accepted = 0
        """Logins accepted by ``measure`` so far (for the audit's count)."""
        self.devlog = DevLog()
        """Entered by ``main`` before ``start``."""
        self.results: dict[str, Any] = {
            "environment": {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
        }

    # -- set-up -----------------------------------------------------------------------

    def start(self) -> None:
        base = self.base
        self.names = Names()
        self.slapd = Slapd.create(base / "ldap", names=self.names, users={"plain": PLAIN_PASSWORD})
        self.config_data = deployed_config(self.slapd.uri, self.names, base / "etc")
        self.daemon = Twostepd(base / "twostepd", dict(self.config_data))
        self.daemon.start()
        # the tuned figure's twostepd: the same, audit off (a secondary line only)
        tuned = {**self.config_data, "audit": {"syslog": False}}
        self.tuned_daemon = Twostepd(base / "twostepd-tuned", tuned)
        self.tuned_daemon.start()
        self.clients = base / "clients"
        self.share = base / "share"
        install_clients(self.clients, self.share)
        config = parse_config(self.daemon.config)
        loaded = load_secrets(config)
        self.directory = Directory(config.ldap, config.users, loaded.bind_password)
        self.engine = Engine(config, self.directory, loaded.keyring, MemorySink())
        self._users()

    def _users(self) -> None:
        """tfa1 (one passcode), tfa25 (25), and pam000.. enrolled in the past, so that each
        can log in with the codes of now and of the next step."""
        ldif = "\n".join(
            user_ldif(self.names, name, f"{name}-pw")
            for name in ["tfa1", "tfa25", *self._pam_users()]
        )
        self.slapd.ldapadd(ldif)
        past = Engine(
            self.engine.config,
            self.directory,
            self.engine._keys,
            MemorySink(),
            clock=lambda: time.time() - 3600,
        )
        self.keys: dict[str, bytes] = {}
        for name in ["tfa1", "tfa25", *self._pam_users()]:
            shown = past.enroll_begin(name, f"{name}-pw")
            key = decode_secret(shown.secret)
            past.enroll_confirm(name, totp(key, time.time() - 3600))
            self.keys[name] = key
        self.passcode1 = self.engine.add_passcode("tfa1", "Client").passcode
        self.passcodes25 = [
            self.engine.add_passcode("tfa25", f"Client {i}").passcode for i in range(25)
        ]

    def _pam_users(self) -> list[str]:
        return [f"pam{i:03d}" for i in range((self.pam_transactions + 1) // 2)]

    def stop(self) -> None:
        self.directory.close()
        self.daemon.stop()
        self.tuned_daemon.stop()
        self.slapd.stop()

    # -- measuring --------------------------------------------------------------------

    def measure(
        self,
        setup: Callable[[], Callable[[], Callable[[], bool]]],
        concurrency: int,
        expect_accept: bool = True,
    ) -> dict[str, float]:
        warm_up = closed_loop(setup(), concurrency, min(0.5, self.duration))
        samples: list[Sample] = [
            closed_loop(setup(), concurrency, self.duration) for _ in range(self.rounds)
        ]
        self.accepted += warm_up.accepted + sum(s.accepted for s in samples)
        wrong = [s for s in samples if (s.refused if expect_accept else s.accepted)]
        if wrong or not any(s.latencies for s in samples):
            raise Unmeasured(f"logins did not behave as expected: {wrong[:1]}")
        return {
            "rate": median([s.rate for s in samples]),
            "p50_ms": 1000 * median([s.percentile(50) for s in samples]),
            "p99_ms": 1000 * median([s.percentile(99) for s in samples]),
        }

    def dovecot_variants(self) -> dict[str, tuple[Passdb, str, str]]:
        """name -> (passdb, user, secret); checkpassword rows only where Dovecot has it (2.3)."""
        base = self.base
        shell = base / "shell-checkpassword"
        shell.write_text(SHELL_CHECKPASSWORD)
        empty = base / "empty-checkpassword"
        empty.write_text(EMPTY_PYTHON_CHECKPASSWORD)
        for path in (shell, empty):
            os.chmod(path, 0o755)
        ldap = {
            mode: LdapPassdb(
                self.slapd.uri,
                self.names.service_dn,
                self.names.service_password,
                self.names.people,
                mode,
            )
            for mode in (LDAP_SEARCH, LDAP_TEMPLATE)
        }
        variants = {
            # the usual configuration: search the user, then bind as the entry found
            SEARCH_BIND: (Passdb.native_ldap(ldap[LDAP_SEARCH]), "plain", PLAIN_PASSWORD),
            # the fastest: bind to a DN built from the name (auth_bind_userdn)
            TEMPLATE_BIND: (Passdb.native_ldap(ldap[LDAP_TEMPLATE]), "plain", PLAIN_PASSWORD),
            "shell checkpassword": (Passdb.checkpassword(shell), "plain", "x"),
            "empty Python checkpassword": (Passdb.checkpassword(empty), "plain", "x"),
            "twostep checkpassword": (
                passdb_block("checkpassword", self.clients, self.share),
                "tfa1",
                self.passcode1,
            ),
            "twostep Lua passdb": (
                passdb_block("lua", self.clients, self.share),
                "tfa1",
                self.passcode1,
            ),
            "twostep PAM passdb": (Passdb.pam("twostep-bench-mail"), "tfa1", self.passcode1),
        }
        version = installed_version()
        return {name: row for name, row in variants.items() if unsupported(row[0], version) is None}

    def mail_paths(self) -> None:
        loader = self.clients / PAM_LOADER
        results: dict[str, Any] = {}
        with pam_file(
            "twostep-bench-mail",
            f"auth required pam_python.so {loader} mail "
            f"socket={self.daemon.socket}\naccount required pam_python.so {loader}\n",
        ):
            for name, (block, user, secret) in self.dovecot_variants().items():
                results[name] = self._mail_row(
                    len(results), block, user, secret, self.daemon, imap=True
                )
                print(f"  measured {name}", flush=True)
            # secondary: the same Lua passdb over a twostepd with audit off
            block, user, secret = self.dovecot_variants()["twostep Lua passdb"]
            self.results["tuned"] = self._mail_row(
                len(results), block, user, secret, self.tuned_daemon, imap=False, top_only=True
            )
            print("  measured the Lua passdb with audit off (tuned)", flush=True)
        self.results["mail"] = results

    def _mail_row(
        self,
        number: int,
        block: Passdb,
        user: str,
        secret: str,
        daemon: Twostepd,
        *,
        imap: bool,
        top_only: bool = False,
    ) -> dict[str, Any]:
        """One passdb's row: each concurrency through Dovecot's auth socket (the top one
        with each component's CPU per login and, for twostep, the audit's count), then
        IMAP at concurrency 1."""
        dovecot = Dovecot(
            self.base / f"dovecot-{number}",
            block,
            {"TWOSTEP_SOCKET": str(daemon.socket)},
            auth_verbose=False,  # as the example snippets leave it (Debian's default)
        )
        dovecot.start()
        try:
            row: dict[str, Any] = {}
            top = max(self.concurrencies)
            for concurrency in [top] if top_only else self.concurrencies:
                groups = self._groups(dovecot, daemon)
                cpu_before, accepted_before = cpu_seconds(groups), self.accepted
                events_before = self._audited()
                row[f"c{concurrency}"] = self.measure(
                    lambda u=user, s=secret, d=dovecot: auth_client(
                        str(d.auth_client), u, s, "127.0.0.2"
                    ),
                    concurrency,
                )
                logins = self.accepted - accepted_before
                if concurrency == top:
                    row["cpu ms per login"] = per_login_ms(cpu_before, cpu_seconds(groups), logins)
                if block.driver != "ldap" and daemon is self.daemon:
                    row.setdefault("audit", {"accepted": 0, "events": 0})
                    row["audit"]["accepted"] += logins
                    events = self._audited(events_before, logins)
                    if events < 0 or row["audit"]["events"] < 0:  # the host's: not counted
                        row["audit"]["events"] = -1
                    else:
                        row["audit"]["events"] += events
            if imap:
                row["imap"] = self.measure(
                    lambda u=user, s=secret, d=dovecot: imap_login(d.imap_port, u, s, "127.0.0.3"),
                    1,
                )
            return row
        finally:
            dovecot.stop()

    def _groups(self, dovecot: Dovecot, daemon: Twostepd) -> dict[str, int]:
        groups = {"load generator": os.getpgrp()}
        for name, pid in (
            ("dovecot", dovecot.pid),
            ("twostepd", daemon.pid),
            ("slapd", self.slapd.pid),
            ("syslog", self.devlog.pid),
        ):
            if pid is not None:
                groups[name] = pid
        return groups

    def _audited(self, before: int | None = None, expected: int = 0) -> int:
        """Accepted-login events the syslog socket has read (since ``before``, waiting
        for ``expected`` of them up to 5 s: datagrams are read a moment later)."""
        deadline = time.time() + 5
        while True:
            counts = self.devlog.counts()
            if counts is None:
                return -1  # the host's syslog daemon: not counted
            if before is None:
                return counts[1]
            if counts[1] - before >= expected or time.time() > deadline:
                return counts[1] - before
            time.sleep(0.05)

    def passcode_scaling(self) -> None:
        socket_path = str(self.daemon.socket)
        right1 = self.measure(lambda: daemon_login(socket_path, "tfa1", self.passcode1), 1)
        right25 = self.measure(lambda: daemon_login(socket_path, "tfa25", self.passcodes25[-1]), 1)
        wrong25 = self.measure(
            lambda: daemon_login(socket_path, "tfa25", "W" * 24), 1, expect_accept=False
        )
        self.engine.unlock("tfa25")
        self.results["passcodes"] = {
            "1 passcode, right": right1,
            "25 passcodes, right": right25,
            "25 passcodes, wrong": wrong25,
        }

    def pam_interactive(self) -> None:
        binary = self.base / "pam_loop"
        subprocess.run(
            ["gcc", "-O2", "-o", str(binary), str(HERE / "pam_loop.c"), "-lpam"],
            check=True,
            capture_output=True,
        )
        module = self.base / "empty_pam.py"
        module.write_text(EMPTY_PAM_MODULE)
        loader = self.clients / PAM_LOADER
        step = time_step(time.time(), 30)
        lines = []
        for index in range(self.pam_transactions):
            user = self._pam_users()[index // 2]
            code = totp(self.keys[user], (step + index % 2) * 30)
            lines.append(f"{user}\t{user}-pw\t{code}")

        def run(service: str, text: str) -> list[float]:
            result = subprocess.run(
                [str(binary), service, "-"],
                input=text,
                text=True,
                capture_output=True,
                check=True,
                timeout=600,
            )
            rows = [line.split() for line in result.stdout.splitlines()]
            if len(rows) != self.pam_transactions or any(r[1] != "0" for r in rows):
                raise Unmeasured(f"PAM transactions failed: {result.stdout[-500:]}")
            return [int(r[3]) / 1000 for r in rows]

        with pam_file(
            "twostep-bench-empty",
            f"auth required pam_python.so {module}\naccount required pam_python.so {module}\n",
        ):
            empty = run("twostep-bench-empty", "\n".join(lines) + "\n")
        with pam_file(
            "twostep-bench-interactive",
            f"auth required pam_python.so {loader} interactive "
            f"socket={self.daemon.socket}\n"
            f"account required pam_python.so {loader}\n",
        ):
            ours = run("twostep-bench-interactive", "\n".join(lines) + "\n")
        self.results["pam"] = {
            "empty module ms": median(empty),
            "twostep ms": median(ours),
            "transactions": self.pam_transactions,
        }

    def _stats(self) -> dict[int, dict[str, Any]]:
        return serving_stats(self.daemon.ask)

    def daemon_itself(self) -> None:
        socket_path = str(self.daemon.socket)
        top = max(self.concurrencies)
        self.results["daemon"] = {
            "decisions": self.measure(
                lambda: daemon_login(socket_path, "tfa1", self.passcode1), top
            )
        }
        login = daemon_login(socket_path, "tfa1", self.passcode1)()
        before = self._stats()
        logins = 300
        for _ in range(logins):
            login()
        after = self._stats()
        counted = sum(int(r["logins"]) for r in after.values()) - sum(
            int(r["logins"]) for r in before.values()
        )
        operations: dict[str, float] = {}
        for pid, reply in after.items():
            old = before.get(pid, {"directory": {}})["directory"]
            for name, value in reply["directory"].items():
                operations[name] = operations.get(name, 0) + value - old.get(name, 0)
        self.results["daemon"]["directory operations per login"] = {
            name: value / max(counted, 1) for name, value in operations.items()
        }
        self.results["daemon"]["processes"] = len(after)
        memory = [(0, max(int(r["rss_kb"]) for r in after.values()))]
        done = 0
        for mark in sorted(
            {self.logins_for_memory // 10, self.logins_for_memory // 2, self.logins_for_memory}
        ):
            while done < mark:
                login()
                done += 1
            memory.append((done, max(int(r["rss_kb"]) for r in self._stats().values())))
        self.results["daemon"]["rss_kb after logins"] = memory

    def revocation(self) -> None:
        """A revoked passcode: how long until a login with it is refused."""
        login = daemon_login(str(self.daemon.socket), "tfa1", self.passcode1)()
        if not login():
            raise Unmeasured("the passcode was refused before its revocation")
        self.engine.revoke_passcode("tfa1", "Client")
        started = time.monotonic()
        while login():
            if time.monotonic() - started > 10:
                raise Unmeasured("a revoked passcode still works after 10 s")
        self.results["revocation"] = {"refused after s": time.monotonic() - started}


def _top(results: dict[str, Any]) -> int:
    return max(results["concurrencies"])


def headline(results: dict[str, Any]) -> dict[str, float]:
    """The Lua passdb's throughput at the top concurrency over each native reference,
    as deployed (audit on), and the same with audit off (tuned, secondary)."""
    top = f"c{_top(results)}"
    mail = results["mail"]
    lua = mail["twostep Lua passdb"][top]["rate"]
    ratios = {
        "search+bind": lua / mail[SEARCH_BIND][top]["rate"],
        "tuned search+bind": results["tuned"][top]["rate"] / mail[SEARCH_BIND][top]["rate"],
    }
    if TEMPLATE_BIND in mail:
        ratios["auth_bind_userdn"] = lua / mail[TEMPLATE_BIND][top]["rate"]
    return ratios


def goals(results: dict[str, Any]) -> list[tuple[str, str, float, bool]]:
    """(goal, how measured, ratio or figure, met) for the table."""
    rows = []
    mail = results["mail"]
    top = _top(results)
    lua = mail["twostep Lua passdb"]
    ratio = headline(results)["search+bind"]
    rows.append(
        (f"Lua >= 0.5 x native search+bind at c{top}, audit on", "ratio", ratio, ratio >= 0.5)
    )
    rows.append(("... stretch: >= 1.0 x", "ratio", ratio, ratio >= 1.0))
    rows.append(("Lua p50 <= 1 ms at c1", "ms", lua["c1"]["p50_ms"], lua["c1"]["p50_ms"] <= 1))
    audit = lua.get("audit", {})
    if audit.get("events", -1) >= 0:
        lost = audit["accepted"] - audit["events"]
        rows.append(("no accepted login without its audit event", "lost", lost, lost <= 0))
    revoked = results["revocation"]["refused after s"]
    rows.append(("revoked passcode refused within 1 s", "s", revoked, revoked <= 1))
    if "twostep checkpassword" in mail:  # Dovecot 2.3 only
        cp = mail["twostep checkpassword"]
        empty = mail["empty Python checkpassword"]
        shell = mail["shell checkpassword"]
        ratio = cp["c1"]["p50_ms"] / empty["c1"]["p50_ms"]
        rows.append(("checkpassword p50 <= 1.5 x empty Python", "ratio", ratio, ratio <= 1.5))
        ratio = cp[f"c{top}"]["rate"] / shell[f"c{top}"]["rate"]
        rows.append(
            (f"checkpassword >= 0.3 x shell throughput at c{top}", "ratio", ratio, ratio >= 0.3)
        )
    pam = results["pam"]
    ratio = pam["twostep ms"] / pam["empty module ms"]
    rows.append(("PAM per transaction <= 1.3 x empty module", "ratio", ratio, ratio <= 1.3))
    passcodes = results["passcodes"]
    ratio = passcodes["25 passcodes, right"]["p50_ms"] / passcodes["1 passcode, right"]["p50_ms"]
    rows.append(("25 passcodes <= 1.1 x one (p50)", "ratio", ratio, ratio <= 1.1))
    ratio = passcodes["25 passcodes, wrong"]["p50_ms"] / passcodes["25 passcodes, right"]["p50_ms"]
    rows.append(("wrong passcode <= right one (p50)", "ratio", ratio, ratio <= 1.05))
    memory = results["daemon"]["rss_kb after logins"]
    last = memory[-1][1] / 1024
    rows.append((f"twostepd < 80 MB after {memory[-1][0]} logins", "MB", last, last < 80))
    growth = (memory[-1][1] - memory[-2][1]) / 1024
    rows.append(("... and not growing (last interval)", "MB", growth, growth < 2))
    scale = results.get("scale")
    if scale:
        large, small = scale["large"]["logins"], scale["small"]["logins"]
        n = f"{scale['sizes']['large']:,} accounts"
        ratio = large["c1"]["p50_ms"] / small["c1"]["p50_ms"]
        rows.append(
            (
                f"{n}: Lua p50 <= 1.1 x {scale['sizes']['small']:,} (c1)",
                "ratio",
                ratio,
                ratio <= 1.1,
            )
        )
        ratio = small[f"c{top}"]["rate"] / large[f"c{top}"]["rate"]
        rows.append((f"{n}: Lua throughput within 1.1 x (c{top})", "ratio", ratio, ratio <= 1.1))
        megabytes = scale["large"]["memory"]["rss_kb after"] / 1024
        rows.append((f"twostepd < 80 MB after {n} logged in once", "MB", megabytes, megabytes < 80))
    return rows


_COMPONENTS = ("dovecot", "twostepd", "slapd", "syslog", "load generator")


def table(results: dict[str, Any]) -> str:
    lines = [
        "| passdb | c1 logins/s | c1 p50 ms | c1 p99 ms | "
        + " | ".join(
            f"c{c} logins/s | c{c} p50 ms | c{c} p99 ms" for c in results["concurrencies"][1:]
        )
        + " | IMAP logins/s |",
        "|---" * (5 + 3 * (len(results["concurrencies"]) - 1)) + "|",
    ]
    for name, row in results["mail"].items():
        cells = [name]
        for c in results["concurrencies"]:
            cells += [
                f"{row[f'c{c}']['rate']:.0f}",
                f"{row[f'c{c}']['p50_ms']:.2f}",
                f"{row[f'c{c}']['p99_ms']:.2f}",
            ]
        cells.append(f"{row['imap']['rate']:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    ratios = headline(results)
    top = f"c{_top(results)}"
    lines += [
        "",
        f"headline, as deployed (audit to syslog, info logging, one serving process per "
        f"CPU): Lua passdb at {top} = {ratios['search+bind']:.2f} x native search+bind"
        + (
            f", {ratios['auth_bind_userdn']:.2f} x native auth_bind_userdn"
            if "auth_bind_userdn" in ratios
            else ""
        ),
        f"secondary, tuned (audit off): {ratios['tuned search+bind']:.2f} x native "
        f"search+bind ({results['tuned'][top]['rate']:.0f} logins/s)",
        "",
        f"| CPU ms per login at {top} | " + " | ".join(_COMPONENTS) + " |",
        "|---" * (1 + len(_COMPONENTS)) + "|",
    ]
    for name, row in results["mail"].items():
        cpu = row.get("cpu ms per login", {})
        lines.append(
            f"| {name} | " + " | ".join(f"{cpu.get(c, 0):.3f}" for c in _COMPONENTS) + " |"
        )
    audit = results["mail"]["twostep Lua passdb"].get("audit", {})
    lines.append(
        "audit events read by the syslog socket for the Lua passdb's accepted logins: "
        + (
            f"{audit['events']} of {audit['accepted']}"
            if audit.get("events", -1) >= 0
            else "not counted (the host's own syslog daemon)"
        )
    )
    lines += ["", "| twostepd directly (c1) | logins/s | p50 ms | p99 ms |", "|---|---|---|---|"]
    for name, row in results["passcodes"].items():
        lines.append(f"| {name} | {row['rate']:.0f} | {row['p50_ms']:.3f} | {row['p99_ms']:.3f} |")
    decisions = results["daemon"]["decisions"]
    lines.append(
        f"| decisions at c{max(results['concurrencies'])} | {decisions['rate']:.0f} | "
        f"{decisions['p50_ms']:.3f} | {decisions['p99_ms']:.3f} |"
    )
    ops = results["daemon"]["directory operations per login"]
    lines += [
        "",
        "directory operations per passcode login: "
        + ", ".join(f"{k} {v:.2f}" for k, v in sorted(ops.items()) if v),
        f"twostepd resident memory, largest of its {results['daemon']['processes']} "
        "processes (logins, MB): "
        + ", ".join(f"{n}: {kb / 1024:.1f}" for n, kb in results["daemon"]["rss_kb after logins"]),
        f"PAM per transaction (median of {results['pam']['transactions']}): empty pam_python "
        f"module {results['pam']['empty module ms']:.1f} ms, twostep (password + code) "
        f"{results['pam']['twostep ms']:.1f} ms",
        f"a revoked passcode was refused after {results['revocation']['refused after s']:.4f} s "
        "(the next login: nothing is cached)",
        "",
        "| goal | measured | value | met |",
        "|---|---|---|---|",
    ]
    if "scale" in results:
        lines[-3:-3] = _scale_lines(results)
    for goal, unit, value, met in goals(results):
        lines.append(f"| {goal} | {unit} | {value:.2f} | {'yes' if met else 'NO'} |")
    return "\n".join(lines)


def _scale_lines(results: dict[str, Any]) -> list[str]:
    scale = results["scale"]
    lines = [
        "",
        "| directory (accounts) | slapadd s | "
        + " | ".join(
            f"c{c} logins/s | c{c} p50 ms"
            for c in results["concurrencies"][:: len(results["concurrencies"]) - 1]
        )
        + " |",
        "|---|---|---|---|---|---|",
    ]
    for label in ("small", "large"):
        row = scale[label]
        cells = [f"{scale['sizes'][label]:,}", f"{row['slapadd s']:.1f}"]
        for c in results["concurrencies"][:: len(results["concurrencies"]) - 1]:
            cells += [
                f"{row['logins'][f'c{c}']['rate']:.0f}",
                f"{row['logins'][f'c{c}']['p50_ms']:.2f}",
            ]
        lines.append("| " + " | ".join(cells) + " |")
    large = scale["large"]
    memory, status = large["memory"], large["status"]
    reseal, imported = large["reseal"], large["import"]
    lines += [
        f"every one of {memory['users']:,} accounts logged in once through twostepd "
        f"({memory['logins/s']:.0f}/s): largest serving process "
        f"{memory['rss_kb before'] / 1024:.1f} -> {memory['rss_kb after'] / 1024:.1f} MB; "
        f"all {memory['processes']} {memory['rss_kb after, all processes'] / 1024:.1f} MB",
        "status of an account with 25 passcodes and 20 devices (p50): twostepd "
        f"{status['twostepd p50 ms']:.1f} ms, the command {status['command p50 ms']:.0f} ms",
        f"keys reseal: {reseal['accounts']:,} accounts at {reseal['accounts/s']:.0f}/s "
        f"({reseal['progress updates']} progress updates); import oath --apply: "
        f"{imported['accounts']:,} accounts at {imported['accounts/s']:.0f}/s; the directory's "
        "own ldapmodify (one connection as rootdn, a ceiling for both): "
        f"{large['ldapmodify/s']:.0f} entries/s, so reseal "
        f"{reseal['accounts/s'] / large['ldapmodify/s']:.2f} x and import "
        f"{imported['accounts/s'] / large['ldapmodify/s']:.2f} x of it",
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="twostep benchmarks")
    parser.add_argument("--smoke", action="store_true", help="a few iterations, to keep it working")
    parser.add_argument("--output", type=Path, default=HERE / "results.json")
    parser.add_argument("--no-scale", action="store_true", help="leave out the large directory")
    arguments = parser.parse_args(argv)
    if os.getuid() != 0:
        print("bench: run as root (Dovecot, PAM service files)", file=sys.stderr)
        return 2
    if arguments.smoke:
        bench_args = {
            "rounds": 1,
            "duration": 0.3,
            "concurrencies": (1, 4),
            "logins_for_memory": 200,
            "pam_transactions": 4,
        }
        sizes = Sizes(300, 1500, 50, rounds=1, duration=0.3, concurrencies=(1, 4))
    else:
        bench_args = {
            "rounds": 3,
            "duration": 3.0,
            "concurrencies": (1, 4, 16),
            "logins_for_memory": 10_000,
            "pam_transactions": 60,
        }
        sizes = Sizes(1000, 100_000, 10_000, rounds=3, duration=3.0, concurrencies=(1, 16))
    base = Path(tempfile.mkdtemp(prefix="twostep-bench-"))
    os.chmod(base, 0o755)
    bench = Bench(base, **bench_args)  # type: ignore[arg-type]
    bench.results["concurrencies"] = list(bench_args["concurrencies"])  # type: ignore[call-overload]
    started = time.time()
    try:
        bench.devlog = DevLog().__enter__()
    except OSError as exc:
        print(f"bench: no syslog socket for the audit: {exc}", file=sys.stderr)
        return 1
    try:
        bench.start()
        print("measuring the mail paths...", flush=True)
        bench.mail_paths()
        print("measuring passcode scaling, PAM and the daemon...", flush=True)
        bench.passcode_scaling()
        bench.pam_interactive()
        bench.daemon_itself()
        bench.revocation()
        if not arguments.no_scale:
            print(f"measuring {sizes.large:,} accounts against {sizes.small:,}...", flush=True)
            bench.results["scale"] = measure_scale(
                base / "scale", bench.clients, bench.share, sizes
            )
    except (Unmeasured, ScaleError, subprocess.CalledProcessError, TimeoutError, OSError) as exc:
        print(f"bench: could not measure: {exc}", file=sys.stderr)
        return 1
    finally:
        try:
            bench.stop()
        finally:
            bench.devlog.__exit__(None, None, None)
            shutil.rmtree(base, ignore_errors=True)
    bench.results["seconds"] = round(time.time() - started, 1)
    arguments.output.write_text(json.dumps(bench.results, indent=2))
    print(table(bench.results))
    print(f"\nraw figures: {arguments.output} ({bench.results['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
