"""``import-account``: an authenticator brought over from another system (``twostep
import``), matched to an account by one attribute.

The request's secret and parameters become a ``Candidate`` here, so a value the core
cannot take (bad base32, an unknown algorithm) is refused as invalid input before the
engine reads the directory.
"""

from __future__ import annotations

import base64
import binascii

from ..access import Right
from ..core.candidate import Candidate
from ..core.errors import RefusalReason, Refused
from ..core.totp import Algorithm, TotpParams
from ._ops import Op, imports_of, manage
from ._parts import Imports
from ._replies import Reply
from ._schema import ImportAccount

__all__ = ["OPS"]


def _import_account(imports: Imports, v: ImportAccount, actor: str) -> Reply:
    try:
        secret = base64.b32decode(v.secret + "=" * (-len(v.secret) % 8))
        candidate = Candidate(
            source=v.source,
            match=v.match_value,
            secret=secret,
            params=TotpParams(Algorithm(v.algorithm), v.digits, v.period),
            last_step=v.last_step,
            window=v.window,
            backup_codes=tuple(c for c in v.backup_codes.split(",") if c),
            policy=v.policy,
        )
    except (ValueError, binascii.Error) as exc:
        raise Refused(RefusalReason.INVALID_INPUT, f"not importable: {exc}") from None
    outcome, user, why = imports.import_account(
        v.match_attribute,
        v.match_value,
        candidate,
        apply=v.apply,
        replace=v.replace,
        actor=actor,
    )
    return {"outcome": outcome, "user": user, "why": why}


OPS: dict[str, Op] = {
    "import-account": (Right.MANAGE, manage(ImportAccount, imports_of, _import_account)),
}
