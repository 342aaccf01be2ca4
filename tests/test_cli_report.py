"""``twostep report readiness`` end to end: a slapd of its own that gives the service
identity at most 10 entries per plain search (so only the paged listing sees everyone),
twostepd writing its audit file, rotated and compressed copies beside it, and the
command's text, JSON and CSV (issue 18); and what it says of input it cannot vouch for
(syslog, logs that begin after the period does), input it refuses (zstd, a FIFO), logins
under an alias, and a page retried smaller."""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import config_data, make_secrets_dir
from support.slapd import NAMES, PEOPLE, SERVICE_DN, USERS, Slapd, user_dn
from support.stack import world_readable_directory

from pam_twostep import cli
from pam_twostep.audit import AuditEvent
from pam_twostep.cli import report as report_command
from pam_twostep.cli._base import EXIT_TEMPFAIL, CommandError
from pam_twostep.config import load_secrets, parse_config
from pam_twostep.core.errors import DirectoryIncomplete
from pam_twostep.core.totp import decode_secret, totp
from pam_twostep.directory import Directory
from pam_twostep.lab.twostepd import Twostepd

NEVER_ENROLLED = [f"u{n:02d}" for n in range(40)]
CAP = 10


class World:
    def __init__(self, slapd: Slapd, daemon: Twostepd, audit: Path) -> None:
        self.slapd = slapd
        self.daemon = daemon
        self.audit = audit


def _cap_service_searches(server: Slapd) -> None:
    """At most CAP entries per plain search for the service identity, any number over
    the pages of a paged one: a site's limits that paging alone gets past."""
    ldif = server.directory / "report-limits.ldif"
    ldif.write_text(
        "dn: olcDatabase={1}mdb,cn=config\nchangetype: modify\nreplace: olcLimits\n"
        f'olcLimits: dn.exact="{SERVICE_DN}" size.soft={CAP} size.hard={CAP} '
        "size.prtotal=unlimited\n"
    )
    server.ldapmodify(ldif)


def _ask(world: World, request: dict[str, object]) -> dict[str, Any]:
    reply = world.daemon.ask(request)
    assert isinstance(reply, dict)
    return reply


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    base = world_readable_directory("twostep-report-")
    server = Slapd.create(base / "ldap", names=NAMES, users=USERS)
    assert isinstance(server, Slapd)
    try:
        server.add_users(NEVER_ENROLLED)
        _cap_service_searches(server)
        (base / "log").mkdir()
        audit = base / "log" / "audit.log"
        data = config_data(
            server,
            make_secrets_dir(base / "etc"),
            audit={"syslog": False, "file": str(audit)},
        )
        config = parse_config(data)
        directory = Directory(config.ldap, config.users, load_secrets(config).bind_password)
        try:  # the cap is in force: a plain search of everyone is refused as partial
            with pytest.raises(DirectoryIncomplete):
                directory.search(PEOPLE, "(uid=*)", ["uid"], 1000)
        finally:
            directory.close()
        daemon = Twostepd(base / "daemon", data)
        daemon.start()
        try:
            world = World(server, daemon, audit)
            _story(world)
            yield world
        finally:
            daemon.stop()
    finally:
        server.destroy()
        shutil.rmtree(base, ignore_errors=True)


