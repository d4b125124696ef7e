"""HTTPS: `serving.tls.check_tls` refuses a bad certificate or key in one line naming the file,
and the real API served with a self-signed certificate on loopback answers only over TLS."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from serving.tls import TlsError, check_tls
from tests.serving.api.conftest import serve_loopback
from tests.serving.certificates import ServerCertificate, make_server_certificate, write_other_key


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> ServerCertificate:
    return make_server_certificate(tmp_path_factory.mktemp("tls"))


def test_no_files_mean_plain_http_and_a_matching_pair_is_accepted(certificate) -> None:
    assert check_tls(None, None) is None
    files = check_tls(certificate.cert, certificate.key)
    assert files is not None
    assert files.http_options() == {
        "ssl_certfile": str(certificate.cert),
        "ssl_keyfile": str(certificate.key),
    }


def test_one_file_without_the_other_names_the_missing_setting(certificate) -> None:
    with pytest.raises(TlsError, match="BRANDFORGE_TLS_CERT is set but BRANDFORGE_TLS_KEY"):
        check_tls(certificate.cert, None)
    with pytest.raises(TlsError, match="BRANDFORGE_TLS_KEY is set but BRANDFORGE_TLS_CERT"):
        check_tls(None, certificate.key)


def test_an_unreadable_file_is_named(certificate, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.pem"
    with pytest.raises(TlsError) as err:
        check_tls(missing, certificate.key)
    assert f"BRANDFORGE_TLS_CERT={missing}: cannot read the TLS certificate" in str(err.value)
    with pytest.raises(TlsError, match=f"BRANDFORGE_TLS_KEY={missing}: cannot read"):
        check_tls(certificate.cert, missing)


def test_a_file_that_is_not_pem_is_named(certificate, tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    with pytest.raises(TlsError, match=f"BRANDFORGE_TLS_CERT={junk}: not a PEM certificate"):
        check_tls(junk, certificate.key)
    with pytest.raises(TlsError, match=f"BRANDFORGE_TLS_KEY={junk}: not a PEM private key"):
        check_tls(certificate.cert, junk)


def test_a_key_of_another_certificate_is_refused_naming_both(certificate, tmp_path) -> None:
    other = write_other_key(tmp_path / "other.key")
    with pytest.raises(TlsError) as err:
        check_tls(certificate.cert, other)
    assert str(err.value) == (
        f"BRANDFORGE_TLS_KEY={other} does not belong to the certificate "
        f"BRANDFORGE_TLS_CERT={certificate.cert} (their public keys differ)"
    )


def test_the_api_answers_over_https_only(api, certificate) -> None:
    from serving.api.create import create_api

    files = check_tls(certificate.cert, certificate.key)
    assert files is not None
    # after an HTTPS request uvicorn's shutdown waited 10 s for its connection (plain HTTP: none)
    options = {"timeout_graceful_shutdown": 1, **files.http_options()}
    with serve_loopback(create_api(api.services), **options) as url:
        assert url.startswith("https://127.0.0.1:")
        health = requests.get(f"{url}/healthz", verify=str(certificate.ca), timeout=10)
        assert health.status_code == 200 and health.json() == {"status": "ok"}
        queue = f"{url}/v1/review?limit=1"
        assert requests.get(queue, verify=str(certificate.ca), timeout=10).status_code == 401
        listed = requests.get(
            queue, headers=api.auth("reviewer"), verify=str(certificate.ca), timeout=10
        )
        assert listed.status_code == 200, listed.text
        # a client that does not trust the test CA refuses the server
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(f"{url}/healthz", timeout=10)
        # plain HTTP on the same port gets no answer
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(url.replace("https://", "http://") + "/healthz", timeout=10)
