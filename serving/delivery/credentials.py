"""C2PA content credentials: every delivered file signed with a manifest that says a trained
model made it, which model, from which dataset, as which asset.

The XMP manifest (`serving.delivery.manifest`) says the same things, but anyone can write XMP;
a C2PA manifest is signed with the operator's certificate, and it hashes the file's bytes, so
an edited picture (or a manifest copied onto another picture) reads as invalid. The manifest
holds:

| assertion                 | content                                                         |
|---------------------------|-----------------------------------------------------------------|
| `c2pa.actions.v2`         | `c2pa.created`, digitalSourceType `trainedAlgorithmicMedia`,    |
|                           | softwareAgent BrandForge, when                                  |
| `dev.brandforge.lineage`  | asset id, brand, model name and version, variant, dataset hash, |
|                           | created at (the XMP manifest's fields)                          |

Signing is the last step of delivery (`serving.delivery.deliver.Delivery.add`), after the XMP
manifest and the watermark are in the encoded bytes, since the signature covers the final
bytes. c2pa-python 0.38 (c2pa-rs 0.91) embeds a manifest in every format delivery encodes:
PNG (`caBX` chunk), JPEG (APP11), WebP (`C2PA` chunk), HEIC and MP4 (a `uuid` box), GIF (an
application extension) and SVG (a `<c2pa:manifest>` element), and the XMP and the watermark
stay readable after it; `SIGNED_FORMATS` lists them and a format outside it is delivered
unsigned with a warning. No thumbnail is embedded: the file is the picture, and a JPEG
thumbnail would add ~30 kB to every small asset.

Settings (`brandforge.settings`): `BRANDFORGE_C2PA_CERT` (PEM chain, end-entity certificate
first, then the CA certificates up to, not necessarily including, the root) and
`BRANDFORGE_C2PA_KEY` (its PEM private key, unencrypted: EC P-256/384/521, RSA or Ed25519),
and optionally `BRANDFORGE_C2PA_TSA_URL` (an RFC 3161 time-stamp authority; unset, nothing
here uses the network). Both unset: nothing is signed, and that is logged once. A file that is
missing, unreadable, not PEM, expired, self-signed, or a key that does not match the
certificate, is a `CredentialsError` at start-up naming the file (`credentials_from_settings`,
called by `brandforge serve` and by every replica), never a failure per request.
`brandforge credentials dev-cert` writes a development chain (`dev_certificate_chain`).
"""

from __future__ import annotations

import datetime as dt
import functools
import io
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from serving.delivery.formats import EXTENSIONS, MEDIA_TYPES, sniff_format
from serving.delivery.manifest import DIGITAL_SOURCE_TYPE
from serving.errors import Unavailable

if TYPE_CHECKING:
    from brandforge.settings import Settings

log = logging.getLogger(__name__)

SIGNED_FORMATS = ("png", "jpeg", "webp", "heic", "svg", "gif", "mp4")
LINEAGE_LABEL = "dev.brandforge.lineage"  # reverse domain of the XMP namespace brandforge.dev
LINEAGE_FIELDS = (
    "asset_id",
    "brand",
    "model_name",
    "model_version",
    "variant",
    "dataset_hash",
    "created_at",
)
# The failure code a signer outside the reader's trust list gets: reported as `trusted`,
# not as a reason for invalidity (c2pa keeps such a manifest "Valid").
UNTRUSTED = "signingCredential.untrusted"
_SIGN_SETTINGS = {"builder": {"thumbnail": {"enabled": False}}}
# Reading an untrusted file must not make us fetch what it points at.
_READ_SETTINGS = {"verify": {"remote_manifest_fetch": False, "ocsp_fetch": False}}


class CredentialsError(ValueError):
    """The configured certificate or key cannot sign: the message names the file and the fix."""


# --------------------------------------------------------------------------------------------
# The manifest (pure)
# --------------------------------------------------------------------------------------------


