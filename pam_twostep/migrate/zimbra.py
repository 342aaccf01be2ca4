"""Zimbra accounts and classes of service, from an LDIF export of its directory.

How Zimbra stores two-step state (zm-mailbox, and the open extensions built on it):

* ``zimbraTwoFactorAuthSecret`` and ``zimbraTwoFactorAuthScratchCodes`` are sealed with
  ``DataSource.encryptData(accountId, text)``: base64 of a version byte (1), a 16-byte
  salt, and AES-128-ECB with PKCS#5 padding under the key MD5(salt || zimbraId). The key
  is in the value itself plus the account's id: obfuscation, which is why it can be read
  here. The secret's text is ``SECRET|GENERALIZED-TIME``, base32 by default
  (``zimbraTwoFactorAuthSecretEncoding``); the scratch codes' is ``code,code,...``.
* ``zimbraAppSpecificPassword``: one bencoded dictionary per passcode, ``n`` its name,
  ``p`` a salted SSHA-512 hash, ``dc`` and ``du`` creation and last use in milliseconds.
  twostep verifies passcodes with one fast hash whatever their number; a salted hash
  per passcode would give that up, so these are reported for re-issue, by name.
* ``zimbraTwoFactorAuthTrustedDevices``: tokens living in browsers; not carried.
* A class of service (``zimbraCOS``) becomes a twostep policy of the same name; the
  mapping is ``COS_SETTINGS`` below. Hash algorithm, code length and time step come
  from the global configuration entry when the export has it (SHA1, 6, 30 s if not).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from ..core.candidate import Candidate, LegacyPasscode, Problem, check_backup_code
from ..core.totp import Algorithm, TotpParams
from . import bencode
from .ldif import Entry, LdifError, entries

__all__ = ["COS_SETTINGS", "PolicyPlan", "Zimbra", "decrypt", "read"]

_VERSION = 1
_SALT = 16

COS_SETTINGS: dict[str, tuple[str, str]] = {
    "zimbrafeaturetwofactorauthavailable": ("available", "bool"),
    "zimbrafeaturetwofactorauthrequired": ("required", "bool"),
    "zimbratwofactorauthnumscratchcodes": ("backup_codes", "int"),
    "zimbrafeaturetrusteddevicesenabled": ("trusted_devices", "bool"),
    "zimbratwofactorauthtrusteddevicetokenlifetime": ("device_lifetime", "duration"),
    "zimbrafeatureappspecificpasswordsenabled": ("passcodes", "bool"),
    "zimbramaxappspecificpasswords": ("passcode_limit", "int"),
    "zimbraappspecificpasswordduration": ("passcode_lifetime", "duration"),
    "zimbratwofactorauthlockoutmaxfailures": ("lockout_max_failures", "int"),
    "zimbrapasswordlockoutfailurelifetime": ("lockout_window", "duration"),
    "zimbrapasswordlockoutduration": ("lockout_duration", "duration"),
}
"""Zimbra class-of-service attribute -> twostep policy setting, and its kind."""

_DURATION = re.compile(r"(\d{1,12})(ms|s|m|h|d)?")
_UNITS = {"ms": 0.001, "s": 1, None: 1, "m": 60, "h": 3600, "d": 86400}
_POLICY_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


def decrypt(account_id: str, value: str) -> str:
    """The text ``DataSource.encryptData(account_id, text)`` sealed; ValueError if not."""
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except binascii.Error:
        raise ValueError("not base64") from None
    body = raw[1 + _SALT :]
    if len(raw) < 1 + _SALT + 16 or raw[0] != _VERSION or len(body) % 16:
        raise ValueError("not a Zimbra sealed value")
    key = hashlib.md5(raw[1 : 1 + _SALT] + account_id.encode()).digest()  # noqa: S324 - Zimbra's
    decryptor = Cipher(algorithms.AES(key), modes.ECB()).decryptor()  # noqa: S305 - Zimbra's
    padded = decryptor.update(body) + decryptor.finalize()
    pad = padded[-1]
    if not 1 <= pad <= 16 or padded[-pad:] != bytes([pad]) * pad:
        raise ValueError("does not open with this account's id")
    try:
        return padded[:-pad].decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("does not open with this account's id") from None


def _duration(text: str) -> int:
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text[:20]!r} is not a Zimbra duration")
    return int(int(match.group(1)) * _UNITS[match.group(2)])


def _bool(text: str) -> bool:
    if text.upper() not in ("TRUE", "FALSE"):
        raise ValueError(f"{text[:20]!r} is not TRUE or FALSE")
    return text.upper() == "TRUE"


@dataclass(frozen=True)
class PolicyPlan:
    """A class of service as the twostep policy it becomes."""

    name: str
    source: str
    settings: dict[str, bool | int] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


def _policy(entry: Entry) -> PolicyPlan:
    cn = entry.first("cn") or entry.dn.split(",", 1)[0].partition("=")[2]
    name = _POLICY_NAME.sub("-", cn).strip("-.")[:64] or "zimbra-cos"
    settings: dict[str, bool | int] = {}
    notes = []
    for attribute, (setting, kind) in COS_SETTINGS.items():
        text = entry.first(attribute)
        if text is None:
            continue
        try:
            value: bool | int = (
                _bool(text)
                if kind == "bool"
                else _duration(text)
                if kind == "duration"
                else int(text)
            )
        except ValueError as exc:
            notes.append(f"{attribute}: {exc}; not carried")
            continue
        settings[setting] = value
    return PolicyPlan(name, f"{entry.dn} (line {entry.line})", settings, tuple(notes))


@dataclass(frozen=True)
class _Global:
    params: TotpParams = TotpParams()
    window: int = 1
    base64_secret: bool = False

    @classmethod
    def of(cls, entry: Entry | None) -> _Global:
        if entry is None:
            return cls()
        algorithm = (entry.first("zimbraTwoFactorAuthHashAlgorithm") or "SHA1").upper()
        digits = int(entry.first("zimbraTwoFactorCodeLength") or 6)
        period = _duration(entry.first("zimbraTwoFactorTimeWindowLength") or "30s")
        window = int(entry.first("zimbraTwoFactorTimeWindowOffset") or 1)
        encoding = (entry.first("zimbraTwoFactorAuthSecretEncoding") or "BASE32").upper()
        return cls(TotpParams(Algorithm(algorithm), digits, period), window, encoding == "BASE64")


@dataclass
class Zimbra:
    """An export read: the accounts' candidates and problems, and the policies."""

    candidates: list[Candidate | Problem] = field(default_factory=list)
    policies: list[PolicyPlan] = field(default_factory=list)


