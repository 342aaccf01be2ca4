"""Run by the fresh root's own python3 in tests/test_package.py, against the installed
package: the parts of a mail server an administrator sets up around twostep by hand.

``directory FOLDER PASSWORD`` starts a slapd (Debian's, with the schema, ACLs and indexes
from /usr/share/twostep) holding the user alice and prints its names as JSON; slapd goes
on running after this exits. ``dovecot FOLDER IMAP_PORT POP3_PORT SNIPPET`` writes a
Dovecot configuration, in the installed Dovecot's dialect, that includes SNIPPET (one of
the package's conf.d files) as an administrator's 10-auth.conf would.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _directory(folder: str, password: str) -> dict[str, object]:
    from pam_twostep.lab.slapd import Slapd

    server = Slapd.create(Path(folder), users={"alice": password})
    assert server.process is not None
    names = server.names
    return {
        "pid": server.process.pid,
        "uri": server.uri,
        "service_dn": names.service_dn,
        "service_password": names.service_password,
        "people": names.people,
        "policies": names.policies,
        "default_policy": names.default_policy,
    }


def _dovecot(folder: str, imap_port: str, pop3_port: str, snippet: str) -> dict[str, object]:
    from pam_twostep.lab.dovecot_config import Passdb, Settings, installed_version, render

    directory = Path(folder)
    for name in ("run", "state"):
        (directory / name).mkdir(parents=True, exist_ok=True)
    version = installed_version()
    settings = Settings(directory, Passdb.included(snippet), (), int(imap_port), int(pop3_port))
    text, extra = render(settings, version)
    assert not extra
    config = directory / "dovecot.conf"
    config.write_text(text)
    return {"config": str(config), "is_24": version.is_24}


if __name__ == "__main__":
    command, *arguments = sys.argv[1:]
    run = {"directory": _directory, "dovecot": _dovecot}[command]
    print(json.dumps(run(*arguments)))