def c2pa_definition(manifest: Mapping[str, Any], fmt: str) -> dict[str, Any]:
    """The C2PA manifest definition of one delivered file, from its XMP manifest
    (`serving.delivery.manifest.build_manifest`)."""
    missing = [key for key in ("generator", *LINEAGE_FIELDS) if key not in manifest]
    if missing:
        raise ValueError(f"manifest lacks {', '.join(missing)}: build it with build_manifest()")
    agent = {"name": str(manifest["generator"]), "version": _version()}
    return {
        "claim_generator_info": [agent],
        "title": f"{manifest['asset_id']}{EXTENSIONS[fmt]}",
        "format": MEDIA_TYPES[fmt],
        "assertions": [
            {
                "label": "c2pa.actions.v2",
                "data": {
                    "actions": [
                        {
                            "action": "c2pa.created",
                            "digitalSourceType": DIGITAL_SOURCE_TYPE,
                            "softwareAgent": agent,
                            "when": manifest["created_at"],
                        }
                    ]
                },
            },
            {"label": LINEAGE_LABEL, "data": {key: manifest[key] for key in LINEAGE_FIELDS}},
        ],
    }


@functools.cache
def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("brandforge")
    except PackageNotFoundError:
        return "unknown"


# --------------------------------------------------------------------------------------------
# Signing
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SigningIdentity:
    """Who signs: what `load_credentials` checked in the certificate (for logs and /readyz)."""

    subject: str
    issuer: str
    algorithm: str
    not_after: dt.datetime


class ContentCredentials:
    """A checked certificate chain and key, ready to sign delivered files (one per process;
    c2pa's signer may be shared by threads)."""

    def __init__(
        self, *, chain: bytes, key: bytes, identity: SigningIdentity, tsa_url: str | None
    ) -> None:
        import c2pa

        self.identity = identity
        info = c2pa.C2paSignerInfo(identity.algorithm, chain, key, tsa_url)
        self._signer = c2pa.Signer.from_info(info)
        self._context = c2pa.Context.from_dict(_SIGN_SETTINGS)

    def sign(self, data: bytes, fmt: str, manifest: Mapping[str, Any]) -> bytes:
        """`data` (an encoded `fmt` file) with its C2PA manifest embedded and signed.

        Raises `Unavailable` when c2pa refuses (a time-stamp authority that does not answer):
        delivering the file unsigned would break the promise that every file is signed."""
        import c2pa

        if fmt not in SIGNED_FORMATS:
            log.warning("no C2PA manifest for %s files: delivered without one", fmt)
            return data
        out = io.BytesIO()
        try:
            with c2pa.Builder(c2pa_definition(manifest, fmt), context=self._context) as builder:
                builder.sign(self._signer, MEDIA_TYPES[fmt], io.BytesIO(data), out)
        except c2pa.C2paError as err:
            raise Unavailable(f"could not sign the {fmt} file's C2PA manifest: {err}") from err
        return out.getvalue()


def load_credentials(cert: Path, key: Path, *, tsa_url: str | None = None) -> ContentCredentials:
    """The certificate chain `cert` and private key `key`, checked, as a signer.

    Raises `CredentialsError` naming the file: unreadable, not PEM, an encrypted key, a key
    that does not match the end-entity certificate, a certificate outside its validity, or one
    c2pa refuses (self-signed, wrong key usage); the last is found by signing a tiny PNG."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    chain_pem, key_pem = _read(cert, "BRANDFORGE_C2PA_CERT"), _read(key, "BRANDFORGE_C2PA_KEY")
    try:
        chain = x509.load_pem_x509_certificates(chain_pem)
    except ValueError as err:
        raise CredentialsError(
            f"BRANDFORGE_C2PA_CERT {cert}: not a PEM certificate chain ({err})"
        ) from None
    try:
        private = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:
        raise CredentialsError(
            f"BRANDFORGE_C2PA_KEY {key}: the key is encrypted; give the unencrypted PEM "
            "(e.g. `openssl pkey -in KEY -out plain.pem`) in a file only the server can read"
        ) from None
    except ValueError as err:
        raise CredentialsError(
            f"BRANDFORGE_C2PA_KEY {key}: not a PEM private key ({err})"
        ) from None
    identity = _identity(chain[0], private, cert=cert, key=key)
    _self_test(chain_pem, key_pem, identity, cert=cert)
    return ContentCredentials(chain=chain_pem, key=key_pem, identity=identity, tsa_url=tsa_url)


def _read(path: Path, setting: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise CredentialsError(
            f"{setting} {path}: cannot read it ({err.strerror or err})"
        ) from None


def _identity(certificate: Any, private: Any, *, cert: Path, key: Path) -> SigningIdentity:
    """The signer's identity, once the end-entity certificate is in date and matches `private`."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    spki = (Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    if certificate.public_key().public_bytes(*spki) != private.public_key().public_bytes(*spki):
        raise CredentialsError(
            f"BRANDFORGE_C2PA_KEY {key} is not the key of the first certificate in "
            f"BRANDFORGE_C2PA_CERT {cert}: the chain must start with the signing certificate"
        )
    now = dt.datetime.now(dt.UTC)
    start, end = certificate.not_valid_before_utc, certificate.not_valid_after_utc
    if not start <= now <= end:
        raise CredentialsError(
            f"BRANDFORGE_C2PA_CERT {cert}: the certificate is valid from {start:%Y-%m-%d} to "
            f"{end:%Y-%m-%d}, not now: renew it"
        )
    return SigningIdentity(
        subject=certificate.subject.rfc4514_string(),
        issuer=certificate.issuer.rfc4514_string(),
        algorithm=_algorithm(private, key),
        not_after=end,
    )


