"""A fresh Debian root of this machine's release, as a new server has it before any of ours.

The package tests install the .deb into one and use it as a sysadmin would. The root is
built once with debootstrap (variant minbase) from the archive this machine's apt uses,
kept as a tarball in ``/var/cache/twostep`` and unpacked anew for every use, so no test
sees what an earlier one left. Downloaded packages are kept in a cache of their own,
bound into each root. There is no systemd in it: daemons are started by hand.

While open, the root has ``/proc`` and ``/dev``; closing it kills whatever still runs
inside and undoes its mounts. ``private_network()`` gives it a network namespace of its
own with only a loopback interface: daemons started there with ``private=True`` listen
on their usual ports without meeting this machine's, and nothing else can reach them.
Inside the chroot of the other release (tests/release) the same code builds a root of
that release.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

__all__ = ["FreshRoot", "codename"]

CACHE = Path(os.environ.get("TWOSTEP_FRESHROOT_CACHE", "/var/cache/twostep"))
_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def codename() -> str:
    text = Path("/etc/os-release").read_text()
    found = re.search(r"^VERSION_CODENAME=\"?(\w+)", text, re.MULTILINE)
    assert found, "no VERSION_CODENAME in /etc/os-release"
    return found.group(1)


def _archive(name: str) -> str | None:
    """The first URI of the Debian archive ``name`` in this machine's apt sources."""
    texts = [p.read_text() for p in Path("/etc/apt").glob("sources.list.d/*.sources")]
    uris = [u for t in texts for line in re.findall(r"^URIs:(.*)$", t, re.M) for u in line.split()]
    lists = [Path("/etc/apt/sources.list"), *Path("/etc/apt").glob("sources.list.d/*.list")]
    for path in lists:
        if path.exists():
            uris += re.findall(r"^deb (?:\[[^]]*\] )?(\S+) ", path.read_text(), re.M)
    return next((u for u in uris if re.search(rf"/{name}/?$", u)), None)


def _base(release: str) -> Path:
    """The cached minbase tarball of ``release``, built the first time."""
    tarball = CACHE / f"freshroot-{release}.tar"
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f"freshroot-{release}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if tarball.exists():
            return tarball
        mirror = _archive("debian")
        assert mirror, "no Debian archive in this machine's apt sources"
        build = CACHE / f"freshroot-{release}.build"
        shutil.rmtree(build, ignore_errors=True)
        subprocess.run(
            ["debootstrap", "--variant=minbase", release, str(build), mirror],
            check=True,
            capture_output=True,
            env={"PATH": _PATH, "LANG": "C.UTF-8"},
        )
        security = _archive("debian-security")
        lines = [f"deb {mirror} {release} main", f"deb {mirror} {release}-updates main"]
        if security:
            lines.append(f"deb {security} {release}-security main")
        (build / "etc/apt/sources.list").write_text("\n".join(lines) + "\n")
        # as in tests/release/other-release: package scripts start no service
        policy = build / "usr/sbin/policy-rc.d"
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
        partial = tarball.with_suffix(".partial")
        subprocess.run(
            ["tar", "-C", str(build), "--numeric-owner", "-cf", str(partial), "."], check=True
        )
        partial.rename(tarball)
        shutil.rmtree(build, ignore_errors=True)
        return tarball


