"""Run one fuzz target under libFuzzer (atheris) and say how many inputs it ran.

    python tests/fuzz/run.py TARGET [--runs N | --seconds S] [--keep]

TARGET is checkpassword, protocol, config or records. The seed corpus in
tests/fuzz/corpus/TARGET is read, never written: new inputs go to a scratch directory,
removed afterwards unless --keep or a finding (then the crashing input is kept there
and named in the output). The protocol target gets its own private slapd. Exit 0 means
no finding; libFuzzer's exit code otherwise.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGETS = ("checkpassword", "protocol", "config", "records")
MAX_LEN = {"checkpassword": 2048, "protocol": 9000, "config": 8192, "records": 8192}
USERS = {"alice": "alice-fuzz-pw", "bob": "bob-fuzz-pw", "carol": "carol-fuzz-pw"}


def _lab(scratch: Path) -> tuple[object, Path]:
    """A private slapd and a configuration for an engine against it."""
    import yaml

    from pam_twostep.keyfiles import write_key_file
    from pam_twostep.lab.slapd import Directory, Slapd

    names = Directory()
    slapd = Slapd.create(scratch / "ldap", names=names, users=USERS)
    etc = scratch / "etc"
    (etc / "keys").mkdir(parents=True, mode=0o700)
    write_key_file(etc / "keys" / "k1.key", secrets.token_bytes(32))
    password = etc / "ldap.secret"
    password.write_text(names.service_password + "\n")
    password.chmod(0o600)
    config = {
        "ldap": {
            "uris": [slapd.uri],
            "bind_dn": names.service_dn,
            "bind_password_file": str(password),
            "timeout": 5,
        },
        "users": {"base": names.people},
        "policy": {"base": names.policies, "default": names.default_policy},
        "keys": {"current": "k1", "directory": str(etc / "keys")},
        "audit": {"syslog": False},
    }
    path = etc / "twostep.yaml"
    path.write_text(yaml.safe_dump(config))
    return slapd, path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", choices=TARGETS)
    amount = parser.add_mutually_exclusive_group()
    amount.add_argument("--runs", type=int, default=2000, help="inputs to run (default 2000)")
    amount.add_argument("--seconds", type=int, help="run for this long instead")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix=f"twostep-fuzz-{args.target}-"))
    env = dict(os.environ)
    slapd = None
    found = False
    try:
        if args.target == "protocol":
            slapd, config = _lab(scratch)
            env["TWOSTEP_FUZZ_CONFIG"] = str(config)
        work = scratch / "corpus"
        work.mkdir()
        budget = f"-max_total_time={args.seconds}" if args.seconds else f"-runs={args.runs}"
        argv = [
            sys.executable,
            str(HERE / f"fuzz_{args.target}.py"),
            budget,
            "-timeout=10",
            "-rss_limit_mb=2048",
            f"-max_len={MAX_LEN[args.target]}",
            f"-artifact_prefix={scratch}/",
            "-print_final_stats=1",
            str(work),
            str(HERE / "corpus" / args.target),
        ]
        result = subprocess.run(
            argv, env=env, cwd=HERE, capture_output=True, text=True, check=False
        )
        output = result.stdout + result.stderr
        done = re.search(r"Done (\d+) runs in (\d+) second", output)
        ran = f"{done.group(1)} inputs in {done.group(2)} s" if done else "stopped early"
        print(f"{args.target}: {ran}, exit {result.returncode}")
        if result.returncode != 0:
            found = True
            print(output[-6000:])
            artifacts = sorted(p.name for p in scratch.iterdir() if p.is_file())
            print(f"kept in {scratch}: {', '.join(artifacts) or 'no artifact'}")
        return result.returncode
    finally:
        if slapd is not None:
            slapd.stop()  # type: ignore[attr-defined]
        if not (args.keep or found):
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
