"""The request schemas (pam_twostep/handlers/_schema.py): what each operation takes.

The checks are the protocol's promise to every client, so the table of fields is pinned
here in full; and whatever JSON object arrives, validation either gives the operation's
dataclass, with exactly the fields sent and the defaults for the rest, or raises
Malformed (which ``handle`` answers ``malformed``), never another exception.
"""

from __future__ import annotations

import dataclasses
import json
import typing

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pam_twostep.access import Right
from pam_twostep.handlers import OPS, SCHEMAS, SELF_SERVICE
from pam_twostep.handlers._schema import (
    Malformed,
    Request,
    SelfDisable,
    parse,
    parse_signed,
    schema_of,
)

STR, INT, BOOL, DICT = "str", "int", "bool", "dict"
_CONTEXT = (("service", STR, False, 64, 1), ("remote", STR, False, 64, 1))
_USER = (("user", STR, True, 512, 1),)
PINNED: dict[str, tuple[tuple[str, str, bool, int, int], ...]] = {
    "NoFields": (),
    "KeysReseal": (("after", STR, False, 4096, 1), ("limit", INT, False, 1024, 1)),
    "AccountPage": (("after", STR, False, 4096, 1), ("limit", INT, False, 1024, 1)),
    "ForUser": _USER,
    "Auth": (
        *_USER,
        ("password", STR, True, 1024, 1),
        ("service", STR, True, 64, 1),
        ("remote", STR, False, 64, 1),
        ("local", STR, False, 64, 1),
        ("secured", BOOL, False, 1024, 1),
        ("flow", STR, False, 16, 1),
        ("code", STR, False, 128, 1),
        ("device_token", STR, False, 128, 1),
        ("trust_device", BOOL, False, 1024, 1),
        ("device_label", STR, False, 128, 1),
        ("continuation", STR, False, 64, 1),
        ("mail_session", BOOL, False, 1024, 1),
        ("mail_bind", STR, False, 200, 1),
        ("mail_idle", INT, False, 1024, 1),
    ),
    "WebmailSession": (*_USER, ("credential", STR, True, 128, 1), ("remote", STR, False, 64, 1)),
    "ForSession": (*_USER, ("session_id", STR, True, 64, 1)),
    "ForStaleClient": (*_USER, ("stale_id", STR, True, 64, 1)),
    "EnrollBegin": (
        *_USER,
        ("password", STR, True, 1024, 1),
        ("code", STR, False, 64, 1),
        *_CONTEXT,
    ),
    "EnrollConfirm": (*_USER, ("code", STR, True, 64, 1), *_CONTEXT),
    "Disable": (*_USER, ("password", STR, False, 1024, 1), ("code", STR, False, 64, 1), *_CONTEXT),
    "SelfDisable": (
        *_USER,
        ("password", STR, True, 1024, 1),
        ("code", STR, False, 64, 1),
        *_CONTEXT,
    ),
    "PasscodeAdd": (
        *_USER,
        ("label", STR, True, 256, 1),
        ("services", STR, False, 512, 1),
        ("lifetime", INT, False, 1024, 1),
    ),
    "ForPasscode": (*_USER, ("label", STR, True, 256, 1)),
    "ForDevice": (*_USER, ("device", STR, True, 64, 1)),
    "PasswordChange": (
        *_USER,
        ("old", STR, True, 1024, 1),
        ("new", STR, True, 1024, 1),
        ("keep_device", STR, False, 64, 1),
        *_CONTEXT,
    ),
    "ImportAccount": (
        ("match_attribute", STR, True, 64, 1),
        ("match_value", STR, True, 512, 1),
        ("secret", STR, True, 128, 1),
        ("algorithm", STR, False, 8, 1),
        ("digits", INT, False, 1024, 1),
        ("period", INT, False, 1024, 1),
        ("last_step", INT, False, 1024, 0),
        ("window", INT, False, 1024, 0),
        ("backup_codes", STR, False, 2048, 1),
        ("policy", STR, False, 128, 1),
        ("source", STR, False, 512, 1),
        ("apply", BOOL, False, 1024, 1),
        ("replace", BOOL, False, 1024, 1),
    ),
    "PolicyName": (("name", STR, True, 128, 1),),
    "PolicyChange": (("name", STR, True, 128, 1), ("settings", DICT, False, 1024, 1)),
    "PolicyAssign": (*_USER, ("name", STR, False, 128, 1)),
}
OP_REQUESTS = {
    "ping": "NoFields",
    "auth": "Auth",
    "lookup": "ForUser",
    "stats": "NoFields",
    "session-end": "ForUser",
    "status": "ForUser",
    "enroll-begin": "EnrollBegin",
    "enroll-confirm": "EnrollConfirm",
    "disable": "Disable",
    "reset": "ForUser",
    "codes": "ForUser",
    "codes-regenerate": "ForUser",
    "passcode-add": "PasscodeAdd",
    "passcode-revoke": "ForPasscode",
    "passcode-revoke-all": "ForUser",
    "device-revoke": "ForDevice",
    "device-revoke-others": "ForDevice",
    "device-revoke-all": "ForUser",
    "unlock": "ForUser",
    "mail-password-end": "ForUser",
    "password-change": "PasswordChange",
    "import-account": "ImportAccount",
    "keys-status": "NoFields",
    "keys-reseal": "KeysReseal",
    "policy-list": "NoFields",
    "policy-show": "PolicyName",
    "policy-create": "PolicyChange",
    "policy-set": "PolicyChange",
    "policy-assign": "PolicyAssign",
    "webmail-check": "WebmailSession",
    "webmail-end": "WebmailSession",
    "webmail-session-revoke": "ForSession",
    "stale-client-dismiss": "ForStaleClient",
    "readiness": "AccountPage",
}
KINDS = sorted({*SCHEMAS.values(), *(h.request for h in SELF_SERVICE.values())}, key=str)


