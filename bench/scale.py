"""The scale part of ``make bench``: a large directory against a small one.

Two directories are built by the same generator (``population``), a small one and a
large one (1,000 and 100,000 accounts; a fifth with two-step on and five passcodes
each), each served by its own slapd, twostepd (configured as deployed: audit on) and a
Dovecot with the Lua passdb. On each, in the same run:

- passcode logins through Dovecot's auth socket at concurrency 1 and the top one, over
  the same 200 users in both directories, so that only the directory's size differs,
  with both up at once and their rounds alternating;
- on the large one only: every account logs in once through twostepd (resident memory
  before and after), ``twostep status`` of an account with 25 passcodes and 20 trusted
  devices, ``twostep keys reseal`` after a key rotation, and ``twostep import oath``
  of accounts without two-step, both with their progress bar, as an administrator
  would run them.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deployed import deployed_config
from drivers import Sample, auth_client_rotating, closed_loop, each_once, median, serving_stats
from population import BUSY, Population, load

from pam_twostep import wire
from pam_twostep.config import load_secrets, parse_config
from pam_twostep.keyfiles import write_key_file
from pam_twostep.lab.dovecot import Dovecot, passdb_block
from pam_twostep.lab.slapd import Directory as Names
from pam_twostep.lab.slapd import Slapd
from pam_twostep.lab.twostepd import Twostepd

__all__ = ["ScaleError", "Sizes", "measure_scale"]

HOT_USERS = 200
"""Users the login rounds go over, in both directories."""


class ScaleError(Exception):
    """Something in the scale part could not be measured."""


@dataclass(frozen=True)
class Sizes:
    small: int
    large: int
    imported: int
    """Accounts without two-step given a key by ``twostep import oath``."""
    rounds: int
    duration: float
    concurrencies: tuple[int, ...]


@dataclass
class _Site:
    slapd: Slapd
    daemon: Twostepd
    dovecot: Dovecot
    people: Population

    def parts(self) -> list[Slapd | Twostepd | Dovecot]:
        return [self.dovecot, self.daemon, self.slapd]

    def stop(self) -> None:
        _stop_all(self.parts())


def _stop_all(parts: list[Slapd | Twostepd | Dovecot]) -> None:
    """Each part stopped even when stopping another failed (then that error is raised)."""
    errors = []
    for part in parts:
        try:
            part.stop()
        except Exception as exc:  # noqa: BLE001 - the next part must still be stopped
            errors.append(exc)
    if errors:
        raise errors[0]


def _site(base: Path, count: int, clients: Path, share: Path) -> _Site:
    names = Names()
    started: list[Slapd | Twostepd | Dovecot] = [Slapd.create(base / "ldap", names=names)]
    slapd = started[0]
    assert isinstance(slapd, Slapd)
    try:
        config = deployed_config(slapd.uri, names, base / "etc")
        keys = load_secrets(parse_config(config)).keyring
        people = load(slapd, keys, count)
        daemon = Twostepd(base / "twostepd", config)
        started.insert(0, daemon)
        daemon.start()
        dovecot = Dovecot(
            base / "dovecot",
            passdb_block("lua", clients, share),
            {"TWOSTEP_SOCKET": str(daemon.socket)},
            auth_verbose=False,
        )
        started.insert(0, dovecot)
        dovecot.start()
    except BaseException:
        _stop_all(started)
        raise
    return _Site(slapd, daemon, dovecot, people)


def _logins(sites: dict[str, _Site], sizes: Sizes) -> dict[str, dict[str, Any]]:
    """Each concurrency's rounds, alternating between the directories round by round
    (both are up at once), so that a slower minute of this shared machine falls on both
    alike rather than on whichever was measured then."""
    rows: dict[str, dict[str, Any]] = {label: {} for label in sites}
    for concurrency in sizes.concurrencies:
        setups = {label: _rotating(site) for label, site in sites.items()}
        samples: dict[str, list[Sample]] = {label: [] for label in sites}
        for setup in setups.values():
            closed_loop(setup, concurrency, min(1.0, sizes.duration))  # warm-up: usage notes
        for _ in range(sizes.rounds):
            for label, setup in setups.items():
                samples[label].append(closed_loop(setup, concurrency, sizes.duration))
        for label, taken in samples.items():
            if any(s.refused for s in taken):
                raise ScaleError(f"passcode logins were refused at c{concurrency} ({label})")
            rows[label][f"c{concurrency}"] = {
                "rate": median([s.rate for s in taken]),
                "p50_ms": 1000 * median([s.percentile(50) for s in taken]),
                "p99_ms": 1000 * median([s.percentile(99) for s in taken]),
            }
    return rows


def _rotating(site: _Site) -> Callable[[], Callable[[], bool]]:
    """The same HOT_USERS users' passcodes in either directory."""
    pairs = [(name, site.people.passcodes[name][0]) for name in site.people.enabled[:HOT_USERS]]
    return auth_client_rotating(str(site.dovecot.auth_client), pairs, "127.0.0.4")


