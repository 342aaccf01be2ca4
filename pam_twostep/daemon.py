"""twostepd: the resident daemon, the only holder of LDAP connections and keys.

It listens on a UNIX socket and answers one JSON request per line (see ``wire``). The
event loop only moves bytes: each request runs on a worker thread, so one slow LDAP
operation stalls nobody else, and sockets are cheap enough to keep thousands of idle
clients (Dovecot's Lua passdb keeps one per auth worker).

Protection of the loop itself: rights are checked when a connection is accepted, from
the kernel's peer credentials alone, and a peer with none is answered ``forbidden`` and
closed at once, without reading a byte or waiting for anything: it never holds a
descriptor or a place. Of the listed peers, one uid may hold ``max_connections_per_uid``
connections and all together ``max_connections``; past either, ``busy`` and closed at
once. (Before, any local user could fill every place with idle connections, each held
until ``request_timeout``, and every login was answered ``busy``.) A request must arrive
whole within ``request_timeout`` once it has begun (slow senders are cut off), no message
may exceed ``wire.MAX_MESSAGE`` bytes, and at most four requests per worker may wait for
a worker; beyond that the answer is ``busy`` at once.

Signals: SIGHUP re-reads the configuration and keys (a broken new configuration is
logged and the old one kept); SIGTERM and SIGINT stop accepting, let requests in flight
finish (up to 30 s) and exit 0.

Processes: Python runs one thread at a time per process, and a login costs about half a
millisecond of CPU (most of it ldap3's BER encoding), so one process uses one core.
With ``daemon.processes`` above one (0: one per CPU), a supervisor binds the socket
and forks that many serving processes, which accept on it side by side; it forwards
SIGHUP and SIGTERM to them and replaces one that dies.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import functools
import json
import logging
import os
import resource
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from . import wire
from .access import Peer, Right, Rules, peer_of, resolve, rights_of, user_name
from .audit import build_sink
from .background import Background
from .config import Config, DaemonConfig, config_path, load_config, load_secrets
from .continuation import Continuations
from .core.errors import ConfigError, TemporaryFailure
from .directory import Directory, ProviderChoice
from .engine import Engine
from .handlers import error, handle
from .mailsessions import mail_sessions
from .service_access import DAEMON_USER, daemon_problems
from .socketfile import group_id, hand_over
from .stalenotice import stale_notices
from .supervisor import Supervisor

__all__ = ["Daemon", "main"]

log = logging.getLogger("twostepd")

_DRAIN_SECONDS = 30.0
_ACCEPT_BATCH = 64
"""Connections taken per wake-up of the listener: a flood being refused cannot keep the
loop from the connections it already serves."""
_ACCEPT_PAUSE = 0.1
"""Seconds without accepting after running out of descriptors (the listener stays
readable, so the loop would otherwise spin)."""
_REFUSAL_LOG_SECONDS = 10.0
"""One log line per refused uid and reason this often, with a count: a flood of refused
connections must not become a flood of log lines."""
_REFUSAL_KEYS = 64
"""Refused uids logged one by one; past that, together (a user with subordinate uids,
/etc/subuid, can connect from thousands)."""
_DESCRIPTOR_MARGIN = 256
"""Descriptors beyond max_connections: the directory's connections, log files, and the
connections being turned away at any moment."""


@dataclass
class _Runtime:
    config: Config
    engine: Engine
    directory: Directory
    rules: Rules


def _build(config: Config, choice: ProviderChoice) -> _Runtime:
    secrets = load_secrets(config)
    rules = resolve(config.daemon)
    directory = Directory(config.ldap, config.users, secrets.bind_password, choice=choice)
    try:
        sink = build_sink(config.audit)
        engine = Engine(
            config,
            directory,
            secrets.keyring,
            sink,
            sessions=mail_sessions(config, secrets, sink),
            notices=stale_notices(config, sink),
            later=Background("bookkeeping"),
        )
    except BaseException:
        directory.close()  # a reload refused: this one holds nothing in the shared record
        raise
    return _Runtime(config, engine, directory, rules)


def _announce(rules: Rules) -> None:
    for name in rules.unknown:
        log.warning("%s: no such user or group here; it grants nothing", name)
    log.info("rights by id: %s", rules.describe())


def _socket_gid(daemon: DaemonConfig) -> int:
    return group_id(
        "daemon.socket_group", daemon.socket_group, "make install creates twostep-clients"
    )


def _listen(config: Config) -> socket.socket:
    """The listening socket, replacing a stale one, owned by ``socket_group`` and with
    ``socket_mode``. It is created 0600 (umask) and only then given its group and mode,
    so it is never open to more than it is meant to be, not even for a moment."""
    daemon = config.daemon
    gid = _socket_gid(daemon)
    path = daemon.socket
    with contextlib.suppress(FileNotFoundError):
        if path.is_socket():
            path.unlink()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    bound = False
    try:
        umask = os.umask(0o177)
        try:
            listener.bind(str(path))
        finally:
            os.umask(umask)
        bound = True
        hand_over(path, gid, daemon.socket_group, daemon.socket_mode, "twostepd's user")
        # room for a burst of logins while the serving processes catch up
        listener.listen(min(max(daemon.max_connections, 256), 4096))
    except BaseException:
        listener.close()
        if bound:  # ours; never a file that was in the way
            with contextlib.suppress(OSError):
                path.unlink()
        raise
    listener.setblocking(False)
    if daemon.socket_mode & 0o002:
        log.warning(
            "daemon.socket_mode %04o lets every local user connect; unlisted peers are "
            "refused at once, but 0660 with daemon.socket_group keeps them out",
            daemon.socket_mode,
        )
    return listener


def _descriptor_limit(daemon: DaemonConfig) -> None:
    """Raise the soft descriptor limit to what max_connections needs (up to the hard one):
    a process out of descriptors cannot accept even the connections it would serve."""
    wanted = daemon.max_connections + _DESCRIPTOR_MARGIN
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return
    new = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if new > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    if new < wanted:
        log.warning(
            "%d file descriptors for daemon.max_connections %d: raise LimitNOFILE to %d",
            new,
            daemon.max_connections,
            wanted,
        )


class _RefusalLog:
    """Logs the first refusal of a kind at once, then at most one line per interval
    saying how many more there were."""

    def __init__(self, interval: float = _REFUSAL_LOG_SECONDS) -> None:
        self._interval = interval
        self._more: dict[tuple[object, ...], int] = {}

    def __contains__(self, key: tuple[object, ...]) -> bool:
        return key in self._more

    def crowded(self) -> bool:
        return len(self._more) >= _REFUSAL_KEYS

    def note(
        self,
        key: tuple[object, ...],
        first: Callable[[], str],
        more: Callable[[int], str],
    ) -> None:
        if key in self._more:
            self._more[key] += 1
            return
        self._more[key] = 0
        log.warning("%s", first())
        asyncio.get_running_loop().call_later(self._interval, self._flush, key, more)

    def _flush(self, key: tuple[object, ...], more: Callable[[int], str]) -> None:
        count = self._more.pop(key, 0)
        if count:
            log.warning("%s", more(count))
            self._more[key] = 0
            asyncio.get_running_loop().call_later(self._interval, self._flush, key, more)


class Daemon:
    """One serving process: an event loop for the sockets, threads for the decisions."""

    def __init__(
        self,
        path: Path,
        listener: socket.socket,
        continuations: Continuations | None = None,
        choice: ProviderChoice | None = None,
    ) -> None:
        self._path = path
        self._listener = listener
        self._continuations = continuations or Continuations()
        self._choice = choice or ProviderChoice()
        self._runtime = _build(load_config(path), self._choice)
        workers = self._runtime.config.daemon.workers
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="worker")
        self._waiting = asyncio.Semaphore(workers * 4)
        self._connections: set[asyncio.Task[None]] = set()
        self._per_uid: dict[int, int] = {}
        self._refusals = _RefusalLog()
        self._accepting = False
        self._in_flight = 0
        self._stopping: asyncio.Event | None = None
        _announce(self._runtime.rules)

    @property
    def config(self) -> Config:
        return self._runtime.config

    # -- lifecycle --------------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self._listener.setblocking(False)
        self._start_accepting()
        loop.add_signal_handler(signal.SIGHUP, self._reload)
        loop.add_signal_handler(signal.SIGTERM, self._stopping.set)
        loop.add_signal_handler(signal.SIGINT, self._stopping.set)
        log.info("listening on %s", self.config.daemon.socket)
        await self._stopping.wait()
        log.info("stopping: %d request(s) in flight", self._in_flight)
        self._stop_accepting()
        await asyncio.sleep(0)  # connections admitted last take their first step
        deadline = loop.time() + _DRAIN_SECONDS
        while self._in_flight and loop.time() < deadline:
            await asyncio.sleep(0.05)
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._runtime.directory.close()
        return 0

    def _reload(self) -> None:
        try:
            runtime = _build(load_config(self._path), self._choice)
        except (ConfigError, TemporaryFailure, OSError) as exc:
            log.error("reload refused, keeping the running configuration: %s", exc)
            return
        new, running = runtime.config.daemon, self.config.daemon
        for name in ("socket", "socket_mode", "socket_group"):
            if getattr(new, name) != getattr(running, name):
                log.warning("daemon.%s changed: takes effect at the next restart", name)
        runtime.directory.adopt_settings()  # built whole: the daemon's settings now
        old, self._runtime = self._runtime, runtime
        old.directory.close()
        _announce(runtime.rules)
        log.info("configuration and keys reloaded")

    # -- connections ------------------------------------------------------------------

    def _start_accepting(self) -> None:
        if self._accepting or self._stopping is None or self._stopping.is_set():
            return
        asyncio.get_running_loop().add_reader(self._listener.fileno(), self._accept)
        self._accepting = True

    def _stop_accepting(self) -> None:
        if self._accepting:
            asyncio.get_running_loop().remove_reader(self._listener.fileno())
            self._accepting = False

    def _accept(self) -> None:
        """Take waiting connections off the listener and decide each one at once."""
        for _ in range(_ACCEPT_BATCH):
            try:
                conn, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:  # EMFILE, ENFILE, ENOBUFS, ENOMEM: try again shortly
                self._pause_accepting(exc)
                return
            self._admit(conn)

    def _pause_accepting(self, exc: OSError) -> None:
        reason = exc.strerror or str(exc)
        self._refusals.note(
            ("accept", exc.errno),
            lambda: f"cannot accept connections: {reason}; pausing (raise LimitNOFILE?)",
            lambda n: f"accept failed {n} more time(s): {reason}",
        )
        self._stop_accepting()
        asyncio.get_running_loop().call_later(_ACCEPT_PAUSE, self._start_accepting)

    def _admit(self, conn: socket.socket) -> None:
        """Serve the connection, or answer it and close it without reading anything.

        The decision uses the kernel's credentials alone (no NSS, no waiting): a peer
        without rights costs one accept and one close, whatever it sends or does not
        send. Only an admitted peer's name is looked up (cached), for the log and audit.
        """
        try:
            conn.setblocking(False)
            peer = peer_of(conn, named=False)
        except OSError:
            conn.close()
            return
        runtime = self._runtime
        daemon = runtime.config.daemon
        if not rights_of(peer, runtime.rules):
            self._turn_away(conn, peer, "forbidden", "not in daemon.verify or daemon.manage")
            return
        held = self._per_uid.get(peer.uid, 0)
        if held >= daemon.max_connections_per_uid:
            self._turn_away(
                conn,
                peer,
                "busy",
                f"it has daemon.max_connections_per_uid ({daemon.max_connections_per_uid}) open",
            )
            return
        if len(self._connections) >= daemon.max_connections:
            self._turn_away(
                conn, peer, "busy", f"daemon.max_connections ({daemon.max_connections}) reached"
            )
            return
        self._per_uid[peer.uid] = held + 1
        name = runtime.rules.name_of(peer.uid) or user_name(peer.uid)
        task = asyncio.get_running_loop().create_task(
            self._serve(conn, dataclasses.replace(peer, user=name))
        )
        self._connections.add(task)
        task.add_done_callback(functools.partial(self._release, peer.uid))

    def _release(self, uid: int, task: asyncio.Task[None]) -> None:
        self._connections.discard(task)
        left = self._per_uid.get(uid, 0) - 1
        if left > 0:
            self._per_uid[uid] = left
        else:
            self._per_uid.pop(uid, None)

    def _turn_away(self, conn: socket.socket, peer: Peer, code: str, why: str) -> None:
        """Answer with an error if the socket takes it now, and close: no reading, no
        waiting. A client that has sent its request finds the answer before the end of
        the connection (``wire.ask`` reads it even when its write met a closed socket)."""
        with contextlib.suppress(OSError):
            conn.send(_error_line(code), socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL)
        conn.close()
        # named from the configuration only: NSS for every refused uid would let a
        # flood from many uids make the loop wait on the directory
        uid, pid, name = peer.uid, peer.pid, self._runtime.rules.name_of(peer.uid)
        label = f"uid {uid} ({name})" if name else f"uid {uid}"
        key: tuple[object, ...] = ("refused", uid, why)
        if key not in self._refusals and self._refusals.crowded():
            key, label = ("refused", "others", why), "other uids"
        self._refusals.note(
            key,
            lambda: f"refused connection from {label}, pid {pid}: {why}",
            lambda n: (
                f"refused {n} more connection(s) from {label} in {_REFUSAL_LOG_SECONDS:g}s: {why}"
            ),
        )

    async def _serve(self, conn: socket.socket, peer: Peer) -> None:
        try:
            reader, writer = await asyncio.open_unix_connection(sock=conn, limit=wire.MAX_MESSAGE)
        except (OSError, asyncio.CancelledError):
            conn.close()
            return
        try:
            await self._conversation(reader, writer, peer)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _conversation(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        peer: Peer,
    ) -> None:
        while True:
            daemon = self.config.daemon
            try:
                first = await asyncio.wait_for(reader.read(1), daemon.idle_timeout)
            except TimeoutError:
                return
            if not first:
                return
            if first == b"\n":
                await self._send(writer, error("malformed"))
                return
            try:
                rest = await asyncio.wait_for(reader.readuntil(b"\n"), daemon.request_timeout)
            except TimeoutError:
                log.info("request from %s not complete within %gs", peer, daemon.request_timeout)
                await self._send(writer, error("timeout"))
                return
            except asyncio.LimitOverrunError:
                await self._send(writer, error("too-large"))
                return
            except asyncio.IncompleteReadError:
                return
            line = first + rest
            if len(line) > wire.MAX_MESSAGE:
                await self._send(writer, error("too-large"))
                return
            try:
                request = wire.decode(line)
            except wire.ProtocolError as exc:
                log.info("malformed message from %s: %s", peer, exc)
                await self._send(writer, error("malformed"))
                return
            # the rules in force now: a reload that takes a peer's rights away ends them
            # on connections it already has, too
            rights = rights_of(peer, self._runtime.rules)
            if not rights:
                log.warning("refused request from %s: no longer in verify or manage", peer)
                await self._send(writer, error("forbidden"))
                return
            await self._send(writer, await self._dispatch(request, peer, rights))

    async def _dispatch(
        self, request: dict[str, object], peer: Peer, rights: frozenset[Right]
    ) -> dict[str, object]:
        if self._waiting.locked():
            return error("busy")
        async with self._waiting:
            self._in_flight += 1
            try:
                engine = self._runtime.engine
                loop = asyncio.get_running_loop()
                return await loop.run_in_executor(
                    self._executor, handle, engine, request, peer, rights, self._continuations
                )
            finally:
                self._in_flight -= 1

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, reply: dict[str, object]) -> None:
        writer.write(_encode(reply))
        await writer.drain()


@functools.cache
def _error_line(code: str) -> bytes:
    return _encode(error(code))


def _encode(reply: dict[str, object]) -> bytes:
    data = json.dumps(reply, separators=(",", ":"), ensure_ascii=True).encode() + b"\n"
    if len(data) > wire.MAX_REPLY:  # no client would read it
        log.error("a %s reply of %d bytes was not sent", reply.get("result"), len(data))
        data = b'{"result":"tempfail"}\n'
    return data


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="twostepd", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--config",
        help="configuration file (default: $TWOSTEP_CONFIG or /etc/twostep/twostep.yaml)",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="validate the configuration and secret files, then exit",
    )
    parser.add_argument(
        "--user",
        help=f"the user twostepd runs as, default {DAEMON_USER}; --check run as root tests"
        " the files as that user",
    )
    arguments = parser.parse_args(argv)
    if arguments.user is not None and not arguments.check:
        parser.error("--user goes with --check")
    if arguments.user is not None and os.geteuid() != 0:
        parser.error("--user needs root: only root can judge files as another user")
    return arguments


def main(argv: Sequence[str] | None = None) -> int:
    """Exit 0 after a clean stop, 78 (EX_CONFIG) on bad configuration, 70 when the
    serving processes cannot start."""
    arguments = _arguments(argv)
    logging.basicConfig(
        stream=sys.stderr, format="twostepd[%(process)d]: %(levelname)s: %(message)s"
    )
    path = config_path(arguments.config)
    try:
        config = load_config(path)
        load_secrets(config)
    except ConfigError as exc:
        log.error("%s", exc)
        return 78
    logging.getLogger().setLevel(config.log_level.upper())
    if arguments.check:
        # root reads every file: judge them as the user twostepd will run as
        problems = [] if os.geteuid() else daemon_problems(config, arguments.user or DAEMON_USER)
        for problem in problems:
            log.error("%s", problem)
        try:
            _socket_gid(config.daemon)
        except ConfigError as exc:
            log.error("%s", exc)
            return 78
        for name in resolve(config.daemon).unknown:
            log.warning("%s: no such user or group here; it grants nothing", name)
        if problems:
            return 78
        print(f"{path}: configuration and secret files are usable")
        return 0
    _descriptor_limit(config.daemon)
    try:
        listener = _listen(config)
    except ConfigError as exc:
        log.error("%s", exc)
        return 78
    except OSError as exc:
        log.error("cannot listen on %s: %s", config.daemon.socket, exc)
        return 71
    count = config.daemon.processes or min(os.cpu_count() or 1, 8)
    try:
        if count == 1:
            return asyncio.run(Daemon(path, listener).run())
        continuations = Continuations()  # one key for all: a login may cross processes
        choice = ProviderChoice()  # one provider for all: single use needs one server
        return Supervisor(
            lambda: asyncio.run(Daemon(path, listener, continuations, choice).run()), count
        ).run()
    except ConfigError as exc:
        log.error("%s", exc)
        return 78
    except TemporaryFailure as exc:  # one serving process, and it cannot start
        log.error("%s", exc)
        return 70
    finally:
        with contextlib.suppress(FileNotFoundError):
            config.daemon.socket.unlink()
        log.info("stopped")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
