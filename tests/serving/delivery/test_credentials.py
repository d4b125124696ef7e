"""C2PA content credentials (serving.delivery.credentials): files signed with a certificate
chain made here with `cryptography`, read back with c2pa's own Reader, tampered with, refused
at load time when the certificate or key cannot sign, and delivered signed by `Delivery`.
Through the real HTTP API on loopback: tests/serving/api/test_credentials.py."""

from __future__ import annotations

import datetime as dt
import io
import logging
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from serving.delivery.credentials import (
    LINEAGE_FIELDS,
    ContentCredentials,
    CredentialsError,
    credentials_from_settings,
    load_credentials,
    read_credentials,
)
from serving.delivery.deliver import Delivery, Drawing, Motion, Origin
from serving.delivery.dev_certificate import dev_certificate_chain
from serving.delivery.formats import encode_motion, encode_still
from serving.delivery.manifest import (
    DIGITAL_SOURCE_TYPE,
    build_manifest,
    manifest_xmp,
    read_manifest,
)

CREATED = {"action": "c2pa.created", "digital_source_type": DIGITAL_SOURCE_TYPE}
MANIFEST = build_manifest(
    asset_id="0f3c2a9e7b4d4c1a8e2f6b5d9c0a1e37",
    brand="acme",
    model_name="brandforge-acme",
    model_version="3",
    variant="canary",
    dataset_hash="md5:5d41402abc4b2a76b9719d911017c592",
    created_at=dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.UTC),
)


@dataclass(frozen=True)
class Signing:
    cert: Path
    key: Path
    ca: str  # the CA certificate, PEM: the reader's trust anchor
    credentials: ContentCredentials


@pytest.fixture(scope="session")
def signing(tmp_path_factory: pytest.TempPathFactory) -> Signing:
    """A development CA and signing certificate (EC P-256), as files, loaded once."""
    root = tmp_path_factory.mktemp("c2pa")
    chain = dev_certificate_chain(days=2)
    (root / "chain.pem").write_bytes(chain.chain)
    (root / "key.pem").write_bytes(chain.key)
    credentials = load_credentials(root / "chain.pem", root / "key.pem")
    return Signing(root / "chain.pem", root / "key.pem", chain.ca.decode(), credentials)


def picture(size: int = 48) -> Image.Image:
    y, x = np.mgrid[0:size, 0:size]
    rgb = np.stack([x * 5, y * 5, (x + y) * 2], axis=-1) % 256
    return Image.fromarray(rgb.astype(np.uint8))


def encoded(fmt: str) -> bytes:
    xmp = manifest_xmp(MANIFEST)
    if fmt in ("gif", "mp4"):
        return encode_motion([picture(), picture().rotate(90)], fmt, fps=4, xmp=xmp)
    return encode_still(picture(), fmt, xmp=xmp)


# -- signing and reading back -----------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
def test_signed_still_reads_back_valid_with_its_action_and_lineage(signing, fmt):
    signed = signing.credentials.sign(encoded(fmt), fmt, MANIFEST)
    found = read_credentials(signed, trust_anchors=signing.ca)
    assert found["status"] == "valid" and found["reason"] is None
    assert found["trusted"] is True and found["ai_generated"] is True
    assert found["actions"] == [CREATED]
    assert found["lineage"] == {key: MANIFEST[key] for key in LINEAGE_FIELDS}
    assert found["signer"]["common_name"] == "BrandForge development C2PA signer"
    assert read_manifest(signed) == read_manifest(encoded(fmt))  # the XMP is still there
    with Image.open(io.BytesIO(signed)) as image:  # and the picture is unchanged
        assert np.array_equal(np.asarray(image), np.asarray(Image.open(io.BytesIO(encoded(fmt)))))


@pytest.mark.parametrize("fmt", ["heic", "svg", "gif", "mp4"])
def test_the_other_delivered_formats_are_signed_too(signing, fmt):
    signed = signing.credentials.sign(encoded(fmt), fmt, MANIFEST)
    found = read_credentials(signed)
    assert found["status"] == "valid" and found["lineage"]["asset_id"] == MANIFEST["asset_id"]
    assert found["trusted"] is None  # no trust anchors given: the signer is not judged
    assert read_manifest(signed)["asset_id"] == MANIFEST["asset_id"]


def test_unsigned_file_has_no_credentials_and_a_foreign_ca_does_not_trust_ours(signing):
    assert read_credentials(encoded("png"))["status"] == "none"
    other_ca = dev_certificate_chain(organisation="Someone else").ca.decode()
    found = read_credentials(
        signing.credentials.sign(encoded("png"), "png", MANIFEST), trust_anchors=other_ca
    )
    assert found["status"] == "valid" and found["trusted"] is False


# -- tampering --------------------------------------------------------------------------------


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    chunks, at = [], 8
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        chunks.append((data[at + 4 : at + 8], data[at + 8 : at + 8 + length]))
        at += 12 + length
    return chunks


def png_with_pixels(signed: bytes, image: Image.Image) -> bytes:
    """`signed` with its image data replaced by `image`'s, every other chunk (the C2PA one
    included) kept: an edit that leaves the manifest in place."""
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    new_data = b"".join(body for kind, body in png_chunks(buffer.getvalue()) if kind == b"IDAT")
    out, wrote = [signed[:8]], False
    for kind, body in png_chunks(signed):
        if kind == b"IDAT":
            if wrote:
                continue
            kind, body, wrote = b"IDAT", new_data, True
        crc = zlib.crc32(kind + body).to_bytes(4, "big")
        out.append(struct.pack(">I", len(body)) + kind + body + crc)
    return b"".join(out)


