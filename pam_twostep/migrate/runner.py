"""Running an import: candidates to twostepd one by one, one report row each.

``send`` is the command's request function (it raises ``Refusal`` for a refused request
and lets anything else through, so a daemon that stops answering stops the run). The
rows say, per user: imported, unchanged, would-import (a dry run), or skipped and why,
with the notes of what was not carried.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..core.candidate import Candidate, Problem
from .zimbra import PolicyPlan

__all__ = ["Refusal", "Row", "dedupe", "import_rows", "policy_rows"]

Send = Callable[[dict[str, object]], dict[str, Any]]


class Refusal(Exception):
    """The daemon refused one request; the run goes on with the next."""


@dataclass(frozen=True)
class Row:
    source: str
    match: str
    outcome: str
    user: str | None = None
    why: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict[str, object]:
        return {
            "source": self.source,
            "match": self.match,
            "outcome": self.outcome,
            "user": self.user,
            "why": self.why,
            "notes": list(self.notes),
        }


def dedupe(items: Iterable[Candidate | Problem]) -> Iterator[Candidate | Problem]:
    """A user twice in one run: the first record wins, the later ones are reported."""
    seen: dict[str, str] = {}
    for item in items:
        if isinstance(item, Candidate):
            if item.match in seen:
                yield Problem(item.source, item.match, f"already taken from {seen[item.match]}")
                continue
            seen[item.match] = item.source
        yield item


def _request(
    candidate: Candidate, match_attribute: str, apply: bool, replace: bool
) -> dict[str, object]:
    request: dict[str, object] = {
        "op": "import-account",
        "match_attribute": match_attribute,
        "match_value": candidate.match,
        "secret": candidate.secret_base32,
        "algorithm": candidate.params.algorithm.value,
        "digits": candidate.params.digits,
        "period": candidate.params.period,
        "backup_codes": ",".join(candidate.backup_codes),
        "source": candidate.source[-512:],
        "apply": apply,
        "replace": replace,
    }
    optional = {
        "last_step": candidate.last_step,
        "window": candidate.window,
        "policy": candidate.policy,
    }
    request.update({k: v for k, v in optional.items() if v is not None})
    return request


def import_rows(
    items: Iterable[Candidate | Problem],
    send: Send,
    *,
    match_attribute: str,
    apply: bool,
    replace: bool,
    progress: Callable[[int], None] = lambda done: None,
) -> Iterator[Row]:
    for done, item in enumerate(items, start=1):
        if isinstance(item, Problem):
            yield Row(item.source, item.match, "skipped", why=item.why)
        else:
            try:
                reply = send(_request(item, match_attribute, apply, replace))
            except Refusal as exc:
                yield Row(item.source, item.match, "skipped", why=str(exc), notes=item.notes)
            else:
                yield Row(
                    item.source,
                    item.match,
                    str(reply.get("outcome")),
                    reply.get("user"),
                    str(reply.get("why") or ""),
                    item.notes,
                )
        progress(done)


def policy_rows(plans: Iterable[PolicyPlan], send: Send, *, apply: bool) -> Iterator[Row]:
    """Each class of service as a policy: created, updated, or what would be."""
    for plan in plans:
        try:
            send({"op": "policy-show", "name": plan.name})
            exists = True
        except Refusal:
            exists = False
        settings = ", ".join(f"{k}={v}" for k, v in sorted(plan.settings.items())) or "defaults"
        if not apply:
            outcome = "would-update" if exists else "would-create"
        else:
            try:
                op = "policy-set" if exists else "policy-create"
                if exists and not plan.settings:
                    outcome = "unchanged"
                else:
                    send({"op": op, "name": plan.name, "settings": dict(plan.settings)})
                    outcome = "updated" if exists else "created"
            except Refusal as exc:
                yield Row(plan.source, plan.name, "skipped", why=str(exc), notes=plan.notes)
                continue
        yield Row(plan.source, plan.name, outcome, why=settings, notes=plan.notes)
