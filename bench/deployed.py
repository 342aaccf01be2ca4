"""twostepd's configuration as a site deploys it, for every part of the bench.

As the example config/twostep.yaml: every audit event to syslog (facility auth), info
logging, and as many serving processes as CPUs (the default). Backup codes are off in
the default policy only because the bench's enrollments would otherwise spend seconds
hashing codes nobody uses.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from pam_twostep.keyfiles import write_key_file
from pam_twostep.lab.slapd import Directory as Names

__all__ = ["deployed_config"]


def deployed_config(uri: str, names: Names, etc: Path) -> dict[str, Any]:
    """The configuration, its key file k1 and service password written under ``etc``."""
    (etc / "keys").mkdir(parents=True)
    write_key_file(etc / "keys" / "k1.key", secrets.token_bytes(32))
    secret = etc / "ldap.secret"
    secret.touch(mode=0o600)
    secret.write_text(names.service_password)
    return {
        "ldap": {
            "uris": [uri],
            "bind_dn": names.service_dn,
            "bind_password_file": str(secret),
        },
        "users": {"base": names.people},
        "policy": {
            "base": names.policies,
            "default": names.default_policy,
            "defaults": {"backup_codes": 0},
        },
        "keys": {"current": "k1", "directory": str(etc / "keys")},
        "audit": {"syslog": True, "facility": "auth"},
        "logging": {"level": "info"},
    }
