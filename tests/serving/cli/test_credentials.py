"""`brandforge credentials dev-cert` / `check` and the C2PA lines of `brandforge provenance`:
the development chain signs files that the provenance command reports valid (and trusted with
--trust), invalid after an edit, or absent."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from serving.cli.credentials import credentials_app
from serving.cli.provenance import provenance_command
from serving.delivery.credentials import load_credentials
from serving.delivery.formats import encode_still
from serving.delivery.manifest import manifest_xmp
from tests.serving.delivery.test_credentials import MANIFEST, picture, png_with_pixels


def _provenance() -> typer.Typer:
    app = typer.Typer()
    app.command()(provenance_command)
    return app


@pytest.fixture
def dev_cert(tmp_path: Path) -> Path:
    result = CliRunner().invoke(credentials_app, ["dev-cert", "--out", str(tmp_path / "c2pa")])
    assert result.exit_code == 0, result.output
    return tmp_path / "c2pa"


def test_dev_cert_writes_a_chain_that_signs_and_an_owner_only_key(dev_cert: Path):
    files = sorted(p.name for p in dev_cert.iterdir())
    assert files == ["c2pa-chain.pem", "c2pa-dev-ca.pem", "c2pa-key.pem"]
    assert stat.S_IMODE((dev_cert / "c2pa-key.pem").stat().st_mode) == 0o600
    loaded = load_credentials(dev_cert / "c2pa-chain.pem", dev_cert / "c2pa-key.pem")
    assert loaded.identity.algorithm == "es256"

    again = CliRunner().invoke(credentials_app, ["dev-cert", "--out", str(dev_cert)])
    assert again.exit_code == 2 and "already exist: pass --force" in again.output
    forced = ["dev-cert", "--out", str(dev_cert), "--force"]
    assert CliRunner().invoke(credentials_app, forced).exit_code == 0


def test_check_loads_the_settings_certificate_or_names_what_is_wrong(
    dev_cert: Path, monkeypatch: pytest.MonkeyPatch
):
    from brandforge.settings import get_settings

    runner = CliRunner()
    monkeypatch.setenv("BRANDFORGE_C2PA_CERT", str(dev_cert / "c2pa-chain.pem"))
    monkeypatch.setenv("BRANDFORGE_C2PA_KEY", str(dev_cert / "c2pa-key.pem"))
    get_settings.cache_clear()
    good = runner.invoke(credentials_app, ["check"])
    assert good.exit_code == 0 and "BrandForge development C2PA signer" in good.output

    monkeypatch.setenv("BRANDFORGE_C2PA_KEY", str(dev_cert / "c2pa-dev-ca.pem"))  # not a key
    get_settings.cache_clear()
    bad = runner.invoke(credentials_app, ["check"])
    assert bad.exit_code == 2 and "c2pa-dev-ca.pem: not a PEM private key" in bad.output

    monkeypatch.delenv("BRANDFORGE_C2PA_CERT")
    monkeypatch.delenv("BRANDFORGE_C2PA_KEY")
    get_settings.cache_clear()
    unset = runner.invoke(credentials_app, ["check"])
    assert unset.exit_code == 1 and "are unset" in unset.output
    get_settings.cache_clear()


def test_provenance_shows_valid_invalid_and_absent_credentials(dev_cert: Path, tmp_path: Path):
    credentials = load_credentials(dev_cert / "c2pa-chain.pem", dev_cert / "c2pa-key.pem")
    unsigned = encode_still(picture(), "png", xmp=manifest_xmp(MANIFEST))
    signed = credentials.sign(unsigned, "png", MANIFEST)
    edited = picture()
    edited.putpixel((3, 3), (0, 255, 0))
    files = {"signed": signed, "edited": png_with_pixels(signed, edited), "unsigned": unsigned}
    for name, data in files.items():
        (tmp_path / f"{name}.png").write_bytes(data)
    trust = ["--trust", str(dev_cert / "c2pa-dev-ca.pem")]
    runner, app = CliRunner(), _provenance()

    valid = runner.invoke(app, [str(tmp_path / "signed.png"), *trust])
    assert valid.exit_code == 0, valid.output
    assert "AI-generated: yes (marked by: manifest and C2PA)" in valid.output
    assert "C2PA: valid, signed by BrandForge development C2PA signer" in valid.output
    assert "signer trusted" in valid.output and f"asset_id {MANIFEST['asset_id']}" in valid.output
    untrusted = runner.invoke(app, [str(tmp_path / "signed.png")])
    assert "signer not checked against trusted CAs" in untrusted.output

    invalid = runner.invoke(app, [str(tmp_path / "edited.png"), *trust])
    assert invalid.exit_code == 0
    assert "C2PA: INVALID: assertion.dataHash.mismatch" in invalid.output
    assert "marked by: manifest)" in invalid.output  # an invalid C2PA manifest vouches for nothing

    absent = runner.invoke(app, [str(tmp_path / "unsigned.png"), "--json"])
    assert json.loads(absent.stdout)["c2pa"]["status"] == "none"

    not_pem = runner.invoke(
        app, [str(tmp_path / "signed.png"), "--trust", str(tmp_path / "edited.png")]
    )
    assert not_pem.exit_code == 1 and "is not a readable PEM certificate file" in not_pem.output


def test_serve_refuses_to_start_with_a_certificate_it_cannot_read(
    cli: typer.Typer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from brandforge.settings import get_settings

    monkeypatch.setenv("BRANDFORGE_C2PA_CERT", str(tmp_path / "missing-chain.pem"))
    monkeypatch.setenv("BRANDFORGE_C2PA_KEY", str(tmp_path / "missing-key.pem"))
    # were the check to let it through, an unusable database stops it before Ray starts
    monkeypatch.setenv("BRANDFORGE_SERVING_DB", "nosuchdatabase://nowhere")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli, ["serve", "--dev"])
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    assert result.exit_code == 2, result.output
    assert f"BRANDFORGE_C2PA_CERT {tmp_path / 'missing-chain.pem'}: cannot read it" in result.output


def test_served_environment_gives_replicas_absolute_certificate_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from brandforge.settings import get_settings
    from serving.runtime import served_environment

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BRANDFORGE_C2PA_CERT", "c2pa/c2pa-chain.pem")
    monkeypatch.setenv("BRANDFORGE_C2PA_KEY", "c2pa/c2pa-key.pem")
    get_settings.cache_clear()
    try:
        env = dict(served_environment())
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    assert env["BRANDFORGE_C2PA_CERT"] == str(tmp_path / "c2pa" / "c2pa-chain.pem")
    assert env["BRANDFORGE_C2PA_KEY"] == str(tmp_path / "c2pa" / "c2pa-key.pem")