def test_edited_pixels_of_a_signed_png_make_its_manifest_invalid(signing):
    signed = signing.credentials.sign(encoded("png"), "png", MANIFEST)
    edited = picture()
    edited.putpixel((10, 10), (255, 0, 255))
    tampered = png_with_pixels(signed, edited)
    assert Image.open(io.BytesIO(tampered)).getpixel((10, 10)) == (255, 0, 255)
    found = read_credentials(tampered, trust_anchors=signing.ca)
    assert found["status"] == "invalid" and "assertion.dataHash.mismatch" in found["reason"]
    assert found["ai_generated"] is False  # an invalid manifest vouches for nothing


@pytest.mark.parametrize(("fmt", "picture_data"), [("jpeg", b"\xff\xda"), ("webp", b"VP8")])
def test_a_changed_byte_of_a_signed_still_makes_its_manifest_invalid(signing, fmt, picture_data):
    signed = bytearray(signing.credentials.sign(encoded(fmt), fmt, MANIFEST))
    signed[signed.index(picture_data) + 40] ^= 0x5A  # inside the compressed picture
    found = read_credentials(bytes(signed))
    assert found["status"] == "invalid" and "dataHash.mismatch" in found["reason"]


# -- loading the certificate and key ----------------------------------------------------------


def certificate(*, days: tuple[int, int], self_signed: bool = False) -> tuple[bytes, bytes]:
    """(chain PEM, key PEM) of a signer whose validity runs from `days[0]` to `days[1]` days
    from now, issued by a throw-away CA (or by itself)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    ca_key = key if self_signed else ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "signer")])
    issuer = name if self_signed else x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ca")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + dt.timedelta(days=days[0]))
        .not_valid_after(now + dt.timedelta(days=days[1]))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), False)
        .sign(ca_key, hashes.SHA256())
    )
    plain = serialization.NoEncryption()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, plain)
    return cert.public_bytes(serialization.Encoding.PEM), pem


def _write(tmp_path: Path, chain: bytes, key: bytes) -> tuple[Path, Path]:
    (tmp_path / "chain.pem").write_bytes(chain)
    (tmp_path / "key.pem").write_bytes(key)
    return tmp_path / "chain.pem", tmp_path / "key.pem"


def test_unusable_certificates_and_keys_are_refused_naming_the_file(signing, tmp_path):
    good_chain, good_key = signing.cert.read_bytes(), signing.key.read_bytes()
    cases: dict[str, tuple[bytes, bytes, str]] = {
        "missing": (good_chain, good_key, "cannot read it"),
        "garbage cert": (b"hello", good_key, "not a PEM certificate chain"),
        "garbage key": (good_chain, b"-----BEGIN PRIVATE KEY-----\nAAAA\n", "not a PEM private"),
        "other key": (good_chain, certificate(days=(-1, 1))[1], "is not the key of the first"),
        "expired": (*certificate(days=(-30, -1)), "not now: renew it"),
        "self-signed": (*certificate(days=(-1, 1), self_signed=True), "c2pa refuses"),
    }
    for case, (chain, key, expected) in cases.items():
        folder = tmp_path / case.replace(" ", "-")
        folder.mkdir()
        cert_path, key_path = _write(folder, chain, key)
        if case == "missing":
            key_path = folder / "absent.pem"
        with pytest.raises(CredentialsError) as refused:
            load_credentials(cert_path, key_path)
        message = str(refused.value)
        assert expected in message, case
        named = key_path if "key" in case or case == "missing" else cert_path
        assert str(named) in message, case


def test_settings_name_both_files_or_neither(signing, caplog):
    from brandforge.settings import Settings
    from serving.delivery import credentials as module

    with pytest.raises(
        CredentialsError, match="BRANDFORGE_C2PA_CERT is set but BRANDFORGE_C2PA_KEY"
    ):
        credentials_from_settings(Settings(c2pa_cert=signing.cert))
    module._say_unsigned.cache_clear()
    with caplog.at_level(logging.WARNING, logger=module.__name__):
        assert credentials_from_settings(Settings()) is None
        assert credentials_from_settings(Settings()) is None
    assert [r.message.count("C2PA content credentials are off") for r in caplog.records] == [1]
    loaded = credentials_from_settings(Settings(c2pa_cert=signing.cert, c2pa_key=signing.key))
    assert loaded is credentials_from_settings(
        Settings(c2pa_cert=signing.cert, c2pa_key=signing.key)
    )


# -- delivery ---------------------------------------------------------------------------------


class MemoryStore(dict[str, bytes]):
    def put(self, key: str, data: bytes) -> None:
        self[key] = data

    def delete(self, key: str) -> bool:
        return self.pop(key, None) is not None


def test_delivery_signs_the_final_bytes_of_stills_and_motion(signing):
    store = MemoryStore()
    origin = Origin("acme", "brandforge-acme", "3", "champion", "md5:abc")
    delivery = Delivery(
        store=store, origin=origin, request_id="r1", credentials=signing.credentials
    )
    drawing = Drawing(prompt="banner", seed=1, steps=2, guidance=2.0)
    still = delivery.add(picture(), fmt="webp", drawing=drawing, compliance={})
    motion = Motion([picture(), picture().rotate(90)], fps=4)
    loop = delivery.add(motion, fmt="mp4", drawing=drawing, compliance={})
    for done in (still, loop):
        found = read_credentials(store[done.key], trust_anchors=signing.ca)
        assert found["status"] == "valid" and found["trusted"], done.format
        assert (
            found["lineage"]["asset_id"]
            == done.asset_id
            == read_manifest(store[done.key])["asset_id"]
        )
        assert found["lineage"]["dataset_hash"] == "md5:abc"