def _run(
    world: World,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    *args: str,
    stdin: str = "",
) -> tuple[int, str, str]:
    monkeypatch.setenv("TWOSTEP_CONFIG", str(world.daemon.config_path))
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    try:
        code = cli.main(list(args))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def _story(world: World) -> None:
    """alice turns two-step on and reads her mail with a passcode; bob and carol, under
    a policy "staff", go on with their passwords (bob for mail, carol at sshd); dave's
    entry names a policy that is not there; u00..u39 never did anything."""
    ask = world.daemon.ask
    begun = ask({"op": "enroll-begin", "user": "alice", "password": USERS["alice"]})
    assert begun["result"] == "ok", begun
    key = decode_secret(str(begun["secret"]))
    confirmed = ask({"op": "enroll-confirm", "user": "alice", "code": totp(key, time.time())})
    assert confirmed["result"] == "ok", confirmed
    added = ask({"op": "passcode-add", "user": "alice", "label": "Thunderbird"})
    assert added["result"] == "ok", added
    mail = {"op": "auth", "service": "imap", "remote": "192.0.2.9"}
    assert ask({**mail, "user": "alice", "password": added["passcode"]})["result"] == "accept"
    assert ask({"op": "policy-create", "name": "staff", "settings": {}})["result"] == "ok"
    for user in ("bob", "carol"):
        assert ask({"op": "policy-assign", "user": user, "name": "staff"})["result"] == "ok"
    for remote in ("192.0.2.20", "192.0.2.21"):
        login = {**mail, "remote": remote, "user": "bob", "password": USERS["bob"]}
        assert ask(login)["result"] == "accept"
    ask({**mail, "user": "bob", "password": "wrong"})  # a deny: not a use
    sshd = {"op": "auth", "service": "sshd", "remote": "198.51.100.4", "user": "carol"}
    assert ask({**sshd, "password": USERS["carol"]})["result"] == "accept"
    world.slapd.set_attributes(
        user_dn("dave"),
        objectClass=["inetOrgPerson", "twostepAccount"],
        twostepPolicyDN=[f"cn=gone,{NAMES.policies}"],
    )
    # what logrotate left: bob's POP3 client from home a week ago, compressed, and an
    # older copy in syslog's form with hostile lines in it
    week_ago = int(time.time()) - 7 * 86400
    older = AuditEvent(week_ago, "login", "bob", "accept", "pop3", "203.0.113.5", "password")
    ancient = AuditEvent(week_ago - 90 * 86400, "login", "u01", "accept", "imap", "", "password")
    (world.audit.parent / "audit.log.1.gz").write_bytes(
        gzip.compress((older.to_json() + "\n" + ancient.to_json() + "\n").encode())
    )
    u02 = AuditEvent(week_ago, "login", "u02", "accept", "sshd", "192.0.2.77", "password")
    (world.audit.parent / "audit.log.2").write_bytes(
        b"Nov 25 03:00:00 mx1 twostep[812]: twostep: " + u02.to_json().encode() + b"\n"
        b'Nov 25 03:00:01 mx1 twostep[812]: twostep: {"time": "soon"}\n'
        b"\xff\xfe not even text\n" + b"x" * 70_000 + b"\n"
    )


