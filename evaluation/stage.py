"""The `champion` and `evaluate` stages: the new adapter against the model in production.

`champion` asks the MLflow registry which version of `brandforge-<brand>` holds the `champion`
alias and writes the answer to `models/champion.json` (DVC reruns `evaluate` only when it
changes). `evaluate` generates the brand's versioned eval prompt set with the champion (or the
plain base model when there is none yet) and with the challenger (the adapter just trained),
same prompts, seeds and sampler, scores every image with the brand kit, compares the two pairwise
and decides the gate. Results go to `metrics/eval.json`, `plots/eval_scores.csv`, `reports/eval/`
and the challenger's training run in MLflow.
"""

from __future__ import annotations

import csv
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from brandforge.brandkit import BrandKit, load_brand_kit
from brandforge.params import Params, format_validation_errors
from brandforge.pipeline import (
    BASE_DIR,
    LORA_DIR,
    PREPARED_DIR,
    generate,
    image_grid,
    load_base,
    load_pipeline,
)
from evaluation.ab import HIGHER_IS_BETTER, compare, comparison_dict, gate_decision
from evaluation.compliance import ComplianceReport, brand_limits, compliance_report
from evaluation.images import load_logo, write_json
from evaluation.regions import outline_boxes

log = logging.getLogger(__name__)

CHAMPION_FILE = Path("models/champion.json")
METRICS_FILE = Path("metrics/eval.json")
SCORES_PLOT = Path("plots/eval_scores.csv")
REPORT_DIR = Path("reports/eval")
TRAIN_METRICS = Path("metrics/train.json")


class EvaluationError(RuntimeError):
    """Something the user can fix stops the evaluation: the message says what and where."""


class PromptSet(BaseModel):
    """`prompt_set.yaml` in the brand folder: every prompt is generated with every seed.
    `held_out` prompts (optional) are unlike any training caption: the share of their images
    passing the brand kit says whether the adapter learned the brand or its captions."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    prompts: list[str] = Field(min_length=1)
    seeds: list[int] = Field(min_length=2)
    held_out: list[str] = Field(default_factory=list, max_length=50)


PROMPT_SET_EXAMPLE = """prompts:            # {brand} is replaced by the brand kit's trigger phrase
  - "{brand} banner"
  - "{brand} product card"
seeds: [0, 1, 2, 3, 4, 5, 6, 7]
"""


def _read_prompt_set(path: Path) -> PromptSet:
    if not path.is_file():
        raise EvaluationError(
            f"{path}: no eval prompt set. Create it (and `dvc add` the brand folder), e.g.\n"
            + PROMPT_SET_EXAMPLE
        )
    try:
        raw = yaml.safe_load(path.read_text())
        prompt_set = PromptSet.model_validate(raw)
    except yaml.YAMLError as err:
        raise EvaluationError(f"{path}: not valid YAML: {err}") from None
    except ValidationError as err:
        raise EvaluationError(format_validation_errors(err, str(path))) from None
    if len(set(prompt_set.seeds)) != len(prompt_set.seeds):
        raise EvaluationError(f"{path}: seeds must be distinct")
    return prompt_set


def load_prompt_set(path: Path, kit: BrandKit) -> tuple[list[str], list[int]]:
    """The brand's eval prompts (trigger phrase filled in) and seeds; errors name the file."""
    prompt_set = _read_prompt_set(path)
    return [p.replace("{brand}", kit.phrase) for p in prompt_set.prompts], list(prompt_set.seeds)


def load_held_out(path: Path, kit: BrandKit, captions: list[str]) -> list[str]:
    """The prompt set's `held_out` prompts (trigger phrase filled in). One that is a training
    caption (ignoring case and spaces) is an error naming it: it would not be held out."""
    seen = {" ".join(c.lower().split()) for c in captions}
    held_out = [p.replace("{brand}", kit.phrase) for p in _read_prompt_set(path).held_out]
    for prompt in held_out:
        if " ".join(prompt.lower().split()) in seen:
            raise EvaluationError(
                f"{path}: held_out prompt {prompt!r} is a training caption; a held-out prompt "
                "must be one the adapter never saw"
            )
    return held_out


