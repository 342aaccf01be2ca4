"""A directory of many accounts for the scale measurement, loaded with slapadd.

The two-step state is made with the core's own record types, key ring and stamp, as
twostepd would have written it: every fifth account has two-step on with a sealed key,
backup codes and five application passcodes, so logins read entries of a realistic
size. One account (``BUSY``) holds 25 passcodes and 20 trusted devices, for the status
of a heavy user. slapadd takes the LDIF with the entryUUIDs the sealed values are bound
to; it is loaded while slapd is stopped, which is how a site loads a large tree.
"""

from __future__ import annotations

import random
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from pam_twostep.core.account import Attr, password_stamp
from pam_twostep.core.codes import new_id, new_passcode
from pam_twostep.core.hashing import fast_digest, hash_backup_code
from pam_twostep.core.keyring import NONCE_BYTES, Keyring
from pam_twostep.core.records import Device, Passcode
from pam_twostep.core.totp import time_step
from pam_twostep.lab.slapd import Directory as Names
from pam_twostep.lab.slapd import Slapd, ssha

__all__ = ["BUSY", "Population", "load"]

BUSY = "busy"
"""The account with 25 passcodes and 20 trusted devices."""
ENABLED_EVERY = 5
PASSCODES_EACH = 5
BACKUP_CODES = 10
_MAX_SIZE = 4 << 30
"""olcDbMaxSize for the large tree (the lab's 256 MiB is for a few hundred entries)."""


@dataclass
class Population:
    """Who is in the directory and what each can log in with."""

    passwords: dict[str, str] = field(default_factory=dict, repr=False)
    """Every user's password (two-step on or off)."""
    passcodes: dict[str, list[str]] = field(default_factory=dict, repr=False)
    """The application passcodes of each user with two-step on."""
    seconds: float = 0.0
    """How long slapadd took."""

    @property
    def enabled(self) -> list[str]:
        return [name for name in self.passcodes if name != BUSY]

    @property
    def plain(self) -> list[str]:
        return [name for name in self.passwords if name not in self.passcodes]


def _name(number: int) -> str:
    return f"s{number:06d}"


def _entries(
    names: Names, keys: Keyring, count: int, rand: Callable[[int], bytes], people: Population
) -> Iterator[str]:
    now = int(time.time())
    step = time_step(now, 30) - 1
    backup = [hash_backup_code(f"code{n:06d}", rand(16)) for n in range(BACKUP_CODES)]
    for number in range(count + 1):
        name = BUSY if number == count else _name(number)
        password = f"{name}-pw"
        people.passwords[name] = password
        hashed = ssha(password, rand(8))
        lines = [
            f"dn: {names.user_dn(name)}",
            "objectClass: inetOrgPerson",
            f"uid: {name}",
            f"cn: {name}",
            f"sn: {name}",
            f"mail: {name}@example.org",
            f"userPassword: {hashed}",
        ]
        if number % ENABLED_EVERY == 0 or name == BUSY:
            entry_uuid = str(uuid.UUID(bytes=rand(16), version=4))
            stamp = password_stamp(entry_uuid, [hashed.encode()])
            sealed = keys.seal(rand(20), context=entry_uuid.encode(), nonce=rand(NONCE_BYTES))
            lines[1:2] = ["objectClass: inetOrgPerson", "objectClass: twostepAccount"]
            lines += [
                f"entryUUID: {entry_uuid}",
                f"{Attr.ENABLED}: TRUE",
                f"{Attr.SECRET}: {sealed}",
                f"{Attr.ALGORITHM}: SHA1",
                f"{Attr.DIGITS}: 6",
                f"{Attr.PERIOD}: 30",
                f"{Attr.LAST_STEP}: {step}",
            ]
            lines += [f"{Attr.BACKUP_CODE}: {h}" for h in backup]
            plain = []
            for index in range(25 if name == BUSY else PASSCODES_EACH):
                secret = new_passcode(rand)
                plain.append(secret)
                record = Passcode(
                    id=new_id(rand),
                    label=f"Mail client {index + 1}",
                    digest=fast_digest("passcode", secret),
                    created=now,
                    expires=0,
                    services=(),
                    stamp=stamp,
                )
                lines.append(f"{Attr.PASSCODE}: {record.dump()}")
            for index in range(20 if name == BUSY else 0):
                device = Device(
                    id=new_id(rand),
                    label=f"Browser {index + 1}",
                    digest=fast_digest("device", rand(32).hex()),
                    created=now,
                    expires=now + 30 * 86400,
                    stamp=stamp,
                )
                lines.append(f"{Attr.DEVICE}: {device.dump()}")
            people.passcodes[name] = plain
        yield "\n".join(lines) + "\n"


def load(slapd: Slapd, keys: Keyring, count: int, seed: int = 15) -> Population:
    """``count`` accounts (and ``BUSY``) added to ``slapd``'s tree by slapadd, with slapd
    stopped meanwhile and started again after."""
    generator = random.Random(seed)
    people = Population()
    ldif = slapd.directory / "population.ldif"
    with open(ldif, "w") as out:
        for entry in _entries(slapd.names, keys, count, generator.randbytes, people):
            out.write(entry + "\n")
    subprocess.run(
        ["ldapmodify", "-Q", "-Y", "EXTERNAL", "-H", slapd.ldapi],
        input=(
            "dn: olcDatabase={1}mdb,cn=config\nchangetype: modify\n"
            f"replace: olcDbMaxSize\nolcDbMaxSize: {_MAX_SIZE}\n"
        ).encode(),
        check=True,
        capture_output=True,
    )
    slapd.stop()
    started = time.monotonic()
    subprocess.run(
        [
            "slapadd",
            "-q",
            "-F",
            str(slapd.directory / "slapd.d"),
            "-b",
            slapd.names.suffix,
            "-l",
            str(ldif),
        ],
        check=True,
        capture_output=True,
    )
    people.seconds = time.monotonic() - started
    ldif.unlink()
    slapd.start()
    return people
