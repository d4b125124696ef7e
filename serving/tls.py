"""The HTTPS certificate and key of `brandforge serve`, checked before anything starts.

Ray Serve's proxy only reads the files once its actor is up, tens of seconds into a start, and
then logs a failure that the operator does not see; so the files are read and matched here
first, and a problem stops `brandforge serve` with one line that names the file and setting.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path

CERT_SETTING = "BRANDFORGE_TLS_CERT"
KEY_SETTING = "BRANDFORGE_TLS_KEY"
PASSWORD_SETTING = "BRANDFORGE_TLS_KEY_PASSWORD"


class TlsError(ValueError):
    """The certificate or key cannot serve HTTPS; the message names the file and the setting."""


@dataclass(frozen=True)
class TlsFiles:
    """A certificate (chain, PEM) and the private key that belongs to it, as absolute paths."""

    cert: Path
    key: Path
    password: str | None = field(default=None, repr=False)

    def http_options(self) -> dict[str, str]:
        """The `ssl_*` fields of Ray Serve's HTTPOptions (the proxy hands them to uvicorn)."""
        options = {"ssl_certfile": str(self.cert), "ssl_keyfile": str(self.key)}
        if self.password:
            options["ssl_keyfile_password"] = self.password
        return options


def _read(path: Path, setting: str, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise TlsError(
            f"{setting}={path}: cannot read the TLS {what} ({err.strerror or err})"
        ) from None


def _public_key_bytes(cert_pem: bytes, key_pem: bytes, files: TlsFiles) -> tuple[bytes, bytes]:
    """The certificate's and the key's public keys, each as DER, or a TlsError naming the file."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    der = serialization.Encoding.DER
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        raise TlsError(
            f"{CERT_SETTING}={files.cert}: not a PEM certificate "
            "(expected a '-----BEGIN CERTIFICATE-----' block)"
        ) from None
    password = files.password.encode() if files.password else None
    try:
        key = serialization.load_pem_private_key(key_pem, password=password)
    except TypeError as err:  # encrypted without a password, or a password for a plain key
        raise TlsError(f"{KEY_SETTING}={files.key}: {err} (see {PASSWORD_SETTING})") from None
    except ValueError:
        raise TlsError(
            f"{KEY_SETTING}={files.key}: not a PEM private key, or the password in "
            f"{PASSWORD_SETTING} is wrong"
        ) from None
    return cert.public_key().public_bytes(der, spki), key.public_key().public_bytes(der, spki)


def check_tls(cert: Path | None, key: Path | None, password: str | None = None) -> TlsFiles | None:
    """The HTTPS files to serve with, or None for plain HTTP (neither is set).

    Raises TlsError when only one is set, a file cannot be read or parsed, the key does not
    belong to the certificate, or Python's TLS stack refuses the pair.
    """
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        missing, given = (
            (CERT_SETTING, KEY_SETTING) if cert is None else (KEY_SETTING, CERT_SETTING)
        )
        raise TlsError(f"{given} is set but {missing} is not: HTTPS needs both files")
    files = TlsFiles(cert.expanduser().absolute(), key.expanduser().absolute(), password)
    cert_public, key_public = _public_key_bytes(
        _read(files.cert, CERT_SETTING, "certificate"), _read(files.key, KEY_SETTING, "key"), files
    )
    if cert_public != key_public:
        raise TlsError(
            f"{KEY_SETTING}={files.key} does not belong to the certificate "
            f"{CERT_SETTING}={files.cert} (their public keys differ)"
        )
    try:  # what uvicorn will do in the proxy: catches e.g. a key type the TLS library refuses
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
            files.cert, files.key, password
        )
    except ssl.SSLError as err:
        raise TlsError(f"{CERT_SETTING}={files.cert}, {KEY_SETTING}={files.key}: {err}") from None
    return files