def training_captions(root: Path) -> list[str]:
    """The prepared dataset's captions (`metadata.jsonl`), to keep held-out prompts honest."""
    path = root / PREPARED_DIR / "metadata.jsonl"
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line).get("text", "") for line in lines if line.strip()]


def held_out_summary(reports: list[ComplianceReport], prompts: list[str]) -> dict[str, Any]:
    """How one side did on the held-out prompts: images, the share passing the brand kit,
    the mean compliance score."""
    if not reports:
        return {"prompts": prompts, "images": 0, "pass_rate": None, "compliance_score": None}
    return {
        "prompts": prompts,
        "images": len(reports),
        "pass_rate": round(sum(r.passed for r in reports) / len(reports), 4),
        "compliance_score": round(float(np.mean([r.score for r in reports])), 4),
    }


# ---------------------------------------------------------------------------------------------
# The champion: which registered version is in production, resolved once per `dvc repro`.


def resolve_champion(brand: str) -> dict[str, Any]:
    """The registry's `champion` for the brand, or the base model when there is none yet."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from brandforge.tracking import registered_model_name, setup_mlflow

    setup_mlflow(brand)
    name = registered_model_name(brand)
    client = mlflow.MlflowClient()
    try:
        version = client.get_model_version_by_alias(name, "champion")
    except MlflowException as err:
        # Only "no such model / no such alias" means "no champion yet"; an unreachable
        # server must not silently turn the comparison into one against the base model.
        if err.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return {
                "source": "base",
                "registered_model": name,
                "reason": f"{name} has no `champion` alias yet: the challenger is compared "
                "with the plain base model",
            }
        raise EvaluationError(f"cannot read the model registry for {name}: {err}") from None
    return {
        "source": "registry",
        "registered_model": name,
        "version": str(version.version),
        "model_uri": f"models:/{name}/{version.version}",
        "run_id": version.run_id,
    }


def write_champion(params: Params, *, root: Path) -> dict[str, Any]:
    champion = resolve_champion(params.data.brand)
    path = root / CHAMPION_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(champion, indent=2) + "\n")
    return champion


# ---------------------------------------------------------------------------------------------
# Generation: both models, same prompts, seeds and sampler.


def _generate_all(
    pipe: Any, prompts: list[str], seeds: list[int], params: Params, resolution: int, desc: str
) -> list[Any]:
    from tqdm.auto import tqdm

    images: list[Any] = []
    # One prompt (all its seeds) per call: bounded memory on a real model, and a progress bar.
    for prompt in tqdm(prompts, desc=desc, unit="prompt"):
        images += generate(
            pipe,
            [prompt],
            seeds,
            steps=params.eval.num_inference_steps,
            guidance=params.eval.guidance_scale,
            resolution=resolution,
        )
    return images


def _champion_images(
    champion: dict[str, Any],
    *,
    pipe: Any,
    base_identity: str,
    prompts: list[str],
    seeds: list[int],
    params: Params,
    resolution: int,
) -> tuple[list[Any], str]:
    """Images of the champion (a registered adapter, or the base), and a label for it."""
    if champion["source"] == "base":
        return _generate_all(pipe, prompts, seeds, params, resolution, "champion (base)"), "base"

    import mlflow
    import mlflow.diffusers
    from mlflow.exceptions import MlflowException

    label = f"{champion['registered_model']} v{champion['version']}"
    try:
        adapter = mlflow.diffusers.load_model(champion["model_uri"])
        info = mlflow.models.get_model_info(champion["model_uri"])
    except (MlflowException, OSError) as err:
        raise EvaluationError(f"cannot load the champion {label}: {err}") from None
    champion_base = (info.metadata or {}).get("base_identity")
    target = pipe
    if champion_base and champion_base != base_identity:
        # Trained on another base: it must be judged as it serves, on its own base.
        if not Path(adapter.base_model).is_dir():
            raise EvaluationError(
                f"the champion {label} was trained on base {champion_base}, the challenger on "
                f"{base_identity}, and the champion's base ({adapter.base_model}) is not "
                "available here. Restore that base (`dvc checkout models/base` at the champion's "
                "commit) or evaluate on the same base."
            )
        target = load_pipeline(adapter.base_model)
    kwargs = {"weight_name": adapter.weight_name} if adapter.weight_name else {}
    target.load_lora_weights(adapter.adapter_path, adapter_name="champion", **kwargs)
    images = _generate_all(target, prompts, seeds, params, resolution, f"champion ({label})")
    if target is pipe:
        pipe.unload_lora_weights()
    return images, label


# ---------------------------------------------------------------------------------------------
# Scoring


def per_image_metrics(reports: list[ComplianceReport]) -> dict[str, np.ndarray]:
    """The per-image numbers the A/B compares, in generation order."""

    def column(fn: Any) -> np.ndarray:
        return np.array([float(fn(r)) for r in reports], dtype=np.float64)

    quality_rules = {"blank", "blur", "noise", "blockiness", "clipped_exposure", "sharpness"}
    return {
        "compliance_score": column(lambda r: r.score),
        "passed": column(lambda r: r.passed),
        "palette_adherence": column(lambda r: r.metrics.get("palette_adherence", 0.0)),
        "off_palette_share": column(lambda r: r.metrics.get("off_palette", {}).get("share", 0.0)),
        "forbidden_share": column(lambda r: r.metrics.get("forbidden_share", 0.0)),
        "forbidden_violation": column(
            lambda r: any(v.rule == "forbidden_color" for v in r.violations)
        ),
        "quality_failed": column(lambda r: any(v.rule in quality_rules for v in r.violations)),
    }


def per_prompt_kit(reports: list[ComplianceReport], groups: list[str]) -> dict[str, Any]:
    """Per prompt (in order): how many of its images passed the brand kit, their mean palette
    adherence and mean distance from the kit's intended colour balance (None when the kit
    states no shares). A pass rate earned by collapsing every image of a prompt to one flat
    brand colour shows here as a large balance distance; `worst_pass_rate` is the prompt
    the model serves worst."""
    rows: dict[str, dict[str, Any]] = {}
    for prompt in dict.fromkeys(groups):
        mine = [r for r, g in zip(reports, groups, strict=True) if g == prompt]
        balances = [
            r.metrics["palette_balance_distance"]
            for r in mine
            if r.metrics.get("palette_balance_distance") is not None
        ]
        rows[prompt] = {
            "images": len(mine),
            "pass_rate": round(sum(r.passed for r in mine) / len(mine), 4),
            "palette_adherence": round(
                float(np.mean([r.metrics.get("palette_adherence", 0.0) for r in mine])), 4
            ),
            "balance_distance": round(float(np.mean(balances)), 4) if balances else None,
        }
    worst = min((row["pass_rate"] for row in rows.values()), default=None)
    return {"worst_pass_rate": worst, "prompts": rows}


def _diversity(images: list[np.ndarray], groups: list[str], max_distance: int) -> dict[str, Any]:
    from evaluation.diversity import diversity_by_group

    by_prompt = diversity_by_group(images, groups, max_distance=max_distance)
    rates = [r.near_duplicate_rate for r in by_prompt.values()]
    return {
        "near_duplicate_rate": round(float(np.mean(rates)), 4),
        "per_prompt": {p: round(r.near_duplicate_rate, 4) for p, r in by_prompt.items()},
    }


def _training_images(root: Path, limit: int = 500) -> list[np.ndarray]:
    from PIL import Image

    files = sorted((root / PREPARED_DIR / "images").glob("*.png"))
    if len(files) > limit:  # an even spread, not the first few hundred
        files = [files[i] for i in np.linspace(0, len(files) - 1, limit).astype(int)]
    return [np.asarray(Image.open(f).convert("RGB")) for f in files]


# ---------------------------------------------------------------------------------------------
# The stage


def run(params: Params, *, root: Path = Path(".")) -> dict[str, Any]:
    """Generate, score, compare and decide; write metrics, plots, reports and the MLflow run."""
    root = Path(root)
    started = time.monotonic()
    brand = params.data.brand
    brand_dir = root / params.data.brands_dir / brand
    kit = load_brand_kit(root / PREPARED_DIR / "brand.yaml")
    prompts, seeds = load_prompt_set(brand_dir / params.eval.prompt_set, kit)
    held_out = load_held_out(brand_dir / params.eval.prompt_set, kit, training_captions(root))
    train_file = root / TRAIN_METRICS
    if not train_file.is_file() or not (root / LORA_DIR).is_dir():
        raise EvaluationError(f"{train_file}: no trained adapter yet; run `dvc repro train`")
    trained = json.loads(train_file.read_text())
    champion_file = root / CHAMPION_FILE
    champion = (
        json.loads(champion_file.read_text())
        if champion_file.is_file()
        else resolve_champion(brand)
    )

    pipe, ref = load_base(root / BASE_DIR)
    resolution = params.base.resolution
    champion_pil, champion_label = _champion_images(
        champion,
        pipe=pipe,
        base_identity=ref.identity,
        prompts=prompts + held_out,
        seeds=seeds,
        params=params,
        resolution=resolution,
    )
    pipe.load_lora_weights(str(root / LORA_DIR), adapter_name="challenger")
    challenger_pil = _generate_all(
        pipe, prompts + held_out, seeds, params, resolution, "challenger"
    )
    del pipe
    # The held-out prompts' images come last; the A/B, grid and reports are the prompt set's.
    compared = len(prompts) * len(seeds)
    unseen = {"champion": champion_pil[compared:], "challenger": challenger_pil[compared:]}
    champion_pil, challenger_pil = champion_pil[:compared], challenger_pil[:compared]

    from tqdm.auto import tqdm

    limits = brand_limits(kit)
    logo = load_logo(kit, brand_dir)
    images = {
        "champion": [np.asarray(i.convert("RGB")) for i in champion_pil],
        "challenger": [np.asarray(i.convert("RGB")) for i in challenger_pil],
    }
    reports = {
        side: [
            compliance_report(img, kit, logo=logo, limits=limits)
            for img in tqdm(imgs, desc=f"compliance {side}", unit="img")
        ]
        for side, imgs in images.items()
    }
    per_image = {side: per_image_metrics(r) for side, r in reports.items()}
    groups = [p for p in prompts for _ in seeds]

    from evaluation.clip_score import prompt_alignment

    alignment = {
        side: prompt_alignment(images[side], groups, params.eval.clip_model) for side in images
    }
    for side in images:
        if alignment[side].get("configured"):
            per_image[side]["prompt_alignment"] = np.asarray(alignment[side]["scores"])

    comparisons = compare(
        per_image["champion"],
        per_image["challenger"],
        rng=np.random.default_rng(0),
        resamples=params.eval.bootstrap_resamples,
    )
    diversity = {
        side: _diversity(images[side], groups, params.eval.near_duplicate_distance)
        for side in images
    }
    decision = gate_decision(
        comparisons,
        near_duplicate_rate=(
            diversity["champion"]["near_duplicate_rate"],
            diversity["challenger"]["near_duplicate_rate"],
        ),
        gates=params.eval.gates,
    )

    # Reports: images, side-by-side grid, per-image compliance, Evidently drift.
    report_dir = root / REPORT_DIR
    _reset_dir(report_dir)
    for side, pil_images in (("champion", champion_pil), ("challenger", challenger_pil)):
        (report_dir / "images" / side).mkdir(parents=True)
        for i, img in enumerate(pil_images):
            img.save(report_dir / "images" / side / _image_name(i, seeds))
    ab_grid(images, reports, cols=2 * len(seeds), resolution=resolution).save(
        report_dir / "champion_vs_challenger.png"
    )
    for side in images:
        entries = [
            {
                "file": f"images/{side}/{_image_name(i, seeds)}",
                "prompt": groups[i],
                "seed": seeds[i % len(seeds)],
                **r.to_dict(),
            }
            for i, r in enumerate(reports[side])
        ]
        write_json(report_dir / f"compliance_{side}.json", {"model": side, "images": entries})

    adherence = {side: per_image[side]["palette_adherence"] for side in images}
    drift = _drift(root, kit, images, adherence, report_dir)

    ab = {
        name: comparison_dict(c, higher_is_better=HIGHER_IS_BETTER[name])
        for name, c in comparisons.items()
    }
    metrics: dict[str, Any] = {
        "brand": brand,
        "champion": champion_label,
        "challenger": trained.get("model_uri"),
        "challenger_run_id": trained.get("mlflow_run_id"),
        "n_prompts": len(prompts),
        "n_seeds": len(seeds),
        "gate": decision.to_dict(),
        "ab": ab,
        "diversity": diversity,
        "per_prompt": {side: per_prompt_kit(reports[side], groups) for side in images},
        "held_out": {
            side: held_out_summary(
                [
                    compliance_report(np.asarray(i.convert("RGB")), kit, logo=logo, limits=limits)
                    for i in pil
                ],
                held_out,
            )
            for side, pil in unseen.items()
        },
        "prompt_alignment": {
            side: {k: v for k, v in a.items() if k != "scores"} for side, a in alignment.items()
        },
        "drift": drift,
        "seconds": round(time.monotonic() - started, 1),
    }
    # Everything (gate checks, per-prompt diversity, per-column drift) in the report; the
    # headline numbers in the DVC metrics file, so `dvc metrics show/diff` stays readable.
    write_json(report_dir / "summary.json", metrics)
    write_json(root / METRICS_FILE, headline(metrics))
    _write_scores_plot(root / SCORES_PLOT, groups, seeds, per_image)
    _log_to_mlflow(metrics, trained, report_dir, root)
    return metrics


def headline(metrics: dict[str, Any]) -> dict[str, Any]:
    """The part of the evaluation that `dvc metrics show/diff` compares between experiments."""
    gate = metrics["gate"]
    return {
        **{k: metrics[k] for k in ("brand", "champion", "challenger", "n_prompts", "n_seeds")},
        "gate": {k: gate[k] for k in ("passed", "decision", "reasons")},
        "ab": metrics["ab"],
        "near_duplicate_rate": {
            side: d["near_duplicate_rate"] for side, d in metrics["diversity"].items()
        },
        "worst_prompt_pass_rate": {
            side: p["worst_pass_rate"] for side, p in metrics["per_prompt"].items()
        },
        "held_out_pass_rate": {side: h["pass_rate"] for side, h in metrics["held_out"].items()},
        "prompt_alignment": {
            side: a.get("mean") for side, a in metrics["prompt_alignment"].items()
        },
        "drift": {
            name: {"share_drifted": d["share_drifted"], "tests_failed": d["tests_failed"]}
            for name, d in metrics["drift"].items()
        },
        "seconds": metrics["seconds"],
    }


def ab_grid(
    images: dict[str, list[np.ndarray]],
    reports: dict[str, list[ComplianceReport]],
    *,
    cols: int,
    resolution: int,
) -> Any:
    """Champion | challenger side by side per (prompt, seed), each tile that failed a region
    rule outlined (the saved images stay as drawn)."""
    from PIL import Image

    def marked(side: str, i: int) -> Any:
        boxes = [v.box for v in reports[side][i].violations if v.box is not None]
        pixels = images[side][i]
        return Image.fromarray(outline_boxes(pixels, boxes) if boxes else pixels)

    sides = ("champion", "challenger")
    pairs = [marked(side, i) for i in range(len(images["champion"])) for side in sides]
    return image_grid(pairs, cols=cols, upscale=max(1, 128 // resolution))


def _image_name(index: int, seeds: list[int]) -> str:
    return f"p{index // len(seeds):02d}_s{seeds[index % len(seeds)]}.png"


def _reset_dir(path: Path) -> None:
    import shutil

    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)


def _drift(
    root: Path,
    kit: BrandKit,
    images: dict[str, list[np.ndarray]],
    adherence: dict[str, np.ndarray],
    report_dir: Path,
) -> dict[str, Any]:
    """Evidently reports over image descriptors; the generated images' palette adherence is the
    one their compliance reports measured, the training images' is measured here."""
    from evaluation.drift import descriptor_frame, drift_reports
    from evaluation.palette import palette_adherence

    palette = [c.rgb for c in kit.palette]
    training = _training_images(root)
    training_adherence = [palette_adherence(i, palette, kit.color_tolerance) for i in training]

    def frame(imgs: list[np.ndarray], values: Any) -> Any:
        return descriptor_frame(imgs, extra={"palette_adherence": list(values)})

    summaries = drift_reports(
        training=frame(training, training_adherence),
        champion=frame(images["champion"], adherence["champion"]),
        challenger=frame(images["challenger"], adherence["challenger"]),
        out_dir=report_dir,
    )
    return {name: {**s.to_dict(), "html": s.html.name} for name, s in summaries.items()}


