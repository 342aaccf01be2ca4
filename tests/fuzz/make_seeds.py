"""Write the seed corpora in tests/fuzz/corpus: valid inputs for each target to start from.

    python tests/fuzz/make_seeds.py

The records seeds are real entries: a private slapd, an engine sealing with the fuzz
key, and a user taken through enrollment, passcodes, a trusted device and failures.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from fuzz_records import FUZZ_KEY
from run import USERS, _lab

from pam_twostep.audit import Sinks
from pam_twostep.config import load_config, load_secrets
from pam_twostep.core.account import Attr
from pam_twostep.core.decision import Attempt, Flow
from pam_twostep.core.keyring import Keyring
from pam_twostep.core.totp import decode_secret, totp
from pam_twostep.directory import Directory
from pam_twostep.engine import Engine

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
NOW = 1_800_000_000
SEP = b"\n\x1e\n"


def _write(target: str, name: str, data: bytes) -> None:
    directory = CORPUS / target
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_bytes(data)


def config_seeds() -> None:
    _write("config", "example.yaml", (HERE.parents[1] / "config" / "twostep.yaml").read_bytes())
    _write(
        "config",
        "minimal.yaml",
        b"ldap:\n  uris: [ldapi:///]\n  bind_dn: cn=twostep,dc=example,dc=org\n"
        b"  bind_password_file: /etc/twostep/ldap.secret\n"
        b"users: {base: 'ou=people,dc=example,dc=org'}\nkeys: {current: k1}\n",
    )


def protocol_seeds() -> None:
    alice, bob = USERS["alice"], USERS["bob"]
    requests: list[dict[str, object]] = [
        {"op": "ping", "id": 1},
        {"op": "stats"},
        {"op": "auth", "user": "bob", "password": bob, "service": "imap", "remote": "192.0.2.1"},
        {"op": "auth", "user": "alice", "password": alice, "service": "sshd", "code": "123456"},
        {
            "op": "auth",
            "user": "alice",
            "password": alice,
            "service": "web",
            "flow": "interactive",
            "code": "123456",
            "trust_device": True,
            "device_label": "Laptop",
            "continuation": "1800000000.abc",
            "device_token": "d1.xyz",
            "secured": True,
            "local": "127.0.0.1",
        },
        {"op": "lookup", "user": "bob"},
        {"op": "status", "user": "alice"},
        {"op": "enroll-begin", "user": "alice", "password": alice, "service": "twostep"},
        {"op": "enroll-confirm", "user": "alice", "code": "123456"},
        {"op": "disable", "user": "alice", "password": alice, "code": "123456"},
        {"op": "reset", "user": "alice"},
        {"op": "codes", "user": "alice"},
        {"op": "codes-regenerate", "user": "alice"},
        {
            "op": "passcode-add",
            "user": "alice",
            "label": "Phone",
            "services": "imap,smtp",
            "lifetime": 86400,
        },
        {"op": "passcode-revoke", "user": "alice", "label": "Phone"},
        {"op": "passcode-revoke-all", "user": "alice"},
        {"op": "device-revoke", "user": "alice", "device": "abc"},
        {"op": "device-revoke-others", "user": "alice", "device": "abc"},
        {"op": "device-revoke-all", "user": "alice"},
        {"op": "webmail-check", "user": "alice", "credential": "ws-abcdefgh." + "A" * 43},
        {"op": "webmail-end", "user": "alice", "credential": "ws-abcdefgh." + "A" * 43},
        {"op": "webmail-session-revoke", "user": "alice", "session_id": "abcdefgh"},
        {"op": "unlock", "user": "alice"},
        {"op": "password-change", "user": "carol", "old": USERS["carol"], "new": "n3w-Pass"},
        {"op": "keys-status"},
        {"op": "keys-reseal"},
        {"op": "policy-list"},
        {"op": "policy-show", "name": "default"},
        {"op": "policy-create", "name": "staff", "settings": {"required": True}},
        {
            "op": "policy-set",
            "name": "staff",
            "settings": {"backup_codes": 5, "lockout_window": 60},
        },
        {"op": "policy-assign", "user": "bob", "name": "staff"},
    ]
    for n, request in enumerate(requests):
        line = json.dumps(request, separators=(",", ":")) + "\n"
        _write("protocol", f"{n:02d}-{request['op']}.json", line.encode())


def checkpassword_seeds() -> None:
    env = b"SERVICE=imap\nTCPREMOTEIP=192.0.2.7\nTCPLOCALIP=127.0.0.1\nAUTH_SECURED=1"
    accept = b'{"result":"accept","user":"bob","method":"password","fields":{"userdb_home":"/h"}}'
    seeds = {
        "accept": [b"bob\0pw\0\0", env, b"/bin/true", accept],
        "deny": [b"bob\0pw\0\0", env, b"/bin/true", b'{"result":"deny","reason":"wrong"}'],
        "tempfail": [b"bob\0pw\0\0", env, b"/bin/true", b'{"result":"tempfail"}'],
        "unreachable": [b"bob\0pw\0\0", env, b"/bin/true", b""],
        "lookup": [
            b"bob\0\0\0",
            env + b"\nAUTHORIZED=1",
            b"/bin/true",
            b'{"result":"found","user":"bob","fields":{}}',
        ],
        "unknown": [b"x\0\0\0", b"AUTHORIZED=1", b"/bin/true", b'{"result":"unknown"}'],
        "misuse": [b"bob\0pw", env, b"", b""],
    }
    for name, parts in seeds.items():
        _write("checkpassword", name, SEP.join(parts))


def _dump(engine: Engine, user: str, presented: dict[str, str]) -> bytes:
    raw = engine.directory.find_account(user, ["*", Attr.UUID])
    assert raw is not None
    lines = [
        name.encode() + b":" + value
        for name, values in sorted(raw.attributes.items())
        for value in values
        if b"\n" not in value
    ]
    lines += [f"@{k}:{v}".encode() for k, v in presented.items()]
    return b"\n".join(lines) + b"\n"


def records_seeds(scratch: Path) -> None:
    slapd, path = _lab(scratch)
    try:
        config = load_config(path)
        secrets = load_secrets(config)
        directory = Directory(config.ldap, config.users, secrets.bind_password)
        keys = Keyring({"k1": FUZZ_KEY}, "k1")
        engine = Engine(config, directory, keys, Sinks([]), clock=lambda: NOW)
        alice = USERS["alice"]
        _write("records", "plain", _dump(engine, "bob", {"flow": "mail", "secret": "x"}))
        shown = engine.enroll_begin("alice", alice)
        _write(
            "records",
            "pending",
            _dump(engine, "alice", {"password": "right", "code": "000000"}),
        )
        key = decode_secret(shown.secret)
        codes = engine.enroll_confirm("alice", totp(key, NOW - 30))
        passcode = engine.add_passcode("alice", "Phone", services=("imap",)).passcode
        engine.add_passcode("alice", "Laptop")
        trusted = engine.authenticate(
            "alice",
            Attempt(Flow.INTERACTIVE, alice, code=totp(key, NOW), trust_device=True),
            service="sshd",
            remote="192.0.2.9",
        )
        engine.authenticate("alice", Attempt(Flow.MAIL, passcode), service="imap")
        engine.authenticate("alice", Attempt(Flow.MAIL, "wrong"), service="imap")
        cases = {
            "passcode": {"flow": "mail", "secret": passcode},
            "code": {"password": "right", "code": totp(key, NOW + 30), "now": str(NOW + 30)},
            "backup": {"password": "right", "code": codes[0]},
            "device": {"password": "right", "device": trusted.device_token or ""},
            "trust": {"password": "right", "code": totp(key, NOW + 30), "trust": "Tablet"},
        }
        for name, presented in cases.items():
            _write("records", f"enabled-{name}", _dump(engine, "alice", presented))
        for n in range(10):
            engine.authenticate("alice", Attempt(Flow.MAIL, f"wrong {n}"), service="imap")
        _write("records", "locked", _dump(engine, "alice", cases["passcode"]))
        directory.close()
    finally:
        slapd.stop()  # type: ignore[attr-defined]


def main() -> None:
    shutil.rmtree(CORPUS, ignore_errors=True)
    config_seeds()
    protocol_seeds()
    checkpassword_seeds()
    scratch = Path(tempfile.mkdtemp(prefix="twostep-seeds-"))
    try:
        records_seeds(scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
