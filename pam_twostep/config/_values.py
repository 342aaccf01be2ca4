"""Reading the YAML file strictly, one mapping and one value at a time.

Each reader takes the raw value and where it sits (``daemon.socket``) and returns the
typed value or raises ``ConfigError`` naming that place: a typo in a security setting
must be an error, never a silent default. Private to the package: the parser in
``config/__init__.py`` is its only user.
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from ..core.duration import parse_duration
from ..core.errors import ConfigError
from ..core.policy import overrides_from_mapping
from ..core.records import check_service_name
from .model import AccessList, MailHost

__all__ = [
    "_access_list",
    "_attribute_name",
    "_bool",
    "_command",
    "_choice",
    "_dn",
    "_duration",
    "_filter",
    "_group_name",
    "_integer",
    "_is_loopback",
    "_key_id",
    "_listen",
    "_mail_hosts",
    "_mode",
    "_number",
    "_path",
    "_policy_defaults",
    "_seconds",
    "_Section",
    "_service_name",
    "_services",
    "_StrictLoader",
    "_string",
    "_uris",
    "_userdb_fields",
    "portal_trust_refused",
]


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys instead of keeping the last one."""


def _mapping_without_duplicates(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        try:
            repeated = key in seen
        except TypeError:  # a list or mapping as a key
            raise yaml.constructor.ConstructorError(
                None, None, "a key must be a plain value", key_node.start_mark
            ) from None
        if repeated:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates
)

_T = TypeVar("_T")


class _Section:
    """One mapping of the file, read key by key; leftover keys are errors."""

    def __init__(self, data: object, where: str) -> None:
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"{where or 'top level'}: must be a mapping")
        self._data: dict[Any, Any] = dict(data)
        self._where = where

    def _name(self, key: str) -> str:
        return f"{self._where}.{key}" if self._where else key

    def take(self, key: str, parse: Callable[[object, str], _T], default: _T) -> _T:
        if key not in self._data:
            return default
        return parse(self._data.pop(key), self._name(key))

    def require(self, key: str, parse: Callable[[object, str], _T]) -> _T:
        if key not in self._data:
            raise ConfigError(f"{self._name(key)}: required")
        return parse(self._data.pop(key), self._name(key))

    def section(self, key: str) -> _Section:
        return _Section(self._data.pop(key, None), self._name(key))

    def raw(self, key: str) -> object:
        return self._data.pop(key, None)

    def done(self) -> None:
        if self._data:
            key = sorted(map(str, self._data))[0]
            raise ConfigError(f"{self._name(key)}: unknown key")


def _string(value: object, where: str) -> str:
    if not isinstance(value, str) or not value or len(value) > 1024 or not value.isprintable():
        raise ConfigError(f"{where}: must be a non-empty string of printable characters")
    return value


