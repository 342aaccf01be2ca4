"""Each package's public names, pinned (as httpx's tests/test_exported_members.py does).

A name that leaves ``__all__`` breaks whoever imported it, and a name that joins it is a
promise: either must be a decision made here, not a side effect of moving code. Private
modules (``_name.py``) are the package's own: nothing outside it imports them.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "pam_twostep"

EXPORTED = {
    "pam_twostep": ["__version__"],
    "pam_twostep.cli": [
        "EXIT_CONFIG",
        "EXIT_OK",
        "EXIT_REFUSED",
        "EXIT_TEMPFAIL",
        "EXIT_USAGE",
        "main",
    ],
    "pam_twostep.config": [
        "AccessList",
        "AuditConfig",
        "Config",
        "DEFAULT_MAIL_SERVICES",
        "DEFAULT_PATH",
        "DaemonConfig",
        "KeysConfig",
        "LdapConfig",
        "MailHost",
        "MailSessionsConfig",
        "PolicyConfig",
        "PortalConfig",
        "Secrets",
        "StaleNoticeConfig",
        "TotpConfig",
        "UsersConfig",
        "config_from_yaml",
        "config_path",
        "load_config",
        "load_secrets",
        "parse_config",
        "portal_trust_refused",
    ],
    "pam_twostep.core": [],
    "pam_twostep.directory": ["Directory", "ProviderChoice", "escape_filter"],
    "pam_twostep.engine": [
        "AccountManager",
        "Authenticator",
        "Engine",
        "Importer",
        "KeyRotation",
        "PolicyAdmin",
        "PolicyEntry",
        "StaleClients",
        "WebmailSessions",
        "check_username",
    ],
    "pam_twostep.handlers": [
        "Caller",
        "Handler",
        "Malformed",
        "OPS",
        "PortalSessions",
        "Reply",
        "SCHEMAS",
        "SELF_SERVICE",
        "SESSION_LIFETIME",
        "error",
        "handle",
        "policy_reply",
        "status_reply",
    ],
    "pam_twostep.lab": [],
    "pam_twostep.migrate": ["Candidate", "LegacyPasscode", "Problem"],
    "pam_twostep.portal": ["create_app", "serve"],
}


@pytest.mark.parametrize("package", sorted(EXPORTED))
def test_the_package_exports_what_it_promised(package: str) -> None:
    module = importlib.import_module(package)
    assert sorted(module.__all__) == EXPORTED[package]
    for name in module.__all__:
        assert hasattr(module, name), name


def test_every_package_is_pinned() -> None:
    found = {
        ".".join(p.relative_to(PACKAGE.parent).parts[:-1]) for p in PACKAGE.rglob("__init__.py")
    }
    assert found == set(EXPORTED)


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__main__.py")


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_every_module_says_what_it_exports(path: Path) -> None:
    tree = ast.parse(path.read_text())
    assert any(
        isinstance(node, (ast.Assign, ast.AnnAssign))
        and any(
            isinstance(target, ast.Name) and target.id == "__all__"
            for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
        )
        for node in tree.body
    ), f"{path} has no __all__"


def test_private_modules_are_imported_only_inside_their_package() -> None:
    for path in _modules():
        here = path.parent
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom) or node.level == 0:
                continue
            base = path.parent
            for _ in range(node.level - 1):
                base = base.parent
            target = base.joinpath(*(node.module or "").split(".")) if node.module else base
            names = [a.name for a in node.names] if node.module is None else [target.name]
            for name in names:
                if name.startswith("_") and name != "__init__":
                    owner = target if node.module is None else target.parent
                    assert owner == here, f"{path} imports the private {name} of {owner}"


def test_pyproject_lists_every_package() -> None:
    import tomllib

    data = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())
    assert set(data["tool"]["setuptools"]["packages"]) == set(EXPORTED)
