"""The manual pages in docs/man, held to the code they describe.

twostep(1) must have an entry for every command and action the parser offers, naming
each of its options, choices and arguments, and no entry for one it does not; its exit
statuses are the command's. twostepd(8) names every option of the daemon's parser.
twostep.yaml(5) has an entry for every key of the configuration model, in the section
of the file it belongs to, and none for a key the parser would call unknown; each
default it states, read by the configuration's own parser, gives the model's default
(defined once, in ``config/model.py`` and ``core/policy.py``), and each key the file
must give says "required". Every page renders without a warning.

Read from the pages' source and from the parsers and dataclasses themselves: no daemon,
no directory. The pages follow two conventions for this: a command is a ``.TP`` entry
tagged with its words (``passcode add user label ...``), and a key a ``.TP`` entry in
the ``.SS`` of its section tagged ``key (what, default VALUE)``, VALUE written as in
YAML, or ``key (what, required)``.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import re
import shlex
import shutil
import subprocess
import tomllib
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from pam_twostep import cli, daemon
from pam_twostep.config import config_from_yaml, model, parse_config
from pam_twostep.core.policy import POLICY_ATTRIBUTES, Policy

ROOT = Path(__file__).resolve().parents[1]
MAN = ROOT / "docs" / "man"
PAGES = ("twostep.1", "twostepd.8", "twostep.yaml.5")
DATE = "December 2026"

COMMON = ("--config", "--socket", "--json")
"""Options every command takes: documented once, under OPTIONS."""

RENAMED: dict[tuple[str, ...], tuple[str, ...]] = {
    # a path in the model -> where it is in the file (the longest prefix applies)
    ("mail_services",): ("services", "mail"),
    ("userdb_fields",): ("services", "userdb_fields"),
    ("log_level",): ("logging", "level"),
    ("stale_notice",): ("stale_clients", "notify"),
    ("stale_notice", "sender"): ("stale_clients", "notify", "from"),
    ("totp", "params"): ("totp",),  # algorithm, digits and period are totp's own keys
}
NOT_IN_FILE = {("source",)}
"""Model fields that are no key: where the configuration was read from."""
DEFAULTED_BY_PARSER = {("mail_settings", "imap", "port"), ("mail_settings", "smtp", "port")}
"""Keys without a dataclass default that the parser fills in (``model.MAIL_PORTS``)."""

LEAST: dict[str, Any] = {
    "ldap": {
        "uris": ["ldapi:///"],
        "bind_dn": "cn=twostep,ou=services,dc=example,dc=org",
        "bind_password_file": "/etc/twostep/ldap.secret",
    },
    "users": {"base": "ou=people,dc=example,dc=org"},
    "keys": {"current": "k1"},
    "mail_settings": {"imap": {"host": "mail.example.org"}, "smtp": {"host": "mail.example.org"}},
}
"""A configuration the parser takes, every section that has required keys present."""


# -- reading the pages -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Line:
    """One line of a page as it reads: the sections it is in, what it is, its text."""

    section: str
    subsection: str
    kind: str
    """``tag`` (of a .TP), ``text``, ``break`` (.PP, .SS, .SH) or ``other`` (a request)."""
    text: str
    depth: int
    """How many .RS it is in."""


_FONT = re.compile(r"\\f(\[[^]]*\]|\(..|.)")
_ESCAPES = (("\\-", "-"), ("\\(dq", '"'), ("\\(aq", "'"), ("\\(lq", '"'), ("\\(rq", '"'))
_SILENT = ("\\&", "\\|", "\\%", "\\c")
_FONT_MACROS = {"B", "I", "SM", "SB"}
_ALTERNATING = {"BR", "RB", "BI", "IB", "IR", "RI"}


def plain(text: str) -> str:
    """Roff text as it reads, without fonts and escapes."""
    text = _FONT.sub("", text)
    for escape, char in _ESCAPES:
        text = text.replace(escape, char)
    for escape in _SILENT:
        text = text.replace(escape, "")
    return text.replace("\\e", "\\")


def _arguments(rest: str) -> list[str]:
    """A request's arguments: words, or double-quoted strings ("" inside is a quote)."""
    found = []
    i = 0
    while i < len(rest):
        if rest[i] == " ":
            i += 1
        elif rest[i] == '"':
            word, i = "", i + 1
            while i < len(rest) and not (rest[i] == '"' and rest[i + 1 : i + 2] != '"'):
                word += rest[i]
                i += 2 if rest[i] == '"' else 1
            found.append(word)
            i += 1
        else:
            end = rest.find(" ", i)
            end = len(rest) if end < 0 else end
            found.append(rest[i:end])
            i = end
    return found


