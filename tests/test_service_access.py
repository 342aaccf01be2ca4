"""The service user's view of its files: the kernel's rule as a table, then real files
judged as ``nobody`` (the check runs as root, who reads them all)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import make_secrets_dir
from support.stack import world_readable_directory

from pam_twostep.config import Config, load_config
from pam_twostep.service_access import (
    Account,
    Problem,
    account,
    daemon_problems,
    permits,
    portal_problems,
    secret_files,
)

SERVICE = Account("twostep", 990, "twostep", frozenset({990, 991}))
"""uid 990, primary group 990 (twostep), also in 991 (twostep-clients, say)."""
R, X, RX = 0o4, 0o1, 0o5


@pytest.mark.parametrize(
    ("owner", "group", "mode", "want", "allowed"),
    [
        (990, 990, 0o600, R, True),  # its own 0600 key
        (990, 990, 0o200, R, False),  # its own, but without the owner's read bit
        (0, 0, 0o600, R, False),  # root:root 0600: what umask 077 makes
        (0, 0, 0o644, R, True),  # anyone may (the daemon refuses it for that, elsewhere)
        (0, 990, 0o640, R, True),  # root:twostep 0640, as twostep.yaml is
        (0, 991, 0o640, R, True),  # by a supplementary group
        (0, 4, 0o640, R, False),  # root:adm 0640: not its group
        (990, 990, 0o066, R, False),  # the owner's bits alone count for the owner
        (0, 990, 0o604, R, False),  # and the group's alone for a member
        (0, 990, 0o750, X, True),  # /etc/twostep as make install leaves it
        (0, 0, 0o750, X, False),  # root:root 0750
        (0, 0, 0o711, X, True),  # search without listing
        (0, 0, 0o711, RX, False),
        (990, 990, 0o700, RX, True),  # the keys folder
        (990, 990, 0o300, RX, False),
    ],
)
def test_permission_follows_the_kernels_rule(
    owner: int, group: int, mode: int, want: int, allowed: bool
) -> None:
    assert permits(SERVICE, owner, group, mode, want) is allowed


def test_root_may_do_anything() -> None:
    assert permits(Account("root", 0, "root", frozenset({0})), 990, 990, 0o000, RX)


def test_an_account_holds_its_primary_and_supplementary_groups() -> None:
    nobody = account("nobody")
    assert nobody is not None and nobody.uid == 65534 and 65534 in nobody.gids
    assert account("twostep-no-such-user") is None


def _config(base: Path, **extra: object) -> Config:
    make_secrets_dir(base / "etc")
    data = {
        "ldap": {
            "uris": ["ldap://127.0.0.1:1/"],
            "bind_dn": "cn=twostep,dc=example,dc=org",
            "bind_password_file": str(base / "etc" / "ldap.secret"),
        },
        "users": {"base": "ou=people,dc=example,dc=org"},
        "policy": {"base": "ou=p,dc=example,dc=org"},
        "keys": {"current": "k1", "directory": str(base / "etc" / "keys")},
        "totp": {"issuer": "Example"},
        "audit": {"syslog": False},
        **extra,
    }
    path = base / "twostep.yaml"
    path.write_text(yaml.safe_dump(data))
    path.chmod(0o644)
    return load_config(path)


@pytest.fixture
def base() -> Iterator[Path]:
    path = world_readable_directory("twostep-access-")
    yield path
    shutil.rmtree(path)


def test_files_root_made_are_named_with_the_fix(base: Path) -> None:
    """make_secrets_dir makes them as root does: root:root, 0700 and 0600."""
    config = _config(base)
    keys, secret = base / "etc" / "keys", base / "etc" / "ldap.secret"
    key = keys / "k1.key"
    assert [str(p) for p in daemon_problems(config, "nobody")] == [
        f"ldap.bind_password_file {secret}: the service user nobody cannot read it (owner"
        f" root, mode 0600); run chown nobody:nogroup {secret}",
        f"keys.directory {keys}: the service user nobody cannot list it (owner root,"
        f" mode 0700); run chown nobody:nogroup {keys}",
        # the key file behind it too: every fix after one run
        f"keys.directory: key file {key}: the service user nobody cannot read it (owner root,"
        f" mode 0600); run chown nobody:nogroup {key}",
    ]
    for path in (keys, key, secret):
        os.chown(path, 65534, 65534)
    assert daemon_problems(config, "nobody") == []
    key.chmod(0o200)
    [problem] = daemon_problems(config, "nobody")
    assert problem.fix == f"chown nobody:nogroup {key} and chmod 0600 {key}"


def test_the_configuration_and_folders_on_the_way_get_the_users_group(base: Path) -> None:
    config = _config(base)
    for path in (base / "etc", base / "etc" / "keys", *secret_paths(config)):
        os.chown(path, 65534, 65534)
    assert config.source is not None
    config.source.chmod(0o600)
    folder = base / "etc"
    folder.chmod(0o750)
    os.chown(folder, 0, 0)
    secret = folder / "ldap.secret"
    assert [str(p) for p in daemon_problems(config, "nobody")] == [
        f"configuration file {config.source}: the service user nobody cannot read it (owner"
        f" root, mode 0600); run chgrp nogroup {config.source} and chmod g+r {config.source}",
        # once, however many files are behind it
        f"ldap.bind_password_file {secret}: the service user nobody cannot reach it: {folder}"
        f" is not searchable for it (owner root, group root, mode 0750); run chgrp nogroup"
        f" {folder} and chmod g+x {folder}",
    ]


def secret_paths(config: Config) -> list[Path]:
    return [path for _label, path in secret_files(config)]


def test_the_secret_files_are_those_load_secrets_reads(base: Path) -> None:
    config = _config(base)
    assert [label for label, _ in secret_files(config)] == [
        "ldap.bind_password_file",
        "keys.directory: key file",
    ]
    with_hosts = _config(
        base / "h",
        mail_sessions={
            "hosts": [{"name": "imap", "url": "http://127.0.0.1:8080/"}],
            "api_key_file": str(base / "doveadm.key"),
        },
    )
    assert secret_files(with_hosts)[-1] == ("mail_sessions.api_key_file", base / "doveadm.key")


def test_a_missing_service_user_is_a_problem_with_its_fix(base: Path) -> None:
    config = _config(base)
    [problem] = daemon_problems(config, "twostep-no-such-user")
    assert str(problem) == (
        "the service user twostep-no-such-user does not exist (twostepd runs as it); create it,"
        " or name the user twostepd runs as with --user"
    )
    assert daemon_problems(config, "root") == []


def test_the_portal_needs_its_cookie_key(base: Path) -> None:
    key = base / "portal.key"
    key.write_text("x")
    key.chmod(0o600)
    config = _config(base, portal={"secret_key_file": str(key)})
    nobody = account("nobody")
    assert nobody is not None
    assert portal_problems(config, nobody) == [
        Problem(
            f"portal.secret_key_file {key}: the service user nobody cannot read it (owner root,"
            " mode 0600)",
            f"chown nobody:nogroup {key}",
        )
    ]
    os.chown(key, 65534, 65534)
    assert portal_problems(config, nobody) == []


def test_each_closed_folder_is_named_once(tmp_path: Path) -> None:
    """pytest's own folders are 0700: each is named once, at the first file behind it."""
    config = _config(tmp_path)
    problems = daemon_problems(config, "nobody")
    folders = [p for p in problems if "is not searchable for it" in p.what]
    assert folders and folders[0].what.startswith(f"configuration file {config.source}:")
    assert len({p.fix for p in folders}) == len(folders)
    assert len(problems) == len(folders) + 3  # and the password, the keys folder, the key
