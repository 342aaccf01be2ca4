"""The mail set-up files (mailprofiles): an Apple profile that plistlib reads back with
the com.apple.mail.managed keys Apple documents, a Thunderbird clientConfig 1.1 file with
the documented shape, and hostile user and label text that stays text."""

from __future__ import annotations

import itertools
import plistlib
import uuid
import xml.etree.ElementTree as ET
from typing import Any

import pytest

from pam_twostep.config.model import MailServer, MailSettingsConfig
from pam_twostep.mailprofiles import address_for, apple_profile, thunderbird_config

PASSCODE = "ABCD-EFGH-JKLM-NPQR"
SETTINGS = MailSettingsConfig(
    imap=MailServer("imap.example.org", 993, "ssl"),
    smtp=MailServer("smtp.example.org", 587, "starttls"),
    address="{user}@example.org",
    display_name="Example Mail",
)
HOSTILE = [
    '"><script>alert(1)</script>',
    "]]></string><key>IncomingPassword</key><string>x",
    "&amp; &lt; ' \" --> <!--",
    "tab\there\nnewline\x00nul\x1bescape\ud800",
    "../../etc/passwd",
    "Ünïcødé 📱 iPhone",
    "x" * 500,
]


def counting_uuids() -> Any:
    counter = itertools.count(1)
    return lambda: uuid.UUID(int=next(counter))


def profile(user: str = "alice", label: str = "iPhone", **kw: Any) -> dict[str, Any]:
    made = apple_profile(kw.pop("settings", SETTINGS), user, PASSCODE, label, **kw)
    assert made.content_type == "application/x-apple-aspen-config"
    loaded: dict[str, Any] = plistlib.loads(made.body, fmt=plistlib.FMT_XML)
    return loaded


def autoconfig(user: str = "alice", label: str = "Laptop", **kw: Any) -> ET.Element:
    made = thunderbird_config(kw.pop("settings", SETTINGS), user, PASSCODE, label)
    assert made.content_type == "application/xml"
    assert made.body.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")
    return ET.fromstring(made.body)  # noqa: S314 - made by our own code under test


# -- Apple ----------------------------------------------------------------------------

_MAIL_KEYS: dict[str, type] = {
    # Apple's Mail payload (developer.apple.com/documentation/devicemanagement/mail)
    "PayloadType": str,
    "PayloadVersion": int,
    "PayloadIdentifier": str,
    "PayloadUUID": str,
    "PayloadDisplayName": str,
    "EmailAccountType": str,
    "EmailAccountDescription": str,
    "EmailAddress": str,
    "IncomingMailServerHostName": str,
    "IncomingMailServerPortNumber": int,
    "IncomingMailServerUseSSL": bool,
    "IncomingMailServerAuthentication": str,
    "IncomingMailServerUsername": str,
    "IncomingPassword": str,
    "OutgoingMailServerHostName": str,
    "OutgoingMailServerPortNumber": int,
    "OutgoingMailServerUseSSL": bool,
    "OutgoingMailServerAuthentication": str,
    "OutgoingMailServerUsername": str,
    "OutgoingPassword": str,
    "OutgoingPasswordSameAsIncomingPassword": bool,
}


def test_the_profile_is_a_configuration_with_one_mail_payload() -> None:
    top = profile()
    assert top["PayloadType"] == "Configuration" and top["PayloadVersion"] == 1
    assert top["PayloadRemovalDisallowed"] is False
    assert top["PayloadDisplayName"] == "Example Mail: iPhone"
    uuid.UUID(top["PayloadUUID"])
    (mail,) = top["PayloadContent"]
    for key, kind in _MAIL_KEYS.items():
        assert type(mail[key]) is kind, key  # bool is not int here, nor int bool
    assert set(mail) == set(_MAIL_KEYS)
    assert mail["PayloadType"] == "com.apple.mail.managed"
    assert mail["EmailAccountType"] == "EmailTypeIMAP"
    assert mail["PayloadIdentifier"].startswith(top["PayloadIdentifier"] + ".")
    assert "iPhone" in mail["PayloadDisplayName"]
    uuid.UUID(mail["PayloadUUID"])


def test_the_profile_logs_in_with_the_user_name_and_the_passcode() -> None:
    (mail,) = profile()["PayloadContent"]
    assert mail["EmailAddress"] == "alice@example.org"
    assert mail["EmailAccountDescription"] == "Example Mail"
    assert mail["IncomingMailServerUsername"] == mail["OutgoingMailServerUsername"] == "alice"
    assert mail["IncomingPassword"] == mail["OutgoingPassword"] == PASSCODE
    assert mail["OutgoingPasswordSameAsIncomingPassword"] is True
    assert mail["IncomingMailServerAuthentication"] == "EmailAuthPassword"
    assert mail["OutgoingMailServerAuthentication"] == "EmailAuthPassword"
    assert (mail["IncomingMailServerHostName"], mail["IncomingMailServerPortNumber"]) == (
        "imap.example.org",
        993,
    )
    assert (mail["OutgoingMailServerHostName"], mail["OutgoingMailServerPortNumber"]) == (
        "smtp.example.org",
        587,
    )
    assert mail["IncomingMailServerUseSSL"] is True and mail["OutgoingMailServerUseSSL"] is True