def read(page: str) -> list[Line]:
    source = re.sub(r"(?<!\\)\\\n", "", (MAN / page).read_text(encoding="utf-8"))
    lines: list[Line] = []
    section = subsection = ""
    depth = 0
    tag_next = False
    for raw in source.splitlines():
        if raw.startswith('.\\"'):
            continue
        kind, text = "text", raw
        if raw.startswith("."):
            name, _, rest = raw[1:].partition(" ")
            words = _arguments(rest)
            if name in ("SH", "SS"):
                if name == "SH":
                    section, subsection = plain(" ".join(words)), ""
                else:
                    subsection = plain(" ".join(words))
                lines.append(Line(section, subsection, "break", "", depth))
                continue
            if name == "TP":
                tag_next = True
                continue
            if name in ("PP", "LP", "P"):
                kind, text = "break", ""
            elif name == "RS":
                depth += 1
                continue
            elif name == "RE":
                depth -= 1
                continue
            elif name in _FONT_MACROS:
                text = " ".join(words)
            elif name in _ALTERNATING:
                text = "".join(words)
            else:
                kind, text = "other", " ".join(words)
        if tag_next and kind == "text":
            kind, tag_next = "tag", False
        lines.append(Line(section, subsection, kind, plain(text), depth))
    return lines


def in_section(page: str, section: str) -> list[Line]:
    lines = [line for line in read(page) if line.section == section]
    assert lines, f"{page} has no section {section}"
    return lines


def tags(page: str, section: str) -> list[str]:
    return [line.text for line in in_section(page, section) if line.kind == "tag"]


def tag_words(page: str, section: str) -> set[str]:
    return {word.strip(",") for tag in tags(page, section) for word in tag.split()}


def has_word(text: str, word: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", text) is not None


# -- twostep(1) --------------------------------------------------------------------------


def _commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every command or action that takes no further action, with its parser."""
    groups = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not groups and path:
        yield " ".join(path), parser
    for group in groups:
        for name, sub in group.choices.items():
            yield from _commands(sub, (*path, name))


COMMANDS = dict(_commands(cli._parser()))
TOP = {path.split()[0] for path in COMMANDS}


@dataclasses.dataclass
class Entry:
    """A command's entry, or the part of a subsection outside any (options its commands
    share): the command's tag, the tags under it (its options), and all its text."""

    subsection: str
    tag: str = ""
    tags: list[str] = dataclasses.field(default_factory=list)
    text: str = ""


def command_entries() -> tuple[dict[str, Entry], dict[str, Entry]]:
    """Each command's entry in COMMANDS, and each subsection's text outside them."""
    entries: dict[str, Entry] = {}
    shared: dict[str, Entry] = {}
    current = None
    for line in in_section("twostep.1", "COMMANDS"):
        words = line.text.split()
        if line.kind == "tag" and not line.text.startswith("-"):
            assert words[0] in TOP, f"twostep.1: {line.text!r} is no twostep command"
            current = next(
                (" ".join(words[:n]) for n in (3, 2, 1) if " ".join(words[:n]) in COMMANDS),
                None,
            )
            assert current is not None, f"twostep.1: {line.text!r} names no command of twostep"
            assert current not in entries, f"twostep.1: twostep {current} has two entries"
            entries[current] = Entry(line.subsection, line.text, [], line.text)
            continue
        if line.kind == "break" and line.depth == 0:
            current = None
            continue
        entry = (
            entries[current]
            if current is not None
            else shared.setdefault(line.subsection, Entry(line.subsection))
        )
        if line.kind == "tag":
            entry.tags.append(line.text)
        entry.text += " " + line.text
    return entries, shared