class FreshRoot:
    def __init__(self, path: Path, release: str) -> None:
        self.path = path
        self.release = release
        self._mounts: list[Path] = []
        self._network: subprocess.Popen[bytes] | None = None

    @classmethod
    @contextlib.contextmanager
    def opened(cls, path: Path) -> Iterator[FreshRoot]:
        release = codename()
        tarball = _base(release)
        path.mkdir(parents=True)
        subprocess.run(
            ["tar", "-C", str(path), "--numeric-owner", "-xpf", str(tarball)], check=True
        )
        root = cls(path, release)
        try:
            root._prepare()
            yield root
        finally:
            root.close()

    def _prepare(self) -> None:
        for name in ("resolv.conf", "hosts"):
            with contextlib.suppress(OSError):
                shutil.copyfile(f"/etc/{name}", self.file(f"/etc/{name}"))
        # this machine's way out (a proxy's own CA, as tests/release carries it in): pip
        # in the root trusts what pip here does
        bundle = Path("/etc/ssl/certs/ca-certificates.crt")
        if bundle.exists():
            self.file("/etc/ssl").mkdir(exist_ok=True)
            shutil.copyfile(bundle, self.file("/etc/ssl/host-ca-bundle.pem"))
            self.file("/etc/pip.conf").write_text("[global]\ncert = /etc/ssl/host-ca-bundle.pem\n")
        self._mount("/proc", "-t", "proc", "proc")
        self._mount("/dev", "--bind", "/dev")
        self._mount("/dev/pts", "--bind", "/dev/pts")
        archives = CACHE / f"freshroot-{self.release}-archives"
        (archives / "partial").mkdir(parents=True, exist_ok=True)
        self._mount("/var/cache/apt/archives", "--bind", str(archives))

    def _mount(self, target: str, *arguments: str) -> None:
        where = self.file(target)
        where.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", *arguments, str(where)], check=True)
        self._mounts.append(where)

    def file(self, path: str) -> Path:
        """A path inside the root, as seen from outside."""
        return self.path / path.lstrip("/")

    def private_network(self) -> None:
        """A network namespace with loopback only, held by a process outside the root."""
        self._network = subprocess.Popen(
            ["unshare", "--net", "--", "sh", "-c", "ip link set lo up && exec sleep infinity"],
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while self.enter_network(["ip", "-o", "link", "show", "up", "lo"]).returncode:
            assert time.monotonic() < deadline, "the private network's loopback is not up"
            time.sleep(0.05)

    def network_argv(self) -> list[str]:
        """A prefix that runs a program of this machine in the private network."""
        assert self._network is not None, "private_network() first"
        return ["nsenter", f"--net=/proc/{self._network.pid}/ns/net", "--"]

    def enter_network(self, argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.network_argv(), *argv], capture_output=True, text=True, check=False
        )

    def _argv(self, argv: Sequence[str], private: bool = False) -> list[str]:
        env = ["HOME=/root", "LANG=C.UTF-8", f"PATH={_PATH}", "DEBIAN_FRONTEND=noninteractive"]
        prefix = self.network_argv() if private else []
        return [*prefix, "chroot", str(self.path), "/usr/bin/env", "-i", *env, *argv]

    def run(
        self, script: str, *, check: bool = True, timeout: float = 900, private: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """``script`` by bash inside the root; its output, and failure when ``check``.
        ``private``: in the private network (no Internet there)."""
        done = subprocess.run(
            self._argv(["bash", "-ec", script], private),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"in the fresh root, exit {done.returncode}: {script}\n"
                f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            )
        return done

    def spawn(self, argv: Sequence[str], log: Path) -> subprocess.Popen[bytes]:
        """A daemon inside the root in a session of its own, its output in ``log``."""
        with open(log, "ab") as output:
            return subprocess.Popen(
                self._argv(argv),
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def snapshot(self, volatile: re.Pattern[str]) -> dict[str, str]:
        """Every path not matching ``volatile``; files under /etc with digest, mode, owner."""
        found: dict[str, str] = {}
        for top, directories, files in os.walk(self.path):
            relative_top = os.path.relpath(top, self.path)
            relative_top = "" if relative_top == "." else relative_top + "/"
            directories[:] = [d for d in directories if not volatile.match(relative_top + d)]
            for name in directories + files:
                relative = relative_top + name
                if volatile.match(relative):
                    continue
                path = Path(top) / name
                stamp = ""
                if relative.startswith("etc/") and path.is_file() and not path.is_symlink():
                    info = path.stat()
                    digest = hashlib.sha256(path.read_bytes()).hexdigest()
                    stamp = f"{digest} {info.st_mode:o} {info.st_uid}:{info.st_gid}"
                found[relative] = stamp
        return found

    def _inside(self) -> list[int]:
        pids = []
        for proc in Path("/proc").glob("[0-9]*"):
            with contextlib.suppress(OSError):
                if os.readlink(proc / "root") == str(self.path):
                    pids.append(int(proc.name))
        return pids

    def stop_all(self) -> None:
        """Every process running inside the root, killed."""
        for _ in range(50):
            pids = self._inside()
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)

    def close(self) -> None:
        self.stop_all()
        if self._network is not None:
            self._network.kill()
            self._network.wait()
            self._network = None
        for where in reversed(self._mounts):
            subprocess.run(["umount", "-l", str(where)], check=False)
        self._mounts.clear()
        if str(self.path) not in Path("/proc/self/mounts").read_text():
            shutil.rmtree(self.path, ignore_errors=True)