def _bool(value: object, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: must be true or false")
    return value


def _number(low: float, high: float) -> Callable[[object, str], float]:
    def parse(value: object, where: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: must be a number")
        if not low <= value <= high:
            raise ConfigError(f"{where}: must be between {low:g} and {high:g}")
        return float(value)

    return parse


def _integer(low: int, high: int) -> Callable[[object, str], int]:
    def parse(value: object, where: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: must be a whole number")
        if not low <= value <= high:
            raise ConfigError(f"{where}: must be between {low} and {high}")
        return value

    return parse


def _path(value: object, where: str) -> Path:
    text = _string(value, where)
    if not text.startswith("/"):
        raise ConfigError(f"{where}: must be an absolute path")
    return Path(text)


def _choice(options: tuple[str, ...]) -> Callable[[object, str], str]:
    def parse(value: object, where: str) -> str:
        if value not in options:
            raise ConfigError(f"{where}: must be one of {', '.join(options)}")
        return str(value)

    return parse


_DN = re.compile(r"[^=,]+=[^,]+(,[^=,]+=[^,]+)*")


def _dn(value: object, where: str) -> str:
    text = _string(value, where)
    if not _DN.fullmatch(text.replace("\\,", "").replace("\\=", "")):
        raise ConfigError(f"{where}: {text!r} is not a distinguished name")
    return text


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _uris(value: object, where: str) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or len(items) > 16:
        raise ConfigError(f"{where}: must be a URI or a list of 1 to 16 URIs")
    uris = []
    for item in items:
        uri = _string(item, where)
        try:
            parsed = urllib.parse.urlsplit(uri)
            _ = parsed.port  # raises for a port that is not a number from 0 to 65535
        except ValueError:
            parsed = None
        if (
            parsed is None
            or parsed.scheme not in ("ldap", "ldaps", "ldapi")
            or (parsed.scheme != "ldapi" and not parsed.hostname)
        ):
            raise ConfigError(f"{where}: {uri[:200]!r} is not an ldap://, ldaps:// or ldapi:// URI")
        uris.append(uri)
    return tuple(uris)


_HOST_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


def _mail_hosts(value: object, where: str) -> tuple[MailHost, ...]:
    """Dovecot hosts: each {name, url, auth_master?}; http:// only to loopback (the API
    key and the user names would cross the network in clear)."""
    if not isinstance(value, list) or len(value) > 32:
        raise ConfigError(f"{where}: must be a list of at most 32 hosts")
    hosts = []
    for index, item in enumerate(value):
        spot = f"{where}[{index}]"
        entry = _Section(item, spot)
        name = entry.require("name", _string)
        if not _HOST_NAME.fullmatch(name):
            raise ConfigError(f"{spot}.name: letters, digits, '.', '-' and '_', at most 63")
        url = entry.require("url", _string)
        try:
            parsed = urllib.parse.urlsplit(url)
            _ = parsed.port
        except ValueError:
            parsed = None
        if (
            parsed is None
            or parsed.scheme not in ("http", "https")
            or not parsed.hostname
            or parsed.query
            or parsed.fragment
            or parsed.username is not None
        ):
            raise ConfigError(f"{spot}.url: {url[:120]!r} is not an http:// or https:// URL")
        if parsed.scheme == "http" and not _is_loopback(parsed.hostname):
            raise ConfigError(
                f"{spot}.url: {url[:120]} would send the API key in clear text; use https://"
            )
        auth_master = entry.take("auth_master", _path, None)
        entry.done()
        hosts.append(MailHost(name, url, auth_master))
    if len({h.name for h in hosts}) != len(hosts):
        raise ConfigError(f"{where}: two hosts have the same name")
    return tuple(hosts)


def portal_trust_refused(listen: tuple[str, int]) -> str:
    """Why ``portal.trusted_proxies`` is refused with a TCP ``portal.listen``."""
    return (
        f"portal.trusted_proxies: refused with portal.listen on TCP ({listen[0]}:{listen[1]}): "
        "any local user can connect to a TCP port and forge X-Forwarded-For; listen on a "
        "UNIX socket (portal.listen: unix:/run/twostep-portal/portal.sock, portal.socket_group "
        "the proxy's group) and proxy to it"
    )


def _listen(value: object, where: str) -> tuple[str, int] | Path:
    text = _string(value, where)
    if text.startswith("unix:"):
        path = text[len("unix:") :]
        if not path.startswith("/") or any(c.isspace() or c == "\0" for c in path):
            raise ConfigError(f"{where}: {text[:80]!r}: give unix:/absolute/path.sock")
        return Path(path)
    host, _, port = text.rpartition(":")
    host = host.strip("[]")
    if (
        not host
        or not port.isdigit()
        or not 0 < int(port) < 65536
        or any(c.isspace() or c in "/@?#" for c in host)
    ):
        raise ConfigError(f"{where}: {text[:80]!r} is not host:port or unix:/path")
    return host, int(port)


def _service_name(value: object, where: str) -> str:
    text = _string(value, where)
    if not re.fullmatch(r"[a-z0-9][a-z0-9_.-]{0,31}", text):
        raise ConfigError(f"{where}: 1-32 lower-case letters, digits, '.', '_' or '-'")
    return text


def _filter(value: object, where: str) -> str:
    text = _string(value, where)
    depth = 0
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0:
            break
    if (
        text.count("{username}") != 1
        or depth != 0
        or not (text.startswith("(") and text.endswith(")"))
    ):
        raise ConfigError(
            f"{where}: must be a parenthesised LDAP filter containing {{username}} once"
        )
    return text


def _attribute_name(value: object, where: str) -> str:
    text = _string(value, where)
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9-]{0,63}", text):
        raise ConfigError(f"{where}: not an attribute name")
    return text


def _key_id(value: object, where: str) -> str:
    text = _string(value, where)
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", text):
        raise ConfigError(f"{where}: use 1 to 32 letters, digits, - and _")
    return text


def _services(value: object, where: str) -> frozenset[str]:
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{where}: must be a non-empty list of service names")
    try:
        return frozenset(check_service_name(_string(item, where)) for item in value)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _policy_defaults(value: object, where: str) -> Mapping[str, bool | int]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: must be a mapping")
    try:
        return overrides_from_mapping({str(k): v for k, v in value.items()})
    except ValueError as exc:
        raise ConfigError(f"{where}.{exc}") from None


_NAME = re.compile(r"[a-z_][a-z0-9_.-]{0,31}")


def _access_list(value: object, where: str) -> AccessList:
    section = _Section(value, where)
    lists = []
    for key in ("users", "groups"):
        none: list[str] = []
        items = section.take(key, _list_of_strings, none)
        for item in items:
            if not _NAME.fullmatch(item):
                raise ConfigError(f"{where}.{key}: {item[:40]!r} is not a user or group name")
        lists.append(frozenset(items))
    section.done()
    return AccessList(lists[0], lists[1])


def _group_name(value: object, where: str) -> str:
    text = _string(value, where)
    if not _NAME.fullmatch(text):
        raise ConfigError(f"{where}: {text[:40]!r} is not a group name")
    return text


def _list_of_strings(value: object, where: str) -> list[str]:
    if not isinstance(value, list):
        raise ConfigError(f"{where}: must be a list")
    return [_string(item, where) for item in value]


def _command(value: object, where: str) -> tuple[str, ...]:
    """A program and its arguments, the program an absolute path (no shell, no PATH)."""
    words = _list_of_strings(value, where)
    if not words:
        return ()
    if len(words) > 32 or not words[0].startswith("/") or any("\0" in w for w in words):
        raise ConfigError(f"{where}: a list: an absolute program path, then its arguments")
    return tuple(words)


def _mode(value: object, where: str) -> int:
    text = value if isinstance(value, str) else None
    if text is None or not re.fullmatch(r"0?[0-7]{3}", text):
        raise ConfigError(f'{where}: must be an octal mode in quotes, like "0660"')
    return int(text, 8)


_USERDB_FIELD = re.compile(r"[a-z][a-z0-9_]{0,31}")


def _userdb_fields(value: object, where: str) -> Mapping[str, str]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: must be a mapping of userdb field to LDAP attribute")
    result = {}
    for key, attribute in value.items():
        if not isinstance(key, str) or not _USERDB_FIELD.fullmatch(key):
            raise ConfigError(f"{where}: {str(key)[:40]!r} is not a userdb field name")
        result[key] = _attribute_name(attribute, f"{where}.{key}")
    return result


def _seconds(low: int, high: int, bounds: str) -> Callable[[object, str], int]:
    def check(value: object, where: str) -> int:
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        if not low <= seconds <= high:
            raise ConfigError(f"{where}: must be between {bounds}")
        return seconds

    return check


_duration = _seconds(60, 7 * 86400, "1 minute and 7 days")