def _memory(site: _Site, top: int) -> dict[str, Any]:
    """Every account logs in once: with a passcode where two-step is on, else with its
    password."""
    people = site.people
    pairs = [
        (name, people.passcodes.get(name, [people.passwords[name]])[0]) for name in people.passwords
    ]
    before = serving_stats(site.daemon.ask)
    accepted, seconds = each_once(str(site.daemon.socket), pairs, top)
    after = serving_stats(site.daemon.ask)
    if accepted != len(pairs):
        raise ScaleError(f"of {len(pairs)} distinct users, {accepted} were accepted")
    return {
        "users": len(pairs),
        "logins/s": len(pairs) / seconds,
        "rss_kb before": max(int(r["rss_kb"]) for r in before.values()),
        "rss_kb after": max(int(r["rss_kb"]) for r in after.values()),
        "rss_kb after, all processes": sum(int(r["rss_kb"]) for r in after.values()),
        "processes": len(after),
    }


def _twostep(
    site: _Site, *args: str, stdin: str | None = None
) -> tuple[subprocess.CompletedProcess[str], float]:
    config = site.daemon.config_path
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "pam_twostep.cli", *args, "--json", "--config", str(config)],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=3600,
        check=False,
    )
    return result, time.monotonic() - started


def _status(site: _Site) -> dict[str, Any]:
    reply = site.daemon.ask({"op": "status", "user": BUSY})
    status = reply.get("status")
    if (
        not isinstance(status, dict)
        or len(status["passcodes"]) != 25
        or len(status["devices"]) != 20
    ):
        raise ScaleError(f"status of {BUSY}: {str(reply)[:300]}")
    direct = []
    for _ in range(30):
        started = time.perf_counter()
        site.daemon.ask({"op": "status", "user": BUSY})
        direct.append(time.perf_counter() - started)
    command = []
    for _ in range(5):
        result, seconds = _twostep(site, "status", BUSY)
        if result.returncode != 0:
            raise ScaleError(f"twostep status: {result.stderr[-300:]}")
        command.append(seconds)
    return {
        "reply bytes": len(wire.encode(reply, wire.MAX_REPLY)),
        "twostepd p50 ms": 1000 * statistics.median(direct),
        "command p50 ms": 1000 * statistics.median(command),
    }


def _modify_rate(site: _Site, count: int) -> float:
    """The directory's own write rate, a ceiling for re-sealing and importing (each is
    at least one modify per account): one ldapmodify as the rootdn (no ACL to check),
    one attribute replaced on each of ``count`` entries."""
    names = site.people.plain[:count]
    ldif = "".join(
        f"dn: {site.slapd.names.user_dn(name)}\nchangetype: modify\nreplace: description\n"
        f"description: bench {n}\n\n"
        for n, name in enumerate(names)
    )
    secret = site.slapd.directory / "admin.secret"
    if not secret.exists():
        secret.touch(mode=0o600)
        secret.write_text(site.slapd.names.admin_password)
    slapd = site.slapd
    started = time.monotonic()
    subprocess.run(
        ["ldapmodify", "-x", "-H", slapd.uri, "-D", slapd.names.admin_dn, "-y", str(secret)],
        input=ldif.encode(),
        check=True,
        capture_output=True,
    )
    return len(names) / (time.monotonic() - started)