def _algorithm(private: Any, key: Path) -> str:
    """The C2PA signing algorithm of a private key (RSA signs with PSS: C2PA forbids PKCS#1)."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if isinstance(private, ec.EllipticCurvePrivateKey):
        by_curve = {"secp256r1": "es256", "secp384r1": "es384", "secp521r1": "es512"}
        if private.curve.name in by_curve:
            return by_curve[private.curve.name]
        raise CredentialsError(
            f"BRANDFORGE_C2PA_KEY {key}: curve {private.curve.name} is not allowed by C2PA; "
            "use P-256, P-384 or P-521"
        )
    if isinstance(private, rsa.RSAPrivateKey):
        return "ps256"
    if isinstance(private, ed25519.Ed25519PrivateKey):
        return "ed25519"
    raise CredentialsError(
        f"BRANDFORGE_C2PA_KEY {key}: a {type(private).__name__} cannot sign C2PA manifests; "
        "use an EC (P-256/384/521), RSA or Ed25519 key"
    )


def _self_test(chain: bytes, key: bytes, identity: SigningIdentity, *, cert: Path) -> None:
    """Sign a tiny PNG (without a time-stamp authority: no network): c2pa checks the
    certificate's profile only when it signs."""
    from PIL import Image

    picture = io.BytesIO()
    Image.new("RGB", (8, 8)).save(picture, "PNG")
    test = ContentCredentials(chain=chain, key=key, identity=identity, tsa_url=None)
    manifest = {name: "self-test" for name in ("generator", *LINEAGE_FIELDS)}
    try:
        test.sign(picture.getvalue(), "png", manifest)
    except Unavailable as err:
        raise CredentialsError(
            f"BRANDFORGE_C2PA_CERT {cert}: c2pa refuses to sign with it ({err.__cause__}); it "
            "needs a certificate issued by a CA (not self-signed), with the digitalSignature key "
            "usage and an extended key usage c2pa accepts (emailProtection is one)"
        ) from None


# --------------------------------------------------------------------------------------------
# From settings: once per process
# --------------------------------------------------------------------------------------------


def credentials_from_settings(settings: Settings | None = None) -> ContentCredentials | None:
    """The signer the settings name, loaded once per process, or None when both
    BRANDFORGE_C2PA_CERT and BRANDFORGE_C2PA_KEY are unset (logged once).

    Raises `CredentialsError` for one without the other, or a file that cannot sign."""
    if settings is None:
        from brandforge.settings import get_settings

        settings = get_settings()
    cert, key = settings.c2pa_cert, settings.c2pa_key
    if cert is None and key is None:
        _say_unsigned()
        return None
    if cert is None or key is None:
        given, needed = ("CERT", "KEY") if key is None else ("KEY", "CERT")
        raise CredentialsError(
            f"BRANDFORGE_C2PA_{given} is set but BRANDFORGE_C2PA_{needed} is not: set both "
            "(the certificate chain and its private key), or neither to deliver unsigned files"
        )
    return _cached(cert.resolve(), key.resolve(), settings.c2pa_tsa_url)


@functools.lru_cache(maxsize=4)
def _cached(cert: Path, key: Path, tsa_url: str | None) -> ContentCredentials:
    credentials = load_credentials(cert, key, tsa_url=tsa_url)
    who = credentials.identity
    log.info(
        "C2PA content credentials: signing as %s (issued by %s, %s, valid until %s)%s",
        who.subject,
        who.issuer,
        who.algorithm,
        f"{who.not_after:%Y-%m-%d}",
        f", time-stamped by {tsa_url}" if tsa_url else "",
    )
    return credentials


