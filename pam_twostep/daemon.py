"""twostepd: the resident daemon, the only holder of LDAP connections and keys.

It listens on a UNIX socket and answers one JSON request per line (see ``wire``). The
event loop only moves bytes: each request runs on a worker thread, so one slow LDAP
operation stalls nobody else, and sockets are cheap enough to keep thousands of idle
clients (Dovecot's Lua passdb keeps one per auth worker).

Protection of the loop itself: a request must arrive whole within ``request_timeout``
once it has begun (slow senders are cut off), no message may exceed ``wire.MAX_MESSAGE``
bytes, at most ``max_connections`` are served at once, and at most four requests per
worker may wait for a worker; beyond that the answer is ``busy`` at once.

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
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from . import wire
from .access import Peer, Right, peer_of, rights_of
from .audit import build_sink
from .config import Config, config_path, load_config, load_secrets
from .continuation import Continuations
from .directory import Directory
from .engine import Engine
from .errors import ConfigError
from .handlers import error, handle

__all__ = ["Daemon", "main"]

log = logging.getLogger("twostepd")

_DRAIN_SECONDS = 30.0


@dataclass
class _Runtime:
    config: Config
    engine: Engine
    directory: Directory


def _build(config: Config) -> _Runtime:
    secrets = load_secrets(config)
    directory = Directory(config.ldap, config.users, secrets.bind_password)
    engine = Engine(config, directory, secrets.keyring, build_sink(config.audit))
    return _Runtime(config, engine, directory)


def _listen(config: Config) -> socket.socket:
    """The listening socket, replacing a stale one, with the configured mode."""
    path = config.daemon.socket
    with contextlib.suppress(FileNotFoundError):
        if path.is_socket():
            path.unlink()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    os.chmod(path, config.daemon.socket_mode)
    # room for a burst of logins while the serving processes catch up
    listener.listen(min(max(config.daemon.max_connections, 256), 4096))
    return listener


class Daemon:
    """One serving process: an event loop for the sockets, threads for the decisions."""

    def __init__(
        self, path: Path, listener: socket.socket, continuations: Continuations | None = None
    ) -> None:
        self._path = path
        self._listener = listener
        self._continuations = continuations or Continuations()
        self._runtime = _build(load_config(path))
        workers = self._runtime.config.daemon.workers
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="worker")
        self._waiting = asyncio.Semaphore(workers * 4)
        self._connections: set[asyncio.Task[None]] = set()
        self._in_flight = 0
        self._stopping: asyncio.Event | None = None
        self._server: asyncio.AbstractServer | None = None

    @property
    def config(self) -> Config:
        return self._runtime.config

    # -- lifecycle --------------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self._server = await asyncio.start_unix_server(
            self._client, sock=self._listener, limit=wire.MAX_MESSAGE
        )
        loop.add_signal_handler(signal.SIGHUP, self._reload)
        loop.add_signal_handler(signal.SIGTERM, self._stopping.set)
        loop.add_signal_handler(signal.SIGINT, self._stopping.set)
        log.info("listening on %s", self.config.daemon.socket)
        await self._stopping.wait()
        log.info("stopping: %d request(s) in flight", self._in_flight)
        self._server.close()
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
            runtime = _build(load_config(self._path))
        except ConfigError as exc:
            log.error("reload refused, keeping the running configuration: %s", exc)
            return
        if runtime.config.daemon.socket != self.config.daemon.socket:
            log.warning("daemon.socket changed: takes effect at the next restart")
        old, self._runtime = self._runtime, runtime
        old.directory.close()
        log.info("configuration and keys reloaded")

    # -- connections ------------------------------------------------------------------

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is None:  # pragma: no cover - always set inside a running handler
            return
        self._connections.add(task)
        try:
            if len(self._connections) > self.config.daemon.max_connections:
                await self._refuse(reader, writer, "busy")
                return
            sock = writer.get_extra_info("socket")
            peer = peer_of(sock) if sock is not None else Peer(0, -1, -1, "#unknown", frozenset())
            rights = rights_of(peer, self.config.daemon)
            if not rights:
                log.warning("refused connection from %s: not in daemon.verify or manage", peer)
                await self._refuse(reader, writer, "forbidden")
                return
            await self._conversation(reader, writer, peer, rights)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _conversation(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        peer: Peer,
        rights: frozenset[Right],
    ) -> None:
        daemon = self.config.daemon
        while True:
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

    async def _refuse(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, code: str
    ) -> None:
        """Answer the first request with an error, then close.

        The request is read first (briefly, within the size limit) so that a client still
        sending it sees the answer instead of a broken pipe.
        """
        with contextlib.suppress(Exception):
            await asyncio.wait_for(reader.readuntil(b"\n"), self.config.daemon.request_timeout)
        await self._send(writer, error(code))

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, reply: dict[str, object]) -> None:
        data = json.dumps(reply, separators=(",", ":"), ensure_ascii=True).encode() + b"\n"
        if len(data) > wire.MAX_REPLY:  # no client would read it
            log.error("a %s reply of %d bytes was not sent", reply.get("result"), len(data))
            data = b'{"result":"tempfail"}\n'
        writer.write(data)
        await writer.drain()


class _Supervisor:
    """Forks the serving processes, forwards signals to them, replaces one that dies."""

    def __init__(self, path: Path, listener: socket.socket, count: int) -> None:
        self._path = path
        self._listener = listener
        self._count = count
        self._continuations = Continuations()  # one key for all: a login may cross processes
        self._children: set[int] = set()
        self._stopping = False
        self._quick_deaths = 0

    def _spawn(self) -> None:
        pid = os.fork()
        if pid == 0:  # the serving process
            code = 70
            try:
                for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                    signal.signal(number, signal.SIG_DFL)
                code = asyncio.run(Daemon(self._path, self._listener, self._continuations).run())
            except ConfigError as exc:
                log.error("%s", exc)
                code = 78
            except BaseException:  # report, then leave it to the supervisor
                log.exception("serving process failed")
            finally:
                logging.shutdown()
                os._exit(code)
        self._children.add(pid)

    def _forward(self, number: int) -> None:
        for pid in list(self._children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, number)

    def _stop(self, number: int, frame: object) -> None:
        self._stopping = True
        self._forward(signal.SIGTERM)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        signal.signal(signal.SIGHUP, lambda number, frame: self._forward(signal.SIGHUP))
        for _ in range(self._count):
            self._spawn()
        log.info("%d serving processes started", self._count)
        started = time.monotonic()
        code = 0
        while self._children:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            self._children.discard(pid)
            if self._stopping:
                continue
            exit_code = os.waitstatus_to_exitcode(status)
            log.error("serving process %d exited (%d); starting another", pid, exit_code)
            self._quick_deaths = self._quick_deaths + 1 if time.monotonic() - started < 10 else 0
            if self._quick_deaths > 3 * self._count:
                log.error("serving processes keep dying; giving up")
                self._stopping = True
                self._forward(signal.SIGTERM)
                code = 78 if exit_code == 78 else 70
                continue
            time.sleep(min(1.0, 0.1 * self._quick_deaths))
            self._spawn()
        return code


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
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Exit 0 after a clean stop, 78 (EX_CONFIG) on bad configuration."""
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
        print(f"{path}: configuration and secret files are usable")
        return 0
    try:
        listener = _listen(config)
    except OSError as exc:
        log.error("cannot listen on %s: %s", config.daemon.socket, exc)
        return 71
    count = config.daemon.processes or min(os.cpu_count() or 1, 8)
    try:
        if count == 1:
            return asyncio.run(Daemon(path, listener).run())
        return _Supervisor(path, listener, count).run()
    except ConfigError as exc:
        log.error("%s", exc)
        return 78
    finally:
        with contextlib.suppress(FileNotFoundError):
            config.daemon.socket.unlink()
        log.info("stopped")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
