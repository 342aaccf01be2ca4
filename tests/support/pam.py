"""Real PAM for tests: service files in /etc/pam.d (always removed), pamtester, a C loop.

libpam reads services only from /etc/pam.d, so tests write uniquely named files there
and remove them when the test ends, fails, or the process exits.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import secrets
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

PAM_D = Path("/etc/pam.d")
_written: set[Path] = set()


def _remove_all() -> None:
    for path in list(_written):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        _written.discard(path)


atexit.register(_remove_all)


@contextlib.contextmanager
def pam_service(lines: Sequence[str], name: str | None = None) -> Iterator[str]:
    """A PAM service with these lines, for the duration of the block; yields its name."""
    service = name or f"twostep-test-{secrets.token_hex(4)}"
    path = PAM_D / service
    if path.exists():
        raise RuntimeError(f"{path} exists: not overwriting a service we did not write")
    _written.add(path)
    path.write_text("".join(line + "\n" for line in lines))
    try:
        yield service
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        _written.discard(path)


def module_lines(loader: Path, *args: str, account: bool = True) -> list[str]:
    arguments = " ".join(args)
    lines = [f"auth required pam_python.so {loader} {arguments}".rstrip()]
    if account:
        lines.append(f"account required pam_python.so {loader}")
    return lines


def pamtester(
    service: str,
    user: str,
    answers: Sequence[str],
    *,
    rhost: str | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """pamtester, answering prompts in order from stdin. Exit 0 = success."""
    argv = ["pamtester", "-v"]
    if rhost:
        argv += ["-I", f"rhost={rhost}"]
    for name, value in (env or {}).items():
        argv += ["-E", f"{name}={value}"]
    argv += [service, user, "authenticate", "acct_mgmt"]
    return subprocess.run(
        argv,
        input="".join(a + "\n" for a in answers),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


_DRIVER = r"""
import json, sys, PAM
spec = json.load(sys.stdin)
results = []
for t in spec["transactions"]:
    answers = list(t["answers"])
    messages = []
    def conv(auth, queries, data):
        out = []
        for text, style in queries:
            if style in (PAM.PAM_PROMPT_ECHO_OFF, PAM.PAM_PROMPT_ECHO_ON):
                messages.append(["prompt", text, style == PAM.PAM_PROMPT_ECHO_OFF])
                out.append((answers.pop(0) if answers else "", 0))
            else:
                kind = "error" if style == PAM.PAM_ERROR_MSG else "info"
                messages.append([kind, text, False])
                out.append(("", 0))
        return out
    pam = PAM.pam()
    pam.start(spec["service"])
    pam.set_item(PAM.PAM_USER, t["user"])
    pam.set_item(PAM.PAM_CONV, conv)
    if t.get("rhost"):
        pam.set_item(PAM.PAM_RHOST, t["rhost"])
    for name, value in t.get("env", {}).items():
        pam.putenv(name + "=" + value)
    try:
        pam.authenticate()
        pam.acct_mgmt()
        code = 0
    except PAM.error as exc:
        code = exc.args[1]
    results.append({"code": code, "messages": messages,
                    "new_token": pam.getenv("TWOSTEP_NEW_DEVICE_TOKEN")})
print(json.dumps(results))
"""


def in_process(service: str, transactions: list[dict[str, object]]) -> list[dict[str, object]]:
    """Transactions through Debian's python3-pam, the module running in that interpreter."""
    result = subprocess.run(
        ["/usr/bin/python3", "-c", _DRIVER],
        input=json.dumps({"service": service, "transactions": transactions}),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(result.stderr)
    return list(json.loads(result.stdout))


def build_loop(directory: Path) -> Path:
    source = Path(__file__).resolve().parents[2] / "bench" / "pam_loop.c"
    binary = directory / "pam_loop"
    subprocess.run(
        ["gcc", "-O2", "-o", str(binary), str(source), "-lpam"], check=True, capture_output=True
    )
    return binary


def loop(
    binary: Path,
    service: str,
    user: str,
    count: int,
    answers: Sequence[str],
    rhost: str | None = None,
) -> list[tuple[int, int, int]]:
    """(index, PAM result, RSS kB) for each of ``count`` transactions in one process."""
    env = {**os.environ, **({"PAM_RHOST": rhost} if rhost else {})}
    result = subprocess.run(
        [str(binary), service, user, str(count), *answers],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return [
        (int(a), int(b), int(c))
        for a, b, c, _micros in (line.split() for line in result.stdout.splitlines())
    ]