def _reseal(site: _Site) -> dict[str, Any]:
    """Rotate to a new key, as docs/operations tell an administrator, and re-seal."""
    keys = Path(site.daemon.config["keys"]["directory"])
    write_key_file(keys / "k2.key", os.urandom(32))
    site.daemon.config["keys"]["current"] = "k2"
    site.daemon.write_config()
    site.daemon.reload_and_wait(30)
    result, seconds = _twostep(site, "keys", "reseal", "--progress")
    if result.returncode != 0:
        raise ScaleError(f"twostep keys reseal: {result.stdout[-300:]} {result.stderr[-300:]}")
    report = _parse_json(result.stdout)
    accounts = len(site.people.passcodes)
    if report["resealed"] != accounts or report["failed"]:
        raise ScaleError(f"re-sealed {report['resealed']} of {accounts}: {report['failed'][:3]}")
    updates = result.stderr.count("] ")  # text mode reads each \r as a newline
    # it counts every entry with two-step state: also those of users who only ever
    # logged in with their password (each has its password's verifier, nothing sealed)
    shown = re.findall(r"\] (\d+)/(\d+)", result.stderr)
    if not shown or shown[-1][0] != shown[-1][1] or int(shown[-1][1]) < accounts:
        raise ScaleError(f"no progress shown: {result.stderr[-200:]!r}")
    return {"accounts": accounts, "accounts/s": accounts / seconds, "progress updates": updates}


def _import(site: _Site, count: int) -> dict[str, Any]:
    """pam_oath keys for ``count`` accounts without two-step, applied."""
    names = site.people.plain[:count]
    path = site.slapd.directory / "users.oath"
    path.touch(mode=0o600)
    path.write_text("".join(f"HOTP/T30 {name} - {os.urandom(20).hex()}\n" for name in names))
    result, seconds = _twostep(site, "import", "oath", str(path), "--apply", "--progress")
    path.unlink()
    if result.returncode != 0:
        raise ScaleError(f"twostep import: {result.stdout[-300:]} {result.stderr[-300:]}")
    counts = _parse_json(result.stdout)["counts"]
    if sum(counts.values()) != len(names) or "skipped" in counts:
        raise ScaleError(f"import counts: {counts}")
    if f"{len(names)}/{len(names)}" not in result.stderr:
        raise ScaleError(f"no progress shown: {result.stderr[-200:]!r}")
    return {"accounts": len(names), "accounts/s": len(names) / seconds, "counts": counts}


def _parse_json(text: str) -> dict[str, Any]:
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ScaleError(f"not a JSON object: {text[:200]}")
    return data


def measure_scale(base: Path, clients: Path, share: Path, sizes: Sizes) -> dict[str, Any]:
    results: dict[str, Any] = {"sizes": {"small": sizes.small, "large": sizes.large}}
    sites: dict[str, _Site] = {}
    try:
        for label, count in (("small", sizes.small), ("large", sizes.large)):
            sites[label] = _site(base / label, count, clients, share)
        for label, row in _logins(sites, sizes).items():
            results[label] = {"slapadd s": sites[label].people.seconds, "logins": row}
        print(f"  measured logins over {sizes.small:,} and {sizes.large:,} accounts", flush=True)
        sites.pop("small").stop()
        site, large = sites["large"], results["large"]
        large["memory"] = _memory(site, max(sizes.concurrencies))
        print("  measured memory over every account", flush=True)
        large["status"] = _status(site)
        large["ldapmodify/s"] = _modify_rate(site, sizes.imported)
        large["reseal"] = _reseal(site)
        large["import"] = _import(site, sizes.imported)
        print("  measured status, reseal and import", flush=True)
    finally:
        _stop_all([part for site in sites.values() for part in site.parts()])
    return results