@pytest.mark.parametrize("path", COMMANDS)
def test_every_command_has_an_entry_naming_its_arguments_and_options(path: str) -> None:
    """Each option with a paragraph of its own, in the entry or shared by the subsection."""
    entries, shared = command_entries()
    assert path in entries, f"twostep.1 has no entry for twostep {path}"
    entry = entries[path]
    around = shared.get(entry.subsection, Entry(entry.subsection))
    option_tags = " ".join(entry.tags + around.tags)
    for action in COMMANDS[path]._actions:
        if isinstance(action, argparse._HelpAction) or set(action.option_strings) & set(COMMON):
            continue
        if not action.option_strings:
            name = str(action.metavar or action.dest).lower()
            assert has_word(entry.tag.lower(), name), f"twostep {path}: {name} not in the tag"
        for option in action.option_strings:
            assert has_word(option_tags, option), f"twostep.1: twostep {path} {option} missing"
        for choice in action.choices or ():
            assert has_word(f"{entry.text} {around.text}", str(choice)), f"{path}: {choice}"


def test_the_common_options_are_under_options() -> None:
    found = tag_words("twostep.1", "OPTIONS")
    for option in (*COMMON, "-h", "--help"):
        assert option in found, f"twostep.1: {option} is not under OPTIONS"


def test_the_exit_statuses_are_the_commands() -> None:
    codes = {cli.EXIT_OK, cli.EXIT_REFUSED, cli.EXIT_USAGE, cli.EXIT_TEMPFAIL, cli.EXIT_CONFIG}
    assert set(tags("twostep.1", "EXIT STATUS")) == {str(code) for code in codes}


def test_the_examples_are_commands_the_parser_takes() -> None:
    source = (MAN / "twostep.1").read_text(encoding="utf-8")
    example = source.split(".SH EXAMPLES", 1)[1].split(".SH", 1)[0]
    blocks = re.findall(r"^\.nf\n(.*?)^\.fi$", example, re.MULTILINE | re.DOTALL)
    commands = plain("".join(blocks)).replace("\\\n", " ").splitlines()
    assert commands
    for command in commands:
        words = shlex.split(command)
        assert words[0] == "twostep"
        cli._parser().parse_args(words[1:])  # a usage error exits


# -- twostepd(8) -------------------------------------------------------------------------


def test_every_option_of_twostepd_is_under_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        daemon._arguments(["--help"])
    usage = capsys.readouterr().out.split("\n\n")[0]
    options = set(re.findall(r"(?<![\w-])(--?[a-z][\w-]*)", usage))
    assert {"--config", "--check"} <= options
    assert options <= tag_words("twostepd.8", "OPTIONS"), "twostepd.8: options missing"


# -- twostep.yaml(5) ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Key:
    """A key of the configuration: where it is in the model and in the file, and its
    default (``dataclasses.MISSING`` for none), which counts only where no key above it
    has one of its own (the users of ``daemon.verify`` are the default's, not ``[]``)."""

    model: tuple[str, ...]
    file: tuple[str, ...]
    default: Any
    own_default: bool


def _dataclass_in(hint: Any) -> type | None:
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return hint
    for argument in typing.get_args(hint):
        found = _dataclass_in(argument)
        if found is not None:
            return found
    return None


def _in_file(path: tuple[str, ...]) -> tuple[str, ...]:
    for n in range(len(path), 0, -1):
        if path[:n] in RENAMED:
            return RENAMED[path[:n]] + path[n:]
    return path


def _keys(
    cls: type = model.Config, path: tuple[str, ...] = (), above: bool = False
) -> Iterator[Key]:
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        here = (*path, field.name)
        nested = _dataclass_in(hints[field.name])
        if here in NOT_IN_FILE:
            continue
        if nested is not None and (not path or RENAMED.get(here) == _in_file(path)):
            yield from _keys(nested, here, above)  # a section, or keys of the one above
            continue
        default: Any = field.default
        if field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        yield Key(here, _in_file(here), default, not above)
        if nested is not None:
            yield from _keys(nested, here, above or default is not dataclasses.MISSING)


