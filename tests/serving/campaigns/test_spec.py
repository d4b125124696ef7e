"""A campaign's spec and its expansion (pure): what is refused at validation, and what it
expands to. Everything a client can send that would break or bloat the queue is refused here,
as a ValidationError (the API's 422) naming the field."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from serving.campaigns.spec import (
    MAX_ITEMS,
    MAX_VARIABLES,
    CampaignSpec,
    MotionSpec,
    expand,
    expanded_length,
    fill,
    ratio_size,
)
from serving.text import PROMPT_MAX

SPEC: dict[str, Any] = {
    "brand": "acme",
    "template": "{brand} {product} banner, {season} mood",
    "variables": {"product": ["shoes", "bags", "hats"], "season": ["spring", "autumn"]},
    "ratios": ["1:1", "9:16"],
    "variants": 2,
    "formats": ["png", "jpeg"],
    "headline": "{product} for {season}",
}


def refused(change: dict[str, Any]) -> str:
    """The validation error of SPEC with `change`, as text (fails if it is accepted)."""
    with pytest.raises(ValidationError) as err:
        CampaignSpec.model_validate({**SPEC, **change})
    return str(err.value)


def test_a_campaign_expands_to_every_combination_ratio_and_variant() -> None:
    spec = CampaignSpec.model_validate(SPEC)
    items = expand(spec)
    assert len(items) == spec.item_count() == 3 * 2 * 2 * 2
    assert len({i.key for i in items}) == len(items)
    assert expand(spec) == items  # keys and order depend on the spec alone
    prompts = {i.prompt for i in items}
    assert "acme shoes banner, autumn mood" in prompts and len(prompts) == 6
    assert {i.ratio for i in items} == {"1:1", "9:16"}
    assert fill(spec.headline, spec.brand, items[0].values) == "shoes for spring"


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"template": "{brand} {colour} banner"}, "{colour}"),
        ({"headline": "{price} off"}, "headline uses {price}"),
        ({"ratios": ["16x9"]}, "aspect ratio"),
        ({"variables": {"product": []}}, "no values"),
        ({"formats": ["bmp"]}, "formats"),
        ({"deadline": "2026-12-01T09:00:00"}, "time zone"),
        (
            {
                "variables": {"product": [f"p{i}" for i in range(200)], "season": ["a", "b"]},
                "variants": 16,
            },
            f"at most {MAX_ITEMS}",
        ),
        ({"colour": "teal"}, "colour"),
        ({"motion": {"frames": 10, "fps": 5, "duration_s": 1}}, "give two of frames"),
    ],
)
def test_a_bad_campaign_says_which_field_is_wrong(change: dict, words: str) -> None:
    assert words in refused(change)


@pytest.mark.parametrize(
    ("field", "text"),
    [
        ("template", "{brand:d} banner"),
        ("template", "{brand!z} banner"),
        ("template", "{brand!r} banner"),
        ("template", "{brand: >100000} banner"),
        ("template", "{product:{season}} banner"),
        ("headline", "{product!s}"),
        ("cta", "{season:>40}"),
    ],
)
def test_templates_take_plain_fields_only(field: str, text: str) -> None:
    # A format spec or a conversion used to pass validation and fail (500) at expansion, or
    # pad every prompt to 100,000 characters.
    message = refused({field: text})
    assert f"{field} uses" in message and "only plain fields" in message


@pytest.mark.parametrize("text", ["{product[0]} banner", "{product.upper} banner", "{} x", "{0}"])
def test_templates_cannot_index_or_use_positions(text: str) -> None:
    assert "template uses {" in refused({"template": text})


def test_the_expanded_prompts_fit_the_prompt_limit() -> None:
    long_values = {"product": ["x" * 200, "y"], "season": ["s"]}
    # 10 x 200 characters: exactly the limit
    at_limit = CampaignSpec.model_validate(
        {**SPEC, "template": "{product}" * 10, "variables": long_values, "headline": None}
    )
    assert max(len(i.prompt) for i in expand(at_limit)) == PROMPT_MAX
    message = refused(
        {"template": "{product}" * 10 + "!", "variables": long_values, "headline": None}
    )
    assert "template expands to texts of up to 2001 characters" in message
    assert f"at most {PROMPT_MAX}" in message
    headline = refused({"headline": "{product} {product} {product}", "variables": long_values})
    assert "headline expands to texts of up to 602 characters" in headline


def test_expanded_length_is_the_longest_expansion() -> None:
    spec = CampaignSpec.model_validate(SPEC)
    longest = {n: max(len(v) for v in vs) for n, vs in spec.variables.items()}
    longest["brand"] = len(spec.brand)
    assert expanded_length(spec.template, field="template", longest=longest) == max(
        len(i.prompt) for i in expand(spec)
    )
    assert expanded_length("{{literal}} {brand}", field="t", longest={"brand": 4}) == 14


@pytest.mark.parametrize(
    "change",
    [
        {"template": "   "},
        {"template": "acme\x00 banner"},
        {"template": "acme \ud800 banner"},
        {"variables": {"product": ["shoes", "  "], "season": ["spring"]}},
        {"variables": {"product": ["sh\x00oes"], "season": ["spring"]}},
        {"variables": {"product": ["\udfff"], "season": ["spring"]}},
        {"headline": " \n "},
        {"cta": "buy\x00"},
        {"negative_prompt": "blurry\x00"},
        {"name": "spring\udc00"},
        {"variables": {"product": ["x" * 201], "season": ["spring"]}},
    ],
)
def test_blank_nul_and_lone_surrogate_texts_are_refused(change: dict[str, Any]) -> None:
    refused(change)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"brand": "Acme"}, "brand"),
        ({"brand": "acme.eu"}, "brand"),
        ({"brand": "bases"}, "brand"),
        ({"variants": True}, "variants"),
        ({"size": "512"}, "size"),
        ({"seed": "7"}, "seed"),
        ({"guidance": float("nan")}, "guidance"),
        ({"guidance": float("inf")}, "guidance"),
        ({"motion": {"fps": float("inf")}}, "motion.fps"),
        ({"review": "yes"}, "review"),
        ({"template": 7}, "template"),
    ],
)
def test_types_are_strict_and_numbers_finite(change: dict[str, Any], field: str) -> None:
    assert field in refused(change)


def test_variables_are_bounded() -> None:
    many = {f"v{i}": ["a"] for i in range(MAX_VARIABLES + 1)}
    assert f"at most {MAX_VARIABLES}" in refused({"variables": many, "headline": None})
    assert "identifier" in refused({"variables": {"not a name": ["a"]}, "headline": None})


def test_a_loop_is_as_long_as_asked() -> None:
    assert MotionSpec().frame_count == 8
    assert MotionSpec(fps=12, duration_s=2).frame_count == 24
    assert MotionSpec(frames=16, fps=8).frame_count == 16
    assert MotionSpec(frames=16, fps=8, duration_s=2).frame_count == 16


def test_sizes_follow_the_ratio_on_a_grid_of_eight() -> None:
    assert ratio_size("1:1", 1024) == (1024, 1024)
    assert ratio_size("9:16", 1024) == (576, 1024)
    assert ratio_size("4:5", 1080) == (864, 1080)
    assert ratio_size("16:9", 128) == (128, 72)


def test_a_spec_from_json_round_trips() -> None:
    # The worker re-reads the stored spec (JSON): strict fields must still accept it.
    spec = CampaignSpec.model_validate(
        {**SPEC, "deadline": "2026-12-01T09:00:00Z", "guidance": 5, "motion": {"fps": 12}}
    )
    again = CampaignSpec.model_validate(spec.model_dump(mode="json"))
    assert again == spec
    assert CampaignSpec.model_validate_json(spec.model_dump_json()) == spec