def _report(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> dict[str, Any]:
    code, out, err = _run(world, monkeypatch, capsys, "report", "readiness", "--json", *args)
    assert code == 0, (out, err)
    data: dict[str, Any] = json.loads(out)
    return data


def test_every_account_with_its_usage_and_the_totals(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _report(world, monkeypatch, capsys)
    rows = {r["user"]: r for r in data["accounts"]}
    assert set(rows) == {*USERS, *NEVER_ENROLLED}  # more than the server's cap of 10
    assert [r["user"] for r in data["accounts"]] == sorted(rows)
    alice = rows["alice"]
    assert alice["enabled"] is True and alice["policy"] is None
    assert alice["enrolled"] is not None and abs(alice["enrolled"] - time.time()) < 600
    assert [p["label"] for p in alice["passcodes"]] == ["Thunderbird"]
    assert alice["passcodes"][0]["last_address"] == "192.0.2.9"
    assert alice["passcodes"][0]["last_used"] is not None
    assert alice["password"] is None and not alice["cut_off_if_required"]
    bob = rows["bob"]
    assert bob["policy"] == "staff" and bob["enabled"] is False
    assert bob["password"]["services"] == {"imap": 2, "pop3": 1}
    assert set(bob["password"]["addresses"]) == {"192.0.2.20", "192.0.2.21", "203.0.113.5"}
    assert bob["mail_breaks_on_enroll"] and bob["cut_off_if_required"]
    assert bob["policy_values"] == {
        "required": False,
        "mail_password": True,
        "required_from": 0,
        "mail_password_until": 0,
    }
    carol = rows["carol"]
    assert carol["password"]["services"] == {"sshd": 1} and not carol["mail_breaks_on_enroll"]
    assert rows["dave"] == {
        "user": "dave",
        "names": ["dave"],
        "policy": "gone",
        "unreadable": True,
        "why": "twostepPolicyDN: names a policy entry that does not exist: "
        f"cn=gone,{NAMES.policies}",
    }
    assert rows["u01"]["password"] is None  # 97 days ago: outside the 30 days
    assert rows["u02"]["password"]["addresses"] == {"192.0.2.77": 1}
    totals = {t["policy"]: t for t in data["totals"]}
    assert totals["staff"]["accounts"] == 2
    assert totals["staff"]["mail_breaks_on_enroll"] == 1
    assert totals["staff"]["cut_off_active"] == 1
    assert data["overall"]["accounts"] == 44
    assert data["overall"]["on"] == 1
    assert data["overall"]["cut_off_if_required"] == 42
    assert data["overall"]["unreadable"] == 1
    assert data["overall"]["mail_breaks_at_grace_end"] == 0  # alice reads mail by passcode
    assert totals["staff"]["mail_breaks_at_grace_end"] == 0
    assert not alice["mail_breaks_at_grace_end"]
    audit = data["audit"]
    assert [Path(f).name for f in audit["files"]] == ["audit.log.2", "audit.log.1.gz", "audit.log"]
    assert audit["skipped_by_reason"]["not-an-event"] == 1
    assert audit["skipped_by_reason"]["too-long"] == 1
    assert audit["skipped_by_reason"]["not-twostep"] == 1
    assert audit["skipped"] == 3
    # audit.log.2 is in syslog's form: u02's event could have been forged
    assert audit["syslog_events"] == 1
    assert audit["covers_period"] is True and audit["oldest_event"] < data["since"]
    assert audit["warnings"] == [
        "1 event(s) read from syslog: events there can be forged by local users "
        "(logger -t twostep); the audit file is the trustworthy input"
    ]
    assert "secret" not in json.dumps(data).lower()
    assert USERS["bob"] not in json.dumps(data)


def test_pages_are_in_name_order_and_cover_everyone(world: World) -> None:
    seen: list[str] = []
    after: str | None = None
    while True:
        request: dict[str, object] = {"op": "readiness", "limit": 7}
        if after is not None:
            request["after"] = after
        reply = _ask(world, request)
        assert reply["result"] == "ok", reply
        assert 0 < len(reply["accounts"]) <= 7
        seen += [a["user"] for a in reply["accounts"]]
        if reply["next"] is None:
            break
        after = reply["next"]
    assert seen == sorted({*USERS, *NEVER_ENROLLED})
    for bad in (0, 501, "7", True):
        assert _ask(world, {"op": "readiness", "limit": bad}) == {
            "result": "error",
            "error": "malformed",
        }
    assert _ask(world, {"op": "readiness", "after": "zzz"}) == {
        "result": "ok",
        "accounts": [],
        "next": None,
    }


def test_text_csv_and_a_policy(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run(world, monkeypatch, capsys, "report", "readiness")
    assert code == 0, err
    assert "bob" in out and "u39" in out and "unreadable" in out
    assert "imap,pop3" in out
    assert "3 lines skipped" in out
    assert "warning: 1 event(s) read from syslog: events there can be forged by local" in out
    assert "MAIL BREAKS LATER" in out
    code, out, err = _run(world, monkeypatch, capsys, "report", "readiness", "--csv")
    assert code == 0, err
    table = list(csv.DictReader(io.StringIO(out)))
    assert len(table) == 44
    bob = next(r for r in table if r["user"] == "bob")
    assert bob["password_services"] == "imap pop3" and bob["mail_breaks_on_enroll"] == "true"
    assert bob["mail_breaks_at_grace_end"] == "false"
    assert "3 lines skipped" in err
    assert "twostep: warning: 1 event(s) read from syslog" in err
    staff = _report(world, monkeypatch, capsys, "--policy", "staff")
    assert [r["user"] for r in staff["accounts"]] == ["bob", "carol"]
    default = _report(world, monkeypatch, capsys, "--policy", "default")
    assert len(default["accounts"]) == 41  # alice and u00..u39: dave names "gone"
    assert (
        _report(world, monkeypatch, capsys, "--policy", "(default)")["accounts"]
        == default["accounts"]
    )
    since = _report(world, monkeypatch, capsys, "--since", "1d")
    bob_today = next(r for r in since["accounts"] if r["user"] == "bob")
    assert bob_today["password"]["services"] == {"imap": 2}


def test_named_audit_files_replace_the_configured_ones(
    world: World,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    auth_log = tmp_path / "auth.log"
    event = AuditEvent(
        int(time.time()) - 60, "login", "u05", "accept", "smtp", "192.0.2.5", "password"
    )
    forged = AuditEvent(event.time, "login", "u06", "accept", "smtp", "", "password")
    ahead = AuditEvent(1 << 40, "login", "u07", "accept", "smtp", "", "password")
    auth_log.write_bytes(
        b"Dec  2 03:00:00 mx1 sshd[9]: Accepted publickey for root\n"
        b"Dec  2 03:00:01 mx1 twostep[812]: twostep: " + event.to_json().encode() + b"\n"
        b"Dec  2 03:00:01 mx1 sshd[9]: user=twostep: " + forged.to_json().encode() + b"\n"
        b"Dec  2 03:00:01 mx1 twostep[812]: " + ahead.to_json().encode() + b"\n"
    )
    data = _report(world, monkeypatch, capsys, "--audit", str(auth_log))
    used = {r["user"] for r in data["accounts"] if r.get("password")}
    assert used == {"u05"}
    assert data["audit"]["files"] == [str(auth_log)]
    assert data["audit"]["skipped_by_reason"]["not-twostep"] == 2
    assert data["audit"]["skipped_by_reason"]["bad-time"] == 1
    # a minute of logs does not cover 30 days: said, not left for the reader to guess
    assert data["audit"]["covers_period"] is False
    assert data["audit"]["oldest_event"] == event.time
    assert any("the logs do not cover all of it" in w for w in data["audit"]["warnings"])
    code, out, _ = _run(world, monkeypatch, capsys, "report", "readiness", "--audit", str(auth_log))
    assert code == 0 and "warning: the oldest event read is of " in out
    args = ("report", "readiness", "--audit", str(auth_log), "--csv", "--progress")
    code, out, err = _run(world, monkeypatch, capsys, *args)
    assert code == 0 and out.startswith("user,policy,")
    assert err.startswith("\r[##############################] 0.0/0.0 MiB\ntwostep: warning: ")
    assert "twostep: warning: 1 event(s) read from syslog" in err
    assert "the logs do not cover all of it" in err
    assert err.endswith("twostep: 3 lines skipped (1 bad-time, 2 not-twostep)\n")


@pytest.mark.parametrize("how", ["corrupt", "missing", "directory", "zstd", "fifo"])
def test_an_audit_file_that_cannot_be_used_is_one_sentence(
    world: World,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    how: str,
) -> None:
    path = tmp_path / "audit.log.3.gz"
    if how == "corrupt":
        data = gzip.compress(b'{"a":1}\n' * 1000)
        path.write_bytes(data[:-8] + b"\0\0\0\0" + data[-4:])
    elif how == "directory":
        path.mkdir()
    elif how == "zstd":
        path = tmp_path / "audit.log.3.zst"
        path.write_bytes(b"\x28\xb5\x2f\xfd" + b"\0" * 32)
    elif how == "fifo":
        os.mkfifo(path)  # reading it would wait for a writer forever
    try:
        _refused(world, monkeypatch, capsys, path)
    finally:  # the session's search of the logs for secrets would block on a FIFO
        if how == "fifo":
            path.unlink()


def _refused(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], path: Path
) -> None:
    code, out, err = _run(world, monkeypatch, capsys, "report", "readiness", "--audit", str(path))
    assert code == cli.EXIT_USAGE
    assert out == "" and err.count("\n") == 1 and err.startswith(f"twostep: --audit {path}: ")
    assert "Traceback" not in err
    code, out, _ = _run(
        world, monkeypatch, capsys, "report", "readiness", "--audit", str(path), "--json"
    )
    assert code == cli.EXIT_USAGE and json.loads(out)["reason"] == "audit"


def test_a_corrupt_rotated_copy_is_a_configuration_error(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = world.audit.parent / "audit.log.4.gz"
    bad.write_bytes(b"\x1f\x8b\x08\x00" + b"\xff" * 64)
    try:
        code, _, err = _run(world, monkeypatch, capsys, "report", "readiness")
    finally:
        bad.unlink()
    assert code == cli.EXIT_CONFIG
    assert err.startswith(f"twostep: audit.file {bad}: ") and err.count("\n") == 1


def test_one_copy_of_a_rotation_is_read_and_zstd_is_refused(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    plain = world.audit.parent / "audit.log.1"  # beside audit.log.1.gz, as a cut gzip leaves
    plain.write_bytes(gzip.decompress((world.audit.parent / "audit.log.1.gz").read_bytes()))
    try:
        data = _report(world, monkeypatch, capsys)
    finally:
        plain.unlink()
    bob = next(r for r in data["accounts"] if r["user"] == "bob")
    assert bob["password"]["services"] == {"imap": 2, "pop3": 1}  # not 2: read once
    assert [Path(f).name for f in data["audit"]["files"]] == [
        "audit.log.2",
        "audit.log.1",
        "audit.log",
    ]
    packed = world.audit.parent / "audit.log.5.zst"
    packed.write_bytes(b"\x28\xb5\x2f\xfd" + b"\0" * 32)
    try:
        code, _, err = _run(world, monkeypatch, capsys, "report", "readiness")
    finally:
        packed.unlink()
    assert code == cli.EXIT_CONFIG and err.count("\n") == 1
    assert err.startswith(f"twostep: audit.file {packed}: compressed with zstd, ")
    assert "decompress it (zstd -d)" in err


def test_a_login_under_an_alias_counts_for_the_account(
    world: World,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    world.slapd.set_attributes(user_dn("u03"), uid=["u03", "u03.alias"])
    try:
        audit = tmp_path / "audit.log"
        when = int(time.time()) - 60
        audit.write_text(
            AuditEvent(
                when, "login", "U03.Alias", "accept", "imap", "192.0.2.3", "password"
            ).to_json()
            + "\n"
        )
        data = _report(world, monkeypatch, capsys, "--audit", str(audit))
    finally:
        world.slapd.set_attributes(user_dn("u03"), uid=["u03"])
    u03 = next(r for r in data["accounts"] if r["user"] == "u03")
    assert sorted(u03["names"]) == ["u03", "u03.alias"] and u03["names"][0] == "u03"
    assert u03["password"]["services"] == {"imap": 1}
    assert u03["mail_breaks_on_enroll"]


def test_a_page_that_comes_back_as_a_tempfail_is_asked_again_smaller(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    limits: list[object] = []
    real = report_command._ask

    def ask(args: Any, request: dict[str, object], timeout: float) -> dict[str, Any]:
        limits.append(request["limit"])
        if len(limits) == 1:  # what a reply over wire.MAX_REPLY becomes
            raise CommandError(EXIT_TEMPFAIL, "the directory did not answer", "directory")
        return real(args, request, timeout)

    monkeypatch.setattr(report_command, "_ask", ask)
    data = _report(world, monkeypatch, capsys)
    assert len(data["accounts"]) == 44
    assert limits[:2] == [500, 50] and set(limits[1:]) == {50}
    limits.clear()

    def always(args: Any, request: dict[str, object], timeout: float) -> dict[str, Any]:
        limits.append(request["limit"])
        raise CommandError(EXIT_TEMPFAIL, "the directory did not answer", "directory")

    monkeypatch.setattr(report_command, "_ask", always)
    code, _, _ = _run(world, monkeypatch, capsys, "report", "readiness")
    assert code == EXIT_TEMPFAIL and limits == [500, 50]


def test_usage_errors(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for args in (["--csv", "--json"], ["--since", "soon"], ["--frobnicate"]):
        assert _run(world, monkeypatch, capsys, "report", "readiness", *args)[0] == cli.EXIT_USAGE