def _secret(text: str, base64_secret: bool) -> bytes:
    secret = text.split("|", 1)[0].strip()
    try:
        if base64_secret:
            return base64.b64decode(secret, validate=True)
        return base64.b32decode(secret.upper() + "=" * (-len(secret) % 8))
    except binascii.Error:
        raise ValueError("the shared secret is not in its configured encoding") from None


def _account(entry: Entry, match_attribute: str, config: _Global, cos: dict[str, str]) -> Candidate:
    if not _bool(entry.first("zimbraTwoFactorAuthEnabled") or "FALSE"):
        raise ValueError("two-step verification is off in Zimbra: nothing to import")
    account_id = entry.first("zimbraId")
    sealed = entry.first("zimbraTwoFactorAuthSecret")
    if not account_id or not sealed:
        raise ValueError("two-step is on but zimbraId or zimbraTwoFactorAuthSecret is missing")
    try:
        secret = _secret(decrypt(account_id, sealed), config.base64_secret)
    except ValueError as exc:
        raise ValueError(f"zimbraTwoFactorAuthSecret: {exc}") from None
    codes: tuple[str, ...] = ()
    sealed_codes = entry.first("zimbraTwoFactorAuthScratchCodes")
    if sealed_codes:
        try:
            listed = decrypt(account_id, sealed_codes)
        except ValueError as exc:
            raise ValueError(f"zimbraTwoFactorAuthScratchCodes: {exc}") from None
        codes = tuple(c.strip() for c in listed.split(",") if c.strip())
        for code in codes:
            check_backup_code(code)
    legacy = []
    for value in entry.all("zimbraAppSpecificPassword"):
        try:
            record = bencode.decode(value)
        except ValueError:
            raise ValueError("zimbraAppSpecificPassword: not bencoded") from None
        if not isinstance(record, dict) or not isinstance(record.get("n"), str):
            raise ValueError("zimbraAppSpecificPassword: no name")
        created = record.get("dc")
        when = created // 1000 if isinstance(created, int) else None
        legacy.append(LegacyPasscode(str(record["n"])[:64], when))
    notes = [
        f"application passcode {p.label!r} must be issued anew (Zimbra kept only a hash)"
        for p in legacy
    ]
    devices = len(entry.all("zimbraTwoFactorAuthTrustedDevices"))
    if devices:
        notes.append(f"{devices} trusted devices not carried: each will be asked for a code once")
    window = None
    if config.window != 1:
        window = min(max(config.window, 0), 2)
        if config.window > 2:
            notes.append(f"time window ±{config.window} steps narrowed to ±2")
    cos_id = entry.first("zimbraCOSId")
    match = entry.first(match_attribute)
    if not match:
        raise ValueError(f"no {match_attribute} to match it to a directory user")
    return Candidate(
        source=f"{entry.dn} (line {entry.line})",
        match=match,
        secret=secret,
        params=config.params,
        window=window,
        backup_codes=codes,
        policy=cos.get(cos_id) if cos_id else None,
        legacy_passcodes=tuple(legacy),
        notes=tuple(notes),
    )


def _classes(entry: Entry) -> set[str]:
    return {c.lower() for c in entry.all("objectClass")}


def read(text: str, match_attribute: str) -> Zimbra:
    """Accounts (objectClass zimbraAccount) and classes of service (zimbraCOS)."""
    parsed: list[Entry | LdifError] = list(entries(text))
    found = Zimbra()
    config = None
    cos: dict[str, str] = {}
    for item in parsed:
        if isinstance(item, Entry) and "zimbraglobalconfig" in _classes(item):
            config = item
        if isinstance(item, Entry) and "zimbracos" in _classes(item):
            plan = _policy(item)
            found.policies.append(plan)
            cos_id = item.first("zimbraId")
            if cos_id:
                cos[cos_id] = plan.name
    try:
        settings = _Global.of(config)
    except ValueError as exc:
        found.candidates.append(Problem("global configuration", "*", f"unusable: {exc}"))
        return found
    seen: dict[str, str] = {}
    for item in parsed:
        if isinstance(item, LdifError):
            found.candidates.append(Problem(f"line {item.line}", "?", str(item)))
            continue
        if "zimbraaccount" not in _classes(item):
            continue
        name = item.first(match_attribute) or item.dn
        if name in seen:
            found.candidates.append(
                Problem(item.dn, name, f"{name} appears twice; the first, {seen[name]}, wins")
            )
            continue
        try:
            candidate = _account(item, match_attribute, settings, cos)
        except ValueError as exc:
            found.candidates.append(Problem(f"{item.dn} (line {item.line})", name, str(exc)))
            continue
        seen[name] = item.dn
        found.candidates.append(candidate)
    return found
