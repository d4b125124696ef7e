"""A development certificate chain for C2PA content credentials
(`brandforge credentials dev-cert`; the tests' signer).

A real deployment signs with a certificate from a CA that C2PA readers trust (see the README,
"Content credentials"); this one is trusted only by a reader told to (`brandforge provenance
FILE --trust ca.pem`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DevChain:
    """A development CA and a signing certificate it issued, as PEM."""

    chain: bytes  # signing certificate, then the CA: what BRANDFORGE_C2PA_CERT names
    key: bytes  # the signing certificate's private key: BRANDFORGE_C2PA_KEY
    ca: bytes  # the CA alone: the trust anchor for `brandforge provenance --trust`


def dev_certificate_chain(
    *, organisation: str = "BrandForge development", days: int = 90
) -> DevChain:
    """A fresh EC P-256 CA and an end-entity certificate for signing C2PA manifests (key usage
    digitalSignature, extended key usage emailProtection), valid for `days` from an hour ago.
    (c2pa-rs 0.91 refuses documentSigning, RFC 9336's usage, as a C2PA signer's.)

    For local use and tests only: readers trust it only when told to (`--trust`)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    if not 1 <= days <= 3650:
        raise ValueError(f"days must be within 1..3650, got {days}")
    now = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)

    def name(common: str) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, common),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
            ]
        )

    def usage(*, sign: bool, ca: bool) -> x509.KeyUsage:
        return x509.KeyUsage(sign, False, False, False, False, ca, ca, False, False)

    ca_key, signer_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    ca_name = name(f"{organisation} CA")
    ca = (
        _certificate(ca_name, ca_name, ca_key.public_key(), now, days)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage(sign=False, ca=True), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    signing = (
        _certificate(
            name(f"{organisation} C2PA signer"), ca_name, signer_key.public_key(), now, days
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage(sign=True, ca=False), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return DevChain(
        chain=signing.public_bytes(pem) + ca.public_bytes(pem),
        key=signer_key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        ca=ca.public_bytes(pem),
    )


def _certificate(subject: Any, issuer: Any, public: Any, start: dt.datetime, days: int) -> Any:
    from cryptography import x509

    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
    )
