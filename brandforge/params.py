"""Typed `params.yaml`: every hyperparameter of the pipeline, one section per stage.

Each section is a frozen pydantic model with ``extra="forbid"``, so a typo or a wrong type is an
error that names the key and the file instead of a silently ignored setting.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from brandforge.names import Brand


class ParamsError(ValueError):
    """`params.yaml` is missing, unreadable or does not match the schema."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DemoBrandParams(_Section):
    """The generated demo brand (only used when `data.brand` is the demo brand)."""

    n_images: int = Field(320, ge=4, le=100_000)
    seed: int = 0


class DataParams(_Section):
    brand: Brand = "acme"
    brands_dir: str = "data/brands"
    demo_brand: Brand = "acme"
    demo: DemoBrandParams = DemoBrandParams()


class PrepareParams(_Section):
    min_size: int = Field(32, ge=1, description="smallest accepted image side, in pixels")
    center_crop: bool = True


class PretrainParams(_Section):
    """Pretraining of the embedded base model on the generated generic corpus."""

    corpus_size: int = Field(4096, ge=16)
    vae_steps: int = Field(0, ge=0, description="fine-tuning of the colour-preserving VAE")
    vae_lr: float = Field(2e-3, gt=0)
    unet_steps: int = Field(3000, ge=0, description="upper bound; the time budget usually ends it")
    unet_lr: float = Field(1e-3, gt=0)
    batch_size: int = Field(16, ge=1)
    time_budget_s: float = Field(
        315, gt=0, description="the whole embedded build (training, saving, checks) stops by then"
    )
    check_steps: int = Field(20, ge=1, description="DDIM steps of the final colour-following check")


class BaseParams(_Section):
    model: str = "embedded"
    # The model's native resolution: `prepare` resizes the brand images to it.
    resolution: int = Field(32, ge=8, le=2048)
    seed: int = 0
    pretrain: PretrainParams = PretrainParams()


class EvidenceParams(_Section):
    """Base vs base+adapter on fixed brand prompts and seeds (the "did it learn" check)."""

    # `{brand}` is replaced by the brand kit's trigger phrase.
    prompts: list[str] = Field(
        default_factory=lambda: [
            "{brand} banner",
            "{brand} product card",
            "{brand} social tile",
            "{brand} poster",
        ],
        min_length=1,
    )
    seeds: list[int] = Field(default_factory=lambda: list(range(8)), min_length=1)
    num_inference_steps: int = Field(20, ge=1, le=200)
    guidance_scale: float = Field(1.0, ge=0, le=30, allow_inf_nan=False)


class TrainParams(_Section):
    RUNTIME_KEYS: ClassVar[frozenset[str]] = frozenset({"log_every", "compile"})

    rank: int = Field(16, ge=1)
    alpha: float = Field(16.0, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: list[str] = Field(
        default_factory=lambda: ["to_q", "to_k", "to_v", "to_out.0"], min_length=1
    )
    text_encoder_lora: bool = False
    text_encoder_rank: int = Field(4, ge=1)
    text_encoder_target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "out_proj"], min_length=1
    )
    max_steps: int = Field(1800, ge=1)
    batch_size: int = Field(16, ge=1)
    gradient_accumulation_steps: int = Field(1, ge=1)
    learning_rate: float = Field(1e-3, gt=0)
    lr_scheduler: Literal["constant", "constant_with_warmup", "cosine", "linear"] = "constant"
    lr_warmup_steps: int = Field(0, ge=0)
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    snr_gamma: float | None = Field(5.0, gt=0, description="min-SNR weighting; null disables")
    caption_dropout: float = Field(0.05, ge=0, lt=1)
    checkpoint_every: int = Field(100, ge=1)
    keep_checkpoints: int = Field(2, ge=1)
    validation_every: int = Field(100, ge=1)
    validation_prompts: list[str] = Field(default_factory=list)
    seed: int = 42
    # How the loop runs, not what it learns: outside the checkpoint key (`RUNTIME_KEYS`).
    log_every: int = Field(
        10,
        ge=1,
        le=10_000,
        strict=True,
        description="optimizer steps between loss syncs and MLflow writes; every step is logged",
    )
    compile: bool = Field(False, strict=True, description="torch.compile the UNet")
    evidence: EvidenceParams = EvidenceParams()

    @field_validator("mixed_precision", mode="before")
    @classmethod
    def _yaml_no_is_false(cls, value: object) -> object:
        # YAML 1.1 reads an unquoted `no` as false, and tools that rewrite params.yaml
        # (`dvc exp run -S ...`) drop the quotes; false can only mean "no".
        return "no" if value is False else value

    @field_validator("target_modules", "text_encoder_target_modules")
    @classmethod
    def _no_blank_modules(cls, value: list[str]) -> list[str]:
        if any(not m.strip() for m in value):
            raise ValueError("module names must be non-empty")
        return value