KEYS = {".".join(key.file): key for key in _keys()}


def key_entries() -> dict[str, dict[str, tuple[str, str]]]:
    """Per section of SECTIONS, each key's entry: what its tag says, and its text."""
    found: dict[str, dict[str, tuple[str, str]]] = {}
    current = None
    for line in in_section("twostep.yaml.5", "SECTIONS"):
        section = found.setdefault(line.subsection, {})
        if line.kind == "tag":
            match = re.fullmatch(r"([a-z_]+) \((.*)\)", line.text)
            assert match, f"twostep.yaml.5: {line.text!r} is not 'key (what, default VALUE)'"
            current = match[1]
            assert current not in section, f"twostep.yaml.5: {line.subsection}.{current} twice"
            section[current] = (match[2], "")
        elif current is not None and line.kind == "text":
            info, text = section[current]
            section[current] = (info, f"{text} {line.text}")
        elif line.kind == "break" and line.depth == 0:
            current = None
    found.pop("", None)
    return found


def _section_of(path: tuple[str, ...], sections: typing.Iterable[str]) -> str | None:
    matching = [s for s in sections if tuple(s.split(".")) == path[: len(s.split("."))]]
    return max(matching, key=len, default=None)


def default_in(info: str) -> str | None:
    match = re.search(r"(?:^|, )default (.*)$", info)
    return match[1] if match else None


def _place(path: tuple[str, ...], value: object) -> dict[str, Any]:
    data = copy.deepcopy(LEAST)
    node = data
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value
    return data


def _value(config: object, path: tuple[str, ...]) -> object:
    for part in path:
        config = getattr(config, part)
    return config


def test_the_renamed_paths_are_in_the_model() -> None:
    for path in (*RENAMED, *NOT_IN_FILE):
        cls: Any = model.Config
        for part in path:
            assert cls is not None and part in {f.name for f in dataclasses.fields(cls)}, path
            cls = _dataclass_in(typing.get_type_hints(cls)[part])


@pytest.mark.parametrize("name", KEYS)
def test_every_key_has_an_entry_in_its_section(name: str) -> None:
    entries = key_entries()
    path = KEYS[name].file
    section = _section_of(path, entries)
    assert section is not None, f"twostep.yaml.5 has no section for {name}"
    for key in path[len(section.split(".")) :]:  # daemon.verify.users: verify, then users
        assert key in entries[section], f"twostep.yaml.5: {name}: no {key} under {section}"


def test_every_entry_is_a_key() -> None:
    documented = key_entries()
    known = {(_section_of(key.file, documented), key.file[-1]) for key in KEYS.values()}
    for section, entries in documented.items():
        for key in entries:
            assert (section, key) in known, f"twostep.yaml.5: {section}: {key} is no key"


@pytest.mark.parametrize("name", [name for name, key in KEYS.items() if key.own_default])
def test_each_default_is_the_models(name: str) -> None:
    key = KEYS[name]
    entries = key_entries()
    info, text = entries[_section_of(key.file, entries) or ""][key.file[-1]]
    stated = default_in(info)
    if key.default is dataclasses.MISSING:
        if key.file in DEFAULTED_BY_PARSER:
            for (protocol, _), port in model.MAIL_PORTS.items():
                assert has_word(text, str(port)), f"twostep.yaml.5: {name}: {port} ({protocol})"
            return
        assert info == "required" or info.endswith(", required"), f"{name}: {info!r}"
        return
    assert stated is not None, f"twostep.yaml.5: {name} says no default"
    if key.default is None:
        assert stated == "none", f"twostep.yaml.5: {name}: the default is none, not {stated}"
        return
    config = parse_config(_place(key.file, yaml.safe_load(stated)))
    assert _value(config, key.model) == key.default, f"twostep.yaml.5: {name}: {stated}"


def policy_entries() -> dict[str, str]:
    found = {}
    for tag in tags("twostep.yaml.5", "POLICY SETTINGS"):
        match = re.fullmatch(r"([a-z_]+) \((.*)\)", tag)
        assert match, f"twostep.yaml.5: {tag!r} is not 'setting (what, default VALUE)'"
        found[match[1]] = match[2]
    return found


