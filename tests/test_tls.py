"""The lab's private CA: what the TLS tests of the directory layer trust and refuse."""

from __future__ import annotations

import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec

from pam_twostep.lab.tls import make_certificates


def verify_directly_issued_by(certificate: x509.Certificate, issuer: x509.Certificate) -> None:
    """``Certificate.verify_directly_issued_by`` (cryptography 40) for Debian 12's 38: the
    issuer's name, then its signature (ValueError, InvalidSignature)."""
    if certificate.issuer != issuer.subject:
        raise ValueError("issued by another name")
    key = issuer.public_key()
    algorithm = certificate.signature_hash_algorithm
    assert isinstance(key, ec.EllipticCurvePublicKey) and algorithm is not None
    key.verify(certificate.signature, certificate.tbs_certificate_bytes, ec.ECDSA(algorithm))


def test_a_server_certificate_signed_by_its_ca(tmp_path: Path) -> None:
    files = make_certificates(tmp_path / "tls", names=["127.0.0.1", "ldap.example.org"])
    ca = x509.load_pem_x509_certificate(files.ca.read_bytes())
    server = x509.load_pem_x509_certificate(files.certificate.read_bytes())
    verify_directly_issued_by(server, ca)
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert names.get_values_for_type(x509.DNSName) == ["ldap.example.org"]
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert stat.S_IMODE(files.key.stat().st_mode) == 0o600


def test_every_call_makes_a_new_ca(tmp_path: Path) -> None:
    first = make_certificates(tmp_path / "a")
    second = make_certificates(tmp_path / "b")
    assert first.ca.read_bytes() != second.ca.read_bytes()
    other_ca = x509.load_pem_x509_certificate(second.ca.read_bytes())
    server = x509.load_pem_x509_certificate(first.certificate.read_bytes())
    with pytest.raises(InvalidSignature):
        verify_directly_issued_by(server, other_ca)