def _row(kind: type[Request]) -> tuple[tuple[str, str, bool, int, int], ...]:
    return tuple(
        (name, f.kind.__name__, f.required, f.max_length, f.minimum)
        for name, f in schema_of(kind).items()
    )


def test_every_operation_takes_the_fields_it_took() -> None:
    assert list(OPS) == list(OP_REQUESTS)
    assert {op: kind.__name__ for op, kind in SCHEMAS.items()} == OP_REQUESTS
    for kind in KINDS:
        assert _row(kind) == PINNED[kind.__name__], kind.__name__


def test_the_self_service_forms_take_the_admin_fields_and_a_session() -> None:
    assert set(SELF_SERVICE) <= set(OPS)
    for op, handler in SELF_SERVICE.items():
        if op == "disable":  # the user's own: the password is required
            assert handler.request is SelfDisable
            assert _row(SelfDisable) == tuple(
                (n, k, n == "password" or r, m, lo) for n, k, r, m, lo in _row(SCHEMAS[op])
            )
        else:
            assert handler.request is SCHEMAS[op], op
    assert {op for op, (right, _) in OPS.items() if right is Right.SELF_SERVICE} == {"session-end"}


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.__name__)
def test_each_field_is_typed_as_it_is_checked(kind: type[Request]) -> None:
    hints = typing.get_type_hints(kind)
    wire = {"str": str, "int": int, "bool": bool, "dict": dict}
    for name, spec in schema_of(kind).items():
        args = typing.get_args(hints[name]) or (hints[name],)
        bases = {typing.get_origin(a) or a for a in args} - {type(None)}
        assert bases == {wire[spec.kind.__name__]}, (kind.__name__, name, hints[name])
        if not spec.required:  # a missing optional field: its default, of its type or None
            default = next(f.default for f in dataclasses.fields(kind) if f.name == name)
            assert default is None or isinstance(default, spec.kind), (kind.__name__, name)


_FIELD_NAMES = sorted({name for kind in KINDS for name in schema_of(kind)} | {"op", "id", "x"})
_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**45), 2**45)
    | st.floats(allow_nan=False)
    | st.text(max_size=40)
    | st.sampled_from(["", "a" * 64, "a" * 65, "a" * 513, "\ud800", "mail"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=8,
)


@settings(max_examples=400, deadline=None)
@given(
    kind=st.sampled_from(KINDS),
    request=st.dictionaries(st.sampled_from(_FIELD_NAMES) | st.text(max_size=8), _JSON),
    signed=st.booleans(),
)
def test_any_json_object_is_the_request_or_malformed(
    kind: type[Request], request: dict[str, object], signed: bool
) -> None:
    json.dumps(request)  # as the wire would have decoded it
    try:
        if signed:
            values, session = parse_signed(kind, request)
            assert request["session"] == session
        else:
            values = parse(kind, request)
    except Malformed:
        return
    assert type(values) is kind
    schema = schema_of(kind)
    sent = {k: v for k, v in request.items() if k not in ("op", "id", "session")}
    assert set(sent) <= set(schema)
    for each in dataclasses.fields(kind):
        expected = sent.get(each.name, each.default)
        assert getattr(values, each.name) == expected, each.name


@settings(max_examples=200, deadline=None)
@given(kind=st.sampled_from(KINDS), data=st.data())
def test_a_request_of_good_values_is_taken(kind: type[Request], data: st.DataObject) -> None:
    request: dict[str, object] = {}
    for name, spec in schema_of(kind).items():
        if spec.required or data.draw(st.booleans()):
            if spec.kind is str:
                value: object = data.draw(st.text(max_size=spec.max_length))
            elif spec.kind is int:
                value = data.draw(st.integers(spec.minimum, spec.maximum))
            elif spec.kind is bool:
                value = data.draw(st.booleans())
            else:
                value = data.draw(st.dictionaries(st.text(max_size=8), st.integers(), max_size=64))
            request[name] = value
    values = parse(kind, {"op": "anything", "id": 7, **request})
    assert {k: getattr(values, k) for k in request} == request


@pytest.mark.parametrize(
    ("request_", "why"),
    [
        ({"x": 1}, "unknown field 'x'"),
        ({"user": "a" * 513}, "user: not a string of at most 512 characters"),
        ({"user": "\ud800"}, "user: not valid Unicode"),
        ({"user": "a", "label": "l", "lifetime": True}, "lifetime: not a whole number from 1"),
        ({"user": "a", "label": "l", "lifetime": 0}, "lifetime: not a whole number from 1"),
        ({"user": "a", "label": "l", "lifetime": 1 << 40}, "lifetime: not a whole number from 1"),
        ({"user": 1}, "user: not a string of at most 512 characters"),
        ({"services": "imap"}, "missing user, label"),
    ],
)
def test_the_log_says_which_check_failed(request_: dict[str, object], why: str) -> None:
    from pam_twostep.handlers._schema import PasscodeAdd

    with pytest.raises(Malformed) as caught:
        parse(PasscodeAdd, request_)
    assert str(caught.value) == why
