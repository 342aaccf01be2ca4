"""Mail client set-up files for a new application passcode (issue 18): an Apple
configuration profile (``.mobileconfig``, unsigned, for iOS and macOS Mail) and a file in
Thunderbird's autoconfig format (``clientConfig`` version 1.1, as the Mozilla wiki's
Thunderbird:Autoconfiguration:ConfigFileFormat defines it, ``password`` element included).

Pure: the site's ``mail_settings``, the user name, the passcode and its label in, bytes
out. Nothing is stored, read or logged here, so where the secret goes is decided by the
one caller, the portal's one-time handoff (``portal.profiles``): into the single response
that downloads it. ``plistlib`` and ``xml.etree`` write the files, so every value is
escaped by the format's own writer, never pasted into markup; text that no XML may carry
(control characters) is replaced first, since neither writer would make a valid file of it.

Both files log in with the account's user name, not the address: it is what Dovecot and
Postfix's SASL (through Dovecot) hand twostepd, and ``mail_settings.address`` may be a
template the directory knows nothing of. SMTP uses the same credentials as IMAP.
"""

from __future__ import annotations

import plistlib
import re
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass

from .config.model import MailServer, MailSettingsConfig

__all__ = ["MailFile", "address_for", "apple_profile", "thunderbird_config"]

APPLE_TYPE = "application/x-apple-aspen-config"
THUNDERBIRD_TYPE = "application/xml"

_SOCKET_TYPES = {"ssl": "SSL", "starttls": "STARTTLS", "none": "plain"}
"""``mail_settings`` security -> the autoconfig ``socketType`` (ConfigFileFormat)."""


@dataclass(frozen=True)
class MailFile:
    """One download: what is sent, as what, under which file name. ``repr`` hides the
    body, which holds the passcode."""

    body: bytes
    content_type: str
    filename: str

    def __repr__(self) -> str:
        return f"MailFile({self.content_type}, {self.filename!r}, {len(self.body)} bytes)"


def address_for(settings: MailSettingsConfig, user: str) -> str:
    """The account's email address: ``mail_settings.address`` with the user name in it."""
    return settings.address.replace("{user}", user)


def apple_profile(
    settings: MailSettingsConfig,
    user: str,
    passcode: str,
    label: str,
    *,
    new_uuid: Callable[[], uuid.UUID] = uuid.uuid4,
) -> MailFile:
    """An unsigned configuration profile with one ``com.apple.mail.managed`` payload
    (IMAP in, SMTP out). Its identifiers are drawn anew for every file (``new_uuid``):
    the profile is not meant to be updated in place, and a fixed identifier would let a
    second install replace the first device's account silently."""
    user, label = _text(user), _text(label)
    address = _text(address_for(settings, user))
    name = _text(settings.display_name) if settings.display_name else address
    profile_uuid, mail_uuid = str(new_uuid()).upper(), str(new_uuid()).upper()
    identifier = f"twostep.mail.{profile_uuid}"
    account = {
        "PayloadType": "com.apple.mail.managed",
        "PayloadVersion": 1,
        "PayloadIdentifier": f"{identifier}.account",
        "PayloadUUID": mail_uuid,
        "PayloadDisplayName": f"Mail for {label}",
        "EmailAccountType": "EmailTypeIMAP",
        "EmailAccountDescription": name,
        "EmailAddress": address,
        **_apple_server("Incoming", settings.imap, user),
        "IncomingPassword": passcode,
        **_apple_server("Outgoing", settings.smtp, user),
        "OutgoingPasswordSameAsIncomingPassword": True,
        "OutgoingPassword": passcode,
    }
    profile = {
        "PayloadType": "Configuration",
        "PayloadVersion": 1,
        "PayloadIdentifier": identifier,
        "PayloadUUID": profile_uuid,
        "PayloadDisplayName": f"{name}: {label}",
        "PayloadDescription": (
            f"Sets up {address} in Mail with the application passcode {label!r}. "
            "Removing this profile removes the account; revoking the passcode on the "
            "Account Security page stops it."
        ),
        "PayloadRemovalDisallowed": False,
        "PayloadContent": [account],
    }
    body = plistlib.dumps(profile, fmt=plistlib.FMT_XML, sort_keys=True)
    return MailFile(body, APPLE_TYPE, f"{_file_stem(label)}.mobileconfig")


def thunderbird_config(
    settings: MailSettingsConfig, user: str, passcode: str, label: str
) -> MailFile:
    """A ``clientConfig`` version 1.1 file: one IMAP ``incomingServer`` and one SMTP
    ``outgoingServer``, each with the optional ``password`` element the format defines,
    so the client has nothing to ask."""
    user, label = _text(user), _text(label)
    address = _text(address_for(settings, user))
    name = _text(settings.display_name) if settings.display_name else address
    _, at, domain = address.rpartition("@")
    domain = domain if at else settings.imap.host
    root = ET.Element("clientConfig", version="1.1")
    provider = ET.SubElement(root, "emailProvider", id=domain)
    ET.SubElement(provider, "domain").text = domain
    ET.SubElement(provider, "displayName").text = f"{name} ({label})"
    ET.SubElement(provider, "displayShortName").text = name
    for tag, kind, server in (
        ("incomingServer", "imap", settings.imap),
        ("outgoingServer", "smtp", settings.smtp),
    ):
        element = ET.SubElement(provider, tag, type=kind)
        ET.SubElement(element, "hostname").text = server.host
        ET.SubElement(element, "port").text = str(server.port)
        ET.SubElement(element, "socketType").text = _SOCKET_TYPES[server.security]
        ET.SubElement(element, "username").text = user
        ET.SubElement(element, "authentication").text = "password-cleartext"
        ET.SubElement(element, "password").text = passcode
    ET.indent(root)
    body = ET.tostring(root, encoding="UTF-8", xml_declaration=True) + b"\n"
    return MailFile(body, THUNDERBIRD_TYPE, f"{_file_stem(label)}-autoconfig.xml")


def _apple_server(side: str, server: MailServer, user: str) -> dict[str, object]:
    """One side's keys; ``UseSSL`` is TLS either way: Mail speaks STARTTLS on a plain
    port (143, 587) and TLS from the start on 993 and 465."""
    return {
        f"{side}MailServerHostName": server.host,
        f"{side}MailServerPortNumber": server.port,
        f"{side}MailServerUseSSL": server.security != "none",
        f"{side}MailServerAuthentication": "EmailAuthPassword",
        f"{side}MailServerUsername": user,
    }


def _text(value: str) -> str:
    """``value`` with what XML 1.0 cannot carry (control characters, lone surrogates)
    replaced: plistlib refuses such text and ElementTree would write a broken file."""
    return "".join(
        c if c.isprintable() and not 0xD800 <= ord(c) <= 0xDFFF else "\ufffd" for c in value
    )


def _file_stem(label: str) -> str:
    """A file name from the label that no browser or shell misreads (no path, quote or
    non-ASCII): the label's letters and digits, or ``mail``."""
    stem = re.sub(r"[^A-Za-z0-9]+", "-", label).strip("-")[:40].strip("-")
    return f"mail-{stem}" if stem else "mail"
