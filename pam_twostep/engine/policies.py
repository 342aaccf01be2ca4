"""Class-of-service entries: the named policies accounts point at.

A policy is an entry under ``policy.base``; its settings override the configured
defaults for every account that names it (or for all, if it is the default). Creating,
changing and assigning one are changes like any other: one audited run each.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from ..config import Config
from ..core.account import POLICY_CLASS, Attr, RawEntry
from ..core.changes import Change, Modify
from ..core.errors import Conflict, NotFound, RefusalReason, Refused
from ..core.policy import (
    POLICY_ATTRIBUTES,
    Policy,
    attribute_of,
    overrides_from_ldap,
    policy_to_ldap,
    resolve_policy,
)
from ._audited import Auditor, Subject
from ._ports import DirectoryPort
from ._store import Loaded, PolicyCache

__all__ = ["PolicyAdmin", "PolicyEntry"]

_POLICY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class PolicyEntry:
    """A class-of-service entry: what it sets, and what is in force under it."""

    name: str
    dn: str
    settings: Mapping[str, bool | int]
    effective: Policy
    default: bool


class PolicyAdmin:
    def __init__(
        self,
        config: Config,
        directory: DirectoryPort,
        cache: PolicyCache,
        auditor: Auditor,
    ) -> None:
        self._config = config
        self._directory = directory
        self._cache = cache
        self._auditor = auditor

    def forget_policies(self) -> None:
        """Drop cached policy entries (after ``policy set``, or on reload)."""
        self._cache.forget()

    def _base(self) -> str:
        base = self._config.policy.base
        if base is None:
            raise Refused(
                RefusalReason.INVALID_INPUT, "policy.base is not set in the configuration"
            )
        return base

    def _policy_dn(self, name: str) -> str:
        base = self._base()
        if not isinstance(name, str) or not _POLICY_NAME.fullmatch(name):
            raise Refused(
                RefusalReason.INVALID_INPUT,
                "a policy name has 1 to 64 letters, digits, '.', '_' or '-'",
            )
        return f"cn={name},{base}"

    def _policy_record(self, raw: RawEntry) -> PolicyEntry:
        names = raw.get("cn")
        settings = overrides_from_ldap(raw.attributes)
        return PolicyEntry(
            name=names[0].decode("utf-8", "replace") if names else raw.dn,
            dn=raw.dn,
            settings=settings,
            effective=resolve_policy(self._config.policy.defaults, settings),
            default=raw.dn.lower() == (self._config.policy.default or "").lower(),
        )

    def list_policies(self) -> list[PolicyEntry]:
        entries = self._directory.entries_of_class(
            self._base(), POLICY_CLASS, ["cn", *POLICY_ATTRIBUTES]
        )
        return sorted((self._policy_record(e) for e in entries), key=lambda p: p.name)

    def show_policy(self, name: str) -> PolicyEntry:
        raw = self._directory.read(self._policy_dn(name), ["cn", "objectClass", *POLICY_ATTRIBUTES])
        classes = (
            {v.decode("utf-8", "replace").lower() for v in raw.get("objectClass")} if raw else set()
        )
        if raw is None or POLICY_CLASS.lower() not in classes:
            raise NotFound(RefusalReason.NO_SUCH_POLICY, f"no policy named {name!r}")
        return self._policy_record(raw)

    def create_policy(
        self, name: str, settings: Mapping[str, bool | int | None], *, actor: str | None = None
    ) -> PolicyEntry:
        def change(subject: Subject) -> None:
            dn = self._policy_dn(name)
            present = {k: v for k, v in settings.items() if v is not None}
            attributes = {attr: [value] for attr, value in policy_to_ldap(present).items()}
            attributes["cn"] = [name]
            try:
                self._directory.add_entry(dn, ["applicationProcess", POLICY_CLASS], attributes)
            except Conflict:
                raise Refused(RefusalReason.CONFLICT, f"a policy named {name!r} exists") from None

        self._auditor.run("policy-create", "", actor, change, service="", label=_label(name))
        return self.show_policy(name)

    def set_policy(
        self, name: str, settings: Mapping[str, bool | int | None], *, actor: str | None = None
    ) -> PolicyEntry:
        """Change settings of a policy entry; a None value removes the setting."""

        def change(subject: Subject) -> None:
            self.show_policy(name)
            changes = [
                Change.replace(attribute_of(key)) for key, v in settings.items() if v is None
            ]
            present = {k: v for k, v in settings.items() if v is not None}
            changes += [
                Change.replace(attr, value) for attr, value in policy_to_ldap(present).items()
            ]
            self._directory.modify(self._policy_dn(name), Modify(tuple(changes)))
            self.forget_policies()

        self._auditor.run("policy-set", "", actor, change, service="", label=_label(name))
        return self.show_policy(name)

    def assign_policy(self, username: str, name: str | None, *, actor: str | None = None) -> None:
        """Point an account at a policy by name (None: back to the configured default)."""

        def change(subject: Subject) -> None:
            # the policy first: a name that is none is refused before the user is read
            policy_dn = self.show_policy(name).dn if name is not None else None

            def point(loaded: Loaded, now: int) -> tuple[None, Modify, Modify]:
                values = (policy_dn,) if policy_dn else ()
                return None, Modify((Change.replace(Attr.POLICY, *values),)), Modify(())

            self._auditor.apply(subject, username, point)

        self._auditor.run("policy-assign", str(username)[:64], actor, change, label=_label(name))


def _label(name: object) -> str | None:
    """The name as the event records it: what the request said, cut to the event's size."""
    return name[:64] if isinstance(name, str) else None
