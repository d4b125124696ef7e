"""Banned terms (serving.policy, serving.campaigns.policy): whole words and phrases, through
case, Unicode forms, accents, invisible characters and punctuation, never inside a word."""

from __future__ import annotations

import pytest

from serving.campaigns.policy import campaign_violation
from serving.campaigns.spec import CampaignSpec
from serving.policy import BannedTerms, first_violation, words

DEMO = BannedTerms.of(["cheapest", "guaranteed", "miracle", "best price"])


@pytest.mark.parametrize(
    ("text", "term"),
    [
        ("the cheapest sofa", "cheapest"),
        ("CHEAPEST!", "cheapest"),
        ("Ｃｈｅａｐｅｓｔ sofa", "cheapest"),  # full-width forms (NFKC)
        ("chéapest sofa", "cheapest"),  # an accent added
        ("chea\u200bpest sofa", "cheapest"),  # a zero-width space inside
        ("chea\u00adpest", "cheapest"),  # a soft hyphen inside
        ("a Miracle.", "miracle"),
        ("the best   price", "best price"),
        ("the best-price deal", "best price"),
        ("BEST_PRICE", "best price"),
        ("best,\n price", "best price"),
        ("guaranteed", "guaranteed"),
    ],
)
def test_a_term_is_found_however_it_is_written(text: str, term: str) -> None:
    assert DEMO.first_in(text) == term


@pytest.mark.parametrize(
    "text",
    [
        "miracles happen",  # a longer word
        "nonmiracle",
        "the cheap sofa",
        "bestprice",  # a phrase's words run together are another word
        "best of the price",
        "",
    ],
)
def test_no_false_hit_inside_other_words_or_across_words(text: str) -> None:
    assert DEMO.first_in(text) is None


def test_terms_are_reported_as_written_and_empty_terms_are_ignored() -> None:
    banned = BannedTerms.of(["Free MONEY", "!!!", ""])
    assert banned.terms == (("Free MONEY", ("free", "money")),)
    assert banned.first_in("get free money now") == "Free MONEY"
    assert not BannedTerms.of(["..."])
    assert words("Straße ﬁne") == ("strasse", "fine")  # case folding, ligatures


def test_the_first_violation_names_the_field_and_the_source() -> None:
    lists = {"the brand kit of acme v1": DEMO, "the server's policy list": BannedTerms.of(["x9"])}
    found = first_violation({"prompt": "sofa", "negative_prompt": "no X9 please"}, lists)
    assert found is not None
    assert (found.term, found.field, found.source) == (
        "x9",
        "negative_prompt",
        "the server's policy list",
    )
    assert "negative_prompt uses the banned term 'x9'" in found.message
    assert first_violation({"prompt": "a calm sofa", "negative_prompt": None}, lists) is None


def _spec(**fields: object) -> CampaignSpec:
    return CampaignSpec.model_validate({"brand": "acme", "template": "{brand} poster", **fields})


def test_a_campaign_names_the_piece_that_holds_the_term() -> None:
    lists = {"kit": DEMO}
    spec = _spec(template="{product} at the best price", variables={"product": ["sofa"]})
    assert campaign_violation(spec, lists).field == "template"  # type: ignore[union-attr]
    spec = _spec(template="{brand} {product}", variables={"product": ["sofa", "miracle lamp"]})
    assert campaign_violation(spec, lists).field == "variables.product[1]"  # type: ignore[union-attr]
    spec = _spec(headline="Guaranteed fun")
    assert campaign_violation(spec, lists).field == "headline"  # type: ignore[union-attr]
    spec = _spec(negative_prompt="no cheapest look")
    assert campaign_violation(spec, lists).field == "negative_prompt"  # type: ignore[union-attr]


def test_a_term_formed_by_expansion_names_the_combination() -> None:
    spec = _spec(
        template="{brand} {adj} {noun} banner",
        variables={"adj": ["best", "calm"], "noun": ["-price", "sofa"]},
    )
    found = campaign_violation(spec, {"kit": DEMO})
    assert found is not None and found.term == "best price"
    assert found.field == "template of the items with adj='best', noun='-price'"
    clean = _spec(template="{brand} {adj} banner", variables={"adj": ["calm", "bold"]})
    assert campaign_violation(clean, {"kit": DEMO}) is None
    assert campaign_violation(spec, {"kit": BannedTerms.of([])}) is None