@pytest.mark.parametrize("field", [f.name for f in dataclasses.fields(Policy)])
def test_every_policy_setting_has_an_entry_with_its_default(field: str) -> None:
    entries = policy_entries()
    assert field in entries, f"twostep.yaml.5: policy setting {field} is missing"
    stated = default_in(entries[field])
    built_in = getattr(Policy(), field)
    assert stated is not None, f"twostep.yaml.5: {field} says no default"
    if stated == "none":
        assert built_in == 0, f"twostep.yaml.5: {field}: the default is {built_in}"
        return
    config = parse_config(_place(("policy", "defaults", field), yaml.safe_load(stated)))
    assert config.policy.defaults[field] == built_in, f"twostep.yaml.5: {field}: {stated}"


def test_every_policy_entry_is_a_setting_and_names_its_attribute() -> None:
    settings = {f.name for f in dataclasses.fields(Policy)}
    assert set(policy_entries()) <= settings
    text = " ".join(line.text for line in in_section("twostep.yaml.5", "POLICY SETTINGS"))
    for attribute in POLICY_ATTRIBUTES:
        assert has_word(text, attribute), f"twostep.yaml.5: {attribute} is not named"


def test_the_examples_are_configurations_the_parser_takes() -> None:
    source = (MAN / "twostep.yaml.5").read_text(encoding="utf-8")
    example = source.split(".SH EXAMPLES", 1)[1].split(".SH", 1)[0]
    least, more = (
        plain(block) for block in re.findall(r"^\.nf\n(.*?)^\.fi$", example, re.M | re.S)
    )
    config_from_yaml(least.encode())
    assert config_from_yaml((least + more).encode()).portal.trusted_proxies == 1


# -- every page --------------------------------------------------------------------------


@pytest.mark.parametrize("page", PAGES)
def test_the_title_line_has_the_date_and_the_version(page: str) -> None:
    title = next(line for line in (MAN / page).read_text().splitlines() if line.startswith(".TH"))
    name, number = page.rsplit(".", 1)
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert _arguments(title[4:])[:4] == [name.upper(), number, DATE, f"twostep {version}"]


@pytest.mark.parametrize("page", PAGES)
def test_no_line_is_longer_than_99_characters(page: str) -> None:
    for number, line in enumerate((MAN / page).read_text().splitlines(), 1):
        assert len(line) < 100, f"{page}:{number} is {len(line)} characters long"


@pytest.mark.parametrize("page", PAGES)
def test_groff_renders_it_without_a_warning(page: str) -> None:
    assert shutil.which("groff"), "groff is missing: apt-get install groff-base"
    result = subprocess.run(
        ["groff", "-man", "-Tutf8", "-ww", "-z", str(MAN / page)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode, result.stderr) == (0, "")


@pytest.mark.parametrize("page", PAGES)
def test_man_renders_it_without_a_warning(page: str) -> None:
    """As lintian checks a package's pages."""
    if not shutil.which("man"):
        pytest.skip("man-db is not installed")
    result = subprocess.run(
        ["man", "--warnings", "-E", "UTF-8", "-l", "-Tutf8", "-Z", str(MAN / page)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "LC_ALL": "C.UTF-8", "MANROFFSEQ": "", "MANWIDTH": "80"},
    )
    assert (result.returncode, result.stderr) == (0, "")


@pytest.mark.parametrize("page", PAGES)
def test_mandoc_finds_nothing_to_warn_of(page: str) -> None:
    """But the date: mandoc wants a day in it, and the pages are dated by the month."""
    if not shutil.which("mandoc"):
        pytest.skip("mandoc is not installed")
    result = subprocess.run(
        ["mandoc", "-T", "lint", "-W", "warning", str(MAN / page)],
        capture_output=True,
        text=True,
        check=False,
    )
    messages = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if not line.endswith(f"WARNING: cannot parse date, using it verbatim: TH {DATE}")
    ]
    assert messages == []
    assert result.returncode in (0, 2)  # 2: warnings, here only the date's
