"""The package's layers, read from the source: what each module imports.

The core must stay pure (it is what the decision tables and the fuzzers exercise
without a directory), ldap3 must stay in one module (its import costs 110-160 ms and
its result codes must be translated in one place), and nothing below the daemon may
reach up into it. These are read with ``ast``, so a test fails before any import runs.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "pam_twostep"

CORE_MAY_IMPORT = frozenset(
    {
        # computation only: no file, socket, process, clock or randomness
        "__future__",
        "base64",
        "bisect",
        "collections",
        "dataclasses",
        "datetime",
        "enum",
        "hashlib",
        "hmac",
        "ipaddress",
        "json",
        "re",
        "struct",
        "typing",
        # the three libraries the core computes with
        "argon2",
        "cryptography",
        "pyotp",
    }
)
"""``datetime`` is for parsing stored timestamps; a call that reads the clock is
refused separately (``_CLOCK_CALLS``)."""

_CLOCK_CALLS = frozenset(
    {
        "now",
        "utcnow",
        "today",
        "time",
        "time_ns",
        "monotonic",
        "perf_counter",
        "token_bytes",
        "token_hex",
        "token_urlsafe",
        "urandom",
        "randbits",
        "generate_key",
    }
)
_ESCAPES = frozenset(
    {"__import__", "eval", "exec", "compile", "open", "input", "print", "breakpoint", "globals"}
)
"""Ways around an import check: any mention of these (called or not) fails the test."""

ADAPTERS = frozenset(
    {
        "access",
        "audit",
        "config",
        "continuation",
        "directory",
        "keyfiles",
        "secretfile",
        "socketfile",
        "throttle",
        "turns",
    }
)
EDGE = frozenset({"daemon", "handlers", "cli", "check", "lab", "migrate", "portal"})
CLIENTS = frozenset({"pam_module", "checkpassword"})


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, as absolute dotted names."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                base = node.module or ""
            else:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            found.add(base)
            if node.module is None or base.startswith("pam_twostep"):
                found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _ours(names: set[str]) -> set[str]:
    """Our modules among ``names``, cut to their first level below the package."""
    return {
        ".".join(n.split(".")[:3] if n.startswith("pam_twostep.core.") else n.split(".")[:2])
        for n in names
        if n.startswith("pam_twostep.")
    }


def _modules() -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def _top(module: str) -> str:
    return module.split(".")[1] if "." in module else ""


def test_the_walk_sees_the_package() -> None:
    modules = _modules()
    assert "pam_twostep.core.decision" in modules
    assert "pam_twostep.core.errors" in _imports(PACKAGE / "core" / "decision.py")
    assert "pam_twostep.core.account" in _ours(_imports(PACKAGE / "directory" / "__init__.py"))


@pytest.mark.parametrize("path", sorted((PACKAGE / "core").glob("*.py")), ids=lambda p: p.stem)
def test_the_core_imports_nothing_that_does_io(path: Path) -> None:
    imported = _imports(path)
    outside = {
        n
        for n in imported
        if not n.startswith("pam_twostep.core") and n.split(".")[0] not in CORE_MAY_IMPORT
    }
    assert not outside, f"{path.name} imports {sorted(outside)}"
    calls = {
        node.func.attr
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
    }
    assert not calls & _CLOCK_CALLS, f"{path.name} reads the clock or draws randomness"
    names = {
        node.id for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Name)
    }
    assert not names & _ESCAPES, f"{path.name} mentions {sorted(names & _ESCAPES)}"
    strings = {
        node.value
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    }
    modules = {"os", "sys", "socket", "subprocess", "time", "random", "secrets", "pathlib", "io"}
    assert not strings & modules, f"{path.name} names a module by string: {strings & modules}"


def test_ldap3_is_imported_by_the_directory_package_alone() -> None:
    users = sorted(
        m
        for m, imported in _modules().items()
        if any(n == "ldap3" or n.startswith("ldap3.") for n in imported)
    )
    assert users and all(u.startswith("pam_twostep.directory") for u in users), users


def test_adapters_and_services_never_reach_up() -> None:
    for module, imported in _modules().items():
        top = _top(module)
        above = {_top(n) for n in _ours(imported)}
        if top in ADAPTERS:
            assert not above & (EDGE | {"engine"}), f"{module} imports {sorted(above)}"
        if top == "engine":
            assert not above & EDGE, f"{module} imports {sorted(above & EDGE)}"


def test_clients_import_the_wire_alone() -> None:
    for module, imported in _modules().items():
        if _top(module) in CLIENTS:
            assert _ours(imported) == {"pam_twostep.wire"}, module