@functools.cache
def _say_unsigned() -> None:
    log.warning(
        "C2PA content credentials are off: delivered files carry the XMP manifest and the "
        "watermark but no signed C2PA manifest. Set BRANDFORGE_C2PA_CERT and "
        "BRANDFORGE_C2PA_KEY (`brandforge credentials dev-cert` makes a development pair)"
    )


def credentials_state(settings: Settings | None = None) -> dict[str, Any]:
    """What /readyz reports: whether delivered files are signed, and as whom."""
    credentials = credentials_from_settings(settings)
    if credentials is None:
        return {"signing": False}
    who = credentials.identity
    return {"signing": True, "subject": who.subject, "not_after": who.not_after.isoformat()}


# --------------------------------------------------------------------------------------------
# Reading back
# --------------------------------------------------------------------------------------------


def read_credentials(data: bytes, *, trust_anchors: str | None = None) -> dict[str, Any]:
    """The C2PA validation of an encoded file: `credentials_report` of its manifest store,
    checked against the PEM CA certificates `trust_anchors` when given. Never fetches
    anything (remote manifests, OCSP). Raises ValueError for bytes of none of our formats."""
    import c2pa

    fmt = sniff_format(data)
    if fmt is None:
        raise ValueError(f"unrecognised file (first bytes {data[:12]!r})")
    settings: dict[str, Any] = dict(_READ_SETTINGS)
    if trust_anchors is not None:
        settings["trust"] = {"trust_anchors": trust_anchors}
    try:
        context = c2pa.Context.from_dict(settings)
        reader = c2pa.Reader.try_create(MEDIA_TYPES[fmt], io.BytesIO(data), None, context)
        if reader is None:
            return credentials_report(None, trust_checked=trust_anchors is not None)
        with reader:
            store = json.loads(reader.json())
    except c2pa.C2paError as err:
        return {**_EMPTY, "status": "invalid", "reason": f"unreadable C2PA manifest ({err})"}
    return credentials_report(store, trust_checked=trust_anchors is not None)


_EMPTY: dict[str, Any] = {
    "status": "none",
    "reason": None,
    "trusted": None,
    "signer": None,
    "actions": [],
    "lineage": None,
    "ai_generated": False,
}


def credentials_report(store: Mapping[str, Any] | None, *, trust_checked: bool) -> dict[str, Any]:
    """What a C2PA manifest store (c2pa's Reader JSON, or None) says.

    `status`: `none` (no manifest), `invalid` (`reason` lists the failed checks: a hash that
    no longer matches the bytes, a broken signature) or `valid`. `trusted`: whether the signer
    chains to the given trust anchors (None when none were given). `signer`, `actions`
    (action and digital source type), `lineage` (our assertion), and `ai_generated`: a valid
    manifest with a `c2pa.created` action from a trained algorithm.
    """
    if store is None:
        return dict(_EMPTY)
    manifest = store.get("manifests", {}).get(store.get("active_manifest"), {})
    results = (store.get("validation_results") or {}).get("activeManifest") or {}
    failures = [f for f in results.get("failure", []) if f.get("code") != UNTRUSTED]
    invalid = store.get("validation_state") == "Invalid"
    assertions = {a.get("label"): a.get("data") for a in manifest.get("assertions", [])}
    actions = [
        {"action": a.get("action"), "digital_source_type": a.get("digitalSourceType")}
        for label in ("c2pa.actions.v2", "c2pa.actions")
        for a in (assertions.get(label) or {}).get("actions", [])
    ]
    info = manifest.get("signature_info") or {}
    created = {"action": "c2pa.created", "digital_source_type": DIGITAL_SOURCE_TYPE}
    return {
        "status": "invalid" if invalid else "valid",
        "reason": "; ".join(f"{f.get('code')}: {f.get('explanation')}" for f in failures)
        or ("c2pa reports the manifest invalid" if invalid else None),
        "trusted": store.get("validation_state") == "Trusted" if trust_checked else None,
        "signer": {k: info.get(k) for k in ("common_name", "issuer", "alg", "time")} or None,
        "actions": actions,
        "lineage": assertions.get(LINEAGE_LABEL),
        "ai_generated": not invalid and created in actions,
    }
