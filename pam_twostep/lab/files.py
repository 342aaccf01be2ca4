"""Where the files that are not Python modules live, and installing the thin clients.

From a checkout they are next to the package (``ldap_schema/``, ``checkpassword/``,
``config/``); after ``make install`` they are under ``<prefix>/share/twostep``, from the
Debian package under ``/usr/share/twostep``. The
client installation here is the one ``make install-clients`` runs too, so there is a
single recipe: the protocol module and the checkpassword program, world-readable, with
their bytecode compiled so that the dovecot user never has to write any.

Standard library only: the Makefile runs this module with Debian's python3 directly.
"""

from __future__ import annotations

import argparse
import os
import py_compile
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["PAM_LOADER", "install_clients", "resource"]

_PACKAGE = Path(__file__).resolve().parents[1]
_CHECKOUT = _PACKAGE.parent
# make install puts the virtual environment at <prefix>/lib/twostep/venv
_VENV = Path(sys.prefix)
_SHARED = _VENV.parents[2] / "share" / "twostep" if len(_VENV.parents) > 2 else None
# the Debian package's (debian/rules)
_DEBIAN_SHARED = Path("/usr/share/twostep")


def resource(relative: str) -> Path:
    """A file shipped with twostep, from the checkout or from the installed share dir."""
    for base in (_CHECKOUT, _SHARED, _DEBIAN_SHARED):
        if base is not None and (base / relative).exists():
            return base / relative
    raise FileNotFoundError(
        f"{relative}: not found next to the package, in {_SHARED} nor in {_DEBIAN_SHARED}"
    )


PAM_LOADER = "twostep_pam.py"
# pam_python reads this file anew (without bytecode) on every transaction: keep it tiny;
# the work is in pam_twostep/pam_module.py, compiled below.
_LOADER_TEXT = """\
import sys
_d = __file__.rpartition("/")[0]
_d in sys.path or sys.path.insert(0, _d)
from pam_twostep.pam_module import *
"""


def _copy(source: Path, target: Path, mode: int) -> None:
    shutil.copyfile(source, target)
    os.chmod(target, mode)


def install_clients(
    client_dir: Path, share_dir: Path | None = None, *, compile_bytecode: bool = True
) -> Path:
    """Install what logins run into ``client_dir``; returns the checkpassword program.

    Without ``compile_bytecode`` (the Debian package), no bytecode is written: the
    package's postinst compiles it with py3compile, as Debian compiles every module.
    """
    package = client_dir / "pam_twostep"
    package.mkdir(parents=True, exist_ok=True)
    for directory in (client_dir, package):
        os.chmod(directory, 0o755)
    for name in ("__init__.py", "wire.py", "pam_module.py", "checkpassword.py"):
        _copy(_PACKAGE / name, package / name, 0o644)
        if not compile_bytecode:
            continue
        compiled = Path(
            py_compile.compile(
                str(package / name),
                doraise=True,
                invalidation_mode=py_compile.PycInvalidationMode.TIMESTAMP,
            )
            or ""
        )
        os.chmod(compiled, 0o644)
        os.chmod(compiled.parent, 0o755)
    program = client_dir / "twostep-checkpassword"
    _copy(resource("checkpassword/twostep-checkpassword"), program, 0o755)
    loader = client_dir / PAM_LOADER
    loader.write_text(_LOADER_TEXT)
    os.chmod(loader, 0o644)
    if share_dir is not None:
        share_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(share_dir, 0o755)
        _copy(
            resource("config/dovecot/twostep-passdb.lua"), share_dir / "twostep-passdb.lua", 0o644
        )
    return program


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="install twostep's thin clients")
    parser.add_argument("client_dir", type=Path)
    parser.add_argument("share_dir", type=Path, nargs="?")
    parser.add_argument("--no-compile", action="store_true", help="write no bytecode")
    arguments = parser.parse_args(argv)
    install_clients(
        arguments.client_dir, arguments.share_dir, compile_bytecode=not arguments.no_compile
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