def test_plain_servers_say_so_and_a_bare_address_is_the_user_name() -> None:
    lab = MailSettingsConfig(MailServer("127.0.0.1", 10143, "none"), MailServer("::1", 25, "none"))
    (mail,) = profile(settings=lab)["PayloadContent"]
    assert mail["IncomingMailServerUseSSL"] is False and mail["OutgoingMailServerUseSSL"] is False
    assert mail["EmailAddress"] == "alice" == mail["EmailAccountDescription"]
    assert address_for(lab, "bob") == "bob"


def test_identifiers_come_from_the_randomness_given() -> None:
    top = profile(new_uuid=counting_uuids())
    assert top["PayloadUUID"] == str(uuid.UUID(int=1)).upper()
    assert top["PayloadContent"][0]["PayloadUUID"] == str(uuid.UUID(int=2)).upper()
    first, second = profile(), profile()
    assert first["PayloadUUID"] != second["PayloadUUID"]
    assert first["PayloadIdentifier"] != second["PayloadIdentifier"]


def test_the_body_is_not_in_the_repr() -> None:
    made = apple_profile(SETTINGS, "alice", PASSCODE, "iPhone")
    assert PASSCODE in made.body.decode() and PASSCODE not in repr(made)
    assert made.filename == "mail-iPhone.mobileconfig"


# -- Thunderbird ---------------------------------------------------------------------


def test_the_autoconfig_file_has_the_documented_shape() -> None:
    root = autoconfig()
    assert root.tag == "clientConfig" and root.attrib == {"version": "1.1"}
    (provider,) = root
    assert provider.tag == "emailProvider" and provider.get("id") == "example.org"
    assert provider.findtext("domain") == "example.org"
    assert provider.findtext("displayName") == "Example Mail (Laptop)"
    (incoming,) = provider.findall("incomingServer")
    (outgoing,) = provider.findall("outgoingServer")
    assert incoming.get("type") == "imap" and outgoing.get("type") == "smtp"
    expected = {
        incoming: ("imap.example.org", "993", "SSL"),
        outgoing: ("smtp.example.org", "587", "STARTTLS"),
    }
    for server, (host, port, socket_type) in expected.items():
        assert [child.tag for child in server] == [
            "hostname",
            "port",
            "socketType",
            "username",
            "authentication",
            "password",
        ]
        assert server.findtext("hostname") == host
        assert server.findtext("port") == port
        assert server.findtext("socketType") == socket_type
        assert server.findtext("username") == "alice"
        assert server.findtext("authentication") == "password-cleartext"
        assert server.findtext("password") == PASSCODE


def test_plain_is_the_socket_type_in_clear_and_the_domain_falls_back_to_the_host() -> None:
    lab = MailSettingsConfig(MailServer("127.0.0.1", 10143, "none"), MailServer("::1", 25, "none"))
    provider = autoconfig(settings=lab)[0]
    assert provider.get("id") == "127.0.0.1" == provider.findtext("domain")
    assert {s.findtext("socketType") for s in provider.iter() if s.tag.endswith("Server")} == {
        "plain"
    }
    made = thunderbird_config(lab, "alice", PASSCODE, "Laptop")
    assert made.filename == "mail-Laptop-autoconfig.xml"


# -- hostile text ---------------------------------------------------------------------


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_labels_and_users_stay_text(text: str) -> None:
    top = profile(user=text, label=text)
    (mail,) = top["PayloadContent"]
    assert mail["IncomingPassword"] == PASSCODE  # no injected key replaced it
    assert set(mail) == set(_MAIL_KEYS)
    printable = "".join(c if c.isprintable() and c != "\ud800" else "\ufffd" for c in text)
    assert mail["IncomingMailServerUsername"] == printable
    assert printable in top["PayloadDisplayName"]
    provider = autoconfig(user=text, label=text)[0]
    assert provider.findtext("incomingServer/username") == printable
    assert provider.findtext("incomingServer/password") == PASSCODE
    assert len(provider.findall("incomingServer")) == 1
    assert printable in (provider.findtext("displayName") or "")
    for made in (
        apple_profile(SETTINGS, text, PASSCODE, text),
        thunderbird_config(SETTINGS, text, PASSCODE, text),
    ):
        name = made.filename
        assert name.isascii() and "/" not in name and '"' not in name and ".." not in name
        assert len(name) < 80
