from pathlib import Path

import pytest

from brandforge.params import ParamsError, load_params, parse_params

ROOT = Path(__file__).resolve().parents[2]


def test_the_repository_params_file_is_valid_and_matches_the_code_defaults():
    params = load_params(ROOT / "params.yaml")
    assert params.data.brand == "acme"
    assert params.base.model == "embedded"
    # params.yaml spells out every key; the code defaults must agree with it
    assert params == parse_params({})


def test_unknown_key_is_an_error_naming_it():
    with pytest.raises(ParamsError) as err:
        parse_params({"train": {"rnak": 8}})
    assert "train.rnak: unknown key" in str(err.value)


def test_nested_unknown_key_and_wrong_type_are_all_reported():
    with pytest.raises(ParamsError) as err:
        parse_params({"train": {"rank": "eight", "evidence": {"seed": [1]}}, "bogus": {}})
    message = str(err.value)
    assert "3 invalid setting(s)" in message
    assert "train.rank" in message and "'eight'" in message
    assert "train.evidence.seed: unknown key" in message
    assert "bogus: unknown key" in message


def test_out_of_range_values_are_rejected():
    with pytest.raises(ParamsError, match=r"train\.learning_rate"):
        parse_params({"train": {"learning_rate": 0}})
    with pytest.raises(ParamsError, match=r"train\.mixed_precision"):
        parse_params({"train": {"mixed_precision": "fp8"}})
    with pytest.raises(ParamsError, match=r"data\.brand"):
        parse_params({"data": {"brand": "../etc"}})


@pytest.mark.parametrize("key", ["brand", "demo_brand"])
@pytest.mark.parametrize("bad", ["Acme", "acme.eu", "bases", "-acme", "x" * 65, 7, ""])
def test_brand_names_follow_the_one_brand_rule(key, bad):
    # the rule of brandforge.names.Brand: lower case, digits, - and _, `bases` reserved, strict str
    with pytest.raises(ParamsError, match=rf"data\.{key}"):
        parse_params({"data": {key: bad}})
    assert getattr(parse_params({"data": {key: "acme_eu-2"}}).data, key) == "acme_eu-2"


def test_params_are_frozen():
    params = parse_params({})
    with pytest.raises(Exception):  # noqa: B017 - pydantic raises ValidationError on assignment
        params.train.rank = 4  # type: ignore[misc]


def test_file_errors_name_the_file(tmp_path: Path):
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "missing.yaml")
    bad = tmp_path / "params.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ParamsError, match=f"{bad}: not valid YAML"):
        load_params(bad)
    bad.write_text("train:\n  rank: 0\n")
    with pytest.raises(ParamsError, match=f"{bad}: 1 invalid"):
        load_params(bad)


def test_unquoted_yaml_no_means_no_mixed_precision():
    # `dvc exp run -S` rewrites params.yaml and drops the quotes around "no"
    assert parse_params({"train": {"mixed_precision": False}}).train.mixed_precision == "no"
    with pytest.raises(ParamsError, match="mixed_precision"):
        parse_params({"train": {"mixed_precision": True}})


def test_the_register_section_sets_the_size_limit_of_registered_versions():
    assert parse_params({}).registration.max_size is None
    assert parse_params({"register": {"max_size": 1024}}).registration.max_size == 1024
    with pytest.raises(ParamsError, match=r"register\.max_size"):
        parse_params({"register": {"max_size": 4}})