class GateParams(_Section):
    """When a challenger may replace the champion: limits on the paired A/B differences."""

    # Non-inferiority: the lower end of the 95 % CI of (challenger − champion) mean compliance
    # score must be above −margin, so a challenger is not promoted on a lucky draw of seeds.
    max_compliance_drop: float = Field(0.02, ge=0, le=1)
    max_pass_rate_drop: float = Field(0.05, ge=0, le=1, description="share of images passing")
    max_forbidden_increase: float = Field(
        0.001, ge=0, le=1, description="mean forbidden-colour area, share of pixels"
    )
    max_quality_fail_increase: float = Field(
        0.05, ge=0, le=1, description="share of images failing a quality floor"
    )
    max_near_duplicate_increase: float = Field(
        0.25, ge=0, le=1, description="collapse: near-duplicate rate across seeds of one prompt"
    )


class EvalParams(_Section):
    """The `evaluate` stage: challenger (the adapter just trained) vs the registry's champion."""

    # In the brand folder, so it is versioned with the brand's data (DVC).
    prompt_set: str = "prompt_set.yaml"
    # What the gate judges, and what serving draws the registered version with by default
    # (registry/sampler.py): the same bounds as a request's.
    num_inference_steps: int = Field(20, ge=1, le=200)
    guidance_scale: float = Field(1.0, ge=0, le=30, allow_inf_nan=False)
    clip_model: str | None = Field(
        None, description="local CLIP folder (or cached HF id) for CLIPScore; null: not configured"
    )
    bootstrap_resamples: int = Field(5000, ge=100)
    near_duplicate_distance: int = Field(6, ge=0, le=64, description="pHash bits")
    fail_on_gate: bool = False
    gates: GateParams = GateParams()


class RegisterParams(_Section):
    # The largest width or height (pixels) serving accepts for the registered version; null:
    # 4x its native resolution, capped at 2048 (registry.limits).
    max_size: int | None = Field(None, ge=8, le=8192)
    # The largest cost of one request serving accepts for the version, in cost units (one
    # image at its native size for one step; registry.limits): BRANDFORGE_MAX_REQUEST_COST
    # overrides it at serving time.
    max_cost: int = Field(2000, ge=1, le=10_000_000)


class RolloutParams(_Section):
    """Canary analysis: each step compares canary with champion over the same window."""

    steps: list[int] = Field(default_factory=lambda: [5, 25, 50, 100], min_length=1)
    min_requests: int = Field(50, ge=1, description="canary requests a step needs to be judged")
    min_seconds: float = Field(300.0, ge=0, description="how long a step lasts at least")
    max_error_rate_increase: float = Field(0.02, ge=0, le=1)
    max_p95_latency_ratio: float = Field(1.5, gt=0)
    max_compliance_drop: float = Field(0.05, ge=0, le=1, description="mean compliance score")
    max_failed_compliance_increase: float = Field(0.05, ge=0, le=1)
    check_every_s: float = Field(5.0, gt=0, description="how often the controller looks")

    @field_validator("steps")
    @classmethod
    def _increasing(cls, value: list[int]) -> list[int]:
        if any(not 0 < s <= 100 for s in value) or value != sorted(set(value)):
            raise ValueError("steps must be increasing percentages in 1..100")
        if value[-1] != 100:
            raise ValueError("the last step must be 100 (all traffic on the canary)")
        return value


class Params(_Section):
    data: DataParams = DataParams()
    prepare: PrepareParams = PrepareParams()
    base: BaseParams = BaseParams()
    train: TrainParams = TrainParams()
    eval: EvalParams = EvalParams()
    # `register` in params.yaml; the attribute is named otherwise because pydantic models are
    # ABCs, whose `register` classmethod a field of that name would shadow.
    registration: RegisterParams = Field(RegisterParams(), alias="register")
    rollout: RolloutParams = RolloutParams()


def format_validation_errors(err: ValidationError, source: str) -> str:
    """One line per bad key, `section.key: what is wrong (got value)`, under the file's name."""
    lines = [f"{source}: {len(err.errors())} invalid setting(s)"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            lines.append(f"  - {key}: unknown key (check the spelling)")
        else:
            lines.append(f"  - {key}: {e['msg']} (got {e.get('input')!r})")
    return "\n".join(lines)


def parse_params(raw: dict[str, Any] | None, *, source: str = "params.yaml") -> Params:
    """Validate an already-loaded mapping; raises ParamsError naming every bad key."""
    try:
        return Params.model_validate(raw or {})
    except ValidationError as err:
        raise ParamsError(format_validation_errors(err, source)) from None


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate `params.yaml`."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: not found (run from the project root or pass --params)")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ParamsError(f"{path}: not valid YAML: {err}") from None
    if raw is not None and not isinstance(raw, dict):
        raise ParamsError(f"{path}: the top level must be a mapping of sections")
    return parse_params(raw, source=str(path))
