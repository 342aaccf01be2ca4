"""The Python libraries twostep runs on: the same list in pyproject.toml and in the Debian
package, and on Debian 12's pass (Makefile DEBIAN_LIBS) Debian's own copies of them."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# distribution name on PyPI -> (module, Debian package)
LIBRARIES = {
    "ldap3": ("ldap3", "python3-ldap3"),
    "pyotp": ("pyotp", "python3-pyotp"),
    "argon2-cffi": ("argon2", "python3-argon2"),
    "PyYAML": ("yaml", "python3-yaml"),
    "cryptography": ("cryptography", "python3-cryptography"),
    "segno": ("segno", "python3-segno"),
    "flask": ("flask", "python3-flask"),
    "waitress": ("waitress", "python3-waitress"),
}


def _requirements() -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return {re.split(r"[<>=!~ ;\[]", line, maxsplit=1)[0] for line in project["dependencies"]}


def test_every_requirement_is_a_dependency_of_the_debian_package() -> None:
    assert _requirements() == set(LIBRARIES)
    control = (REPO / "debian/control").read_text()
    depends = re.search(r"(?ms)^Package: twostep$.*?^Depends:(.*?)^\S", control)
    assert depends
    names = {part.split("(")[0].strip() for part in depends.group(1).split(",")}
    assert {package for _, package in LIBRARIES.values()} <= names


# what those bring along that pip could still shadow in the venv
CARRIED = [
    ("werkzeug", "python3-werkzeug"),
    ("jinja2", "python3-jinja2"),
    ("_cffi_backend", "python3-cffi-backend"),
]


@pytest.mark.skipif(
    os.environ.get("TWOSTEP_DEBIAN_LIBS") != "yes",
    reason="this pass runs against pip's libraries (Makefile DEBIAN_LIBS)",
)
@pytest.mark.parametrize(("module", "package"), [*LIBRARIES.values(), *CARRIED])
def test_the_suite_runs_on_debians_own_library(module: str, package: str) -> None:
    path = importlib.import_module(module).__file__
    assert path and path.startswith("/usr/lib/python3/dist-packages/"), path
    owner = subprocess.run(["dpkg", "-S", path], capture_output=True, text=True, check=True)
    assert owner.stdout.split(":")[0] == package
