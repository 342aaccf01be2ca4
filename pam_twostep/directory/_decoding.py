"""Search entries decoded as far as the directory package reads them, and no further.

ldap3 turns each searchResEntry into a dict with ``raw_attributes`` (the values as
bytes) and ``attributes`` (every value decoded again, by schema and formatter). Every
reader here takes the raw values (``_answers.raw_entry``) and parses them itself, so the
second decoding was pure cost: about a tenth of twostepd's CPU per login, most of it
in ``to_unicode`` and ``get_config_parameter`` calls. ``install`` replaces ldap3's
function where its strategies call it (``ldap3.strategy.base``, as of ldap3 2.9) with
one that leaves ``attributes`` undecoded (the raw values under the same names);
``dn``, ``raw_dn`` and ``raw_attributes`` are built by ldap3's own helpers, so they are
what they were. A test compares the two on real entries; an ldap3 that moved the call
would fail every search in the tests.
"""

from __future__ import annotations

from typing import Any

import ldap3.strategy.base as _strategy
from ldap3.operation.search import decode_raw_vals_fast
from ldap3.utils.conv import to_unicode

__all__ = ["entry_without_decoding", "install"]


def entry_without_decoding(
    response: Any, schema: object, custom_formatter: object, check_names: object
) -> dict[str, Any]:
    """ldap3's ``search_result_entry_response_to_dict_fast`` without the decoding of
    ``attributes``. Names are kept as the server spelt them (``raw_entry`` lower-cases
    them); the directory's connections do not ask ldap3 to add empty lists for missing
    attributes (``return_empty_attributes=False``), which under another spelling would
    make an empty twin of an attribute that has values."""
    raw_dn = response[0][3]
    raw = {
        to_unicode(attribute[3][0][3], from_server=True): decode_raw_vals_fast(attribute[3][1][3])
        for attribute in response[1][3]
    }
    # the same names over copies of the lists: ldap3's range handling edits both dicts
    # by name and extends their lists one by one
    attributes = {name: None if values is None else list(values) for name, values in raw.items()}
    return {
        "raw_dn": raw_dn,
        "dn": to_unicode(raw_dn, from_server=True),
        "raw_attributes": raw,
        "attributes": attributes,
    }


def install() -> None:
    _strategy.search_result_entry_response_to_dict_fast = entry_without_decoding