def _write_scores_plot(
    path: Path, groups: list[str], seeds: list[int], per_image: dict[str, dict[str, np.ndarray]]
) -> None:
    """One row per (prompt, seed): both models' compliance scores, for `dvc plots diff`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "prompt", "seed", "champion", "challenger"])
        for i, prompt in enumerate(groups):
            writer.writerow(
                [
                    i,
                    prompt,
                    seeds[i % len(seeds)],
                    round(float(per_image["champion"]["compliance_score"][i]), 4),
                    round(float(per_image["challenger"]["compliance_score"][i]), 4),
                ]
            )


def _log_to_mlflow(
    metrics: dict[str, Any], trained: dict[str, Any], report_dir: Path, root: Path
) -> None:
    """Into the challenger's training run, so Compare shows training and A/B side by side."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from brandforge.tracking import setup_mlflow

    setup_mlflow(metrics["brand"])
    run_id = trained.get("mlflow_run_id")
    try:
        if run_id:
            mlflow.get_run(run_id)
    except MlflowException:
        log.warning("training run %s is not in this tracking store; logging a new run", run_id)
        run_id = None
    with mlflow.start_run(run_id=run_id, run_name=None if run_id else "evaluate"):
        values: dict[str, float] = {}
        for name, c in metrics["ab"].items():
            values[f"eval_{name}_champion"] = c["champion"]
            values[f"eval_{name}_challenger"] = c["challenger"]
            values[f"eval_{name}_delta"] = c["delta"]
            values[f"eval_{name}_delta_ci_low"] = c["delta_ci95"][0]
            values[f"eval_{name}_delta_ci_high"] = c["delta_ci95"][1]
        for side, d in metrics["diversity"].items():
            values[f"eval_near_duplicate_rate_{side}"] = d["near_duplicate_rate"]
        for side, p in metrics["per_prompt"].items():
            values[f"eval_worst_prompt_pass_rate_{side}"] = p["worst_pass_rate"]
        for side, h in metrics["held_out"].items():
            if h["pass_rate"] is not None:
                values[f"eval_held_out_pass_rate_{side}"] = h["pass_rate"]
        values["eval_gate_passed"] = float(metrics["gate"]["passed"])
        mlflow.log_metrics(values)
        mlflow.set_tags(
            {
                "brandforge.eval.gate": metrics["gate"]["decision"],
                "brandforge.eval.reasons": "; ".join(metrics["gate"]["reasons"])[:4900],
                "brandforge.eval.champion": metrics["champion"],
            }
        )
        mlflow.log_artifacts(str(report_dir), artifact_path="eval")
        mlflow.log_artifact(str(root / METRICS_FILE), artifact_path="eval")


def format_result(metrics: dict[str, Any]) -> str:
    """What the stage prints: the decision, its reasons and the headline A/B numbers."""
    gate = metrics["gate"]
    lines = [
        "",
        f"BrandForge evaluate: {metrics['brand']}: challenger vs {metrics['champion']} on "
        f"{metrics['n_prompts']} prompts x {metrics['n_seeds']} seeds",
    ]
    for name in ("compliance_score", "passed", "palette_adherence", "forbidden_share"):
        c = metrics["ab"][name]
        lo, hi = c["delta_ci95"]
        lines.append(
            f"  {name:18s} {c['champion']:.3f} -> {c['challenger']:.3f}  "
            f"delta {c['delta']:+.3f} [95% CI {lo:+.3f}..{hi:+.3f}]  {c['verdict']}"
        )
    lines.append(f"  gate:              {gate['decision'].upper()}")
    lines += [f"    - {r}" for r in gate["reasons"]]
    lines.append("  details: metrics/eval.json, reports/eval/ (grid, compliance, drift reports)")
    return "\n".join(lines) + "\n"
