from training.summary import format_summary

TRAIN = {"brand": "acme", "steps": 10, "model_uri": "models:/m-1", "mlflow_run_id": "r1"}
AB = {"champion": 0.4, "challenger": 0.7, "delta": 0.3, "delta_ci95": [0.2, 0.4]}
EVAL = {
    "champion": "brandforge-acme v3",
    "challenger": "models:/m-1",
    "gate": {"decision": "reject", "reasons": ["forbidden-colour area grew"]},
    "ab": {"compliance_score": AB, "palette_adherence": AB},
}


def test_the_summary_shows_the_ab_and_gate_of_this_adapter():
    text = format_summary(TRAIN, evaluation=EVAL)
    assert "compliance_score 0.4 (brandforge-acme v3) -> 0.7 (adapter)" in text
    assert "gate:      REJECT: forbidden-colour area grew" in text


def test_an_evaluation_of_another_adapter_is_not_shown():
    assert "gate:" not in format_summary(TRAIN, evaluation={**EVAL, "challenger": "models:/m-0"})


def test_the_summary_names_the_registered_version():
    registered = {"registered_model": "brandforge-acme", "version": "3", "alias": None}
    text = format_summary(TRAIN, evaluation=EVAL, registered=registered)
    assert "registry:  brandforge-acme v3 (no alias: rejected by its gates)" in text


def test_the_summary_shows_the_share_of_eval_images_passing_the_brand_kit():
    passed = {**AB, "champion": 0.0, "challenger": 0.4375, "n": 48}
    text = format_summary(TRAIN, evaluation={**EVAL, "ab": {**EVAL["ab"], "passed": passed}})
    assert "brand kit: 0% (brandforge-acme v3) -> 44% (adapter) of 48 eval images pass it" in text
    assert "brand kit:" not in format_summary(TRAIN, evaluation=EVAL)  # older eval.json
    held = {"champion": 0.0, "challenger": 0.25}
    text = format_summary(
        TRAIN,
        evaluation={**EVAL, "ab": {**EVAL["ab"], "passed": passed}, "held_out_pass_rate": held},
    )
    assert "0% -> 25% on the held-out prompts" in text
