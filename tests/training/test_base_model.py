import json

import numpy as np
import pytest

from brandforge.params import parse_params
from brandforge.pipeline import BaseModelError, read_base_reference
from tests.tiny_models import save_tiny_sdxl
from training.base_model import pair_share, run, weights_sha256

MICRO = {
    "corpus_size": 64,
    "vae_steps": 3,
    "unet_steps": 3,
    "batch_size": 4,
    "time_budget_s": 60,
    "check_steps": 2,
}


def test_micro_embedded_build_saves_a_standard_sd_folder(tmp_path):
    import torch
    from diffusers import StableDiffusionPipeline

    params = parse_params({"base": {"seed": 1, "pretrain": MICRO}})
    ref = run(params, root=tmp_path)

    base = tmp_path / "models" / "base"
    for name in (
        "model_index.json",
        "tokenizer/vocab.json",
        "tokenizer/merges.txt",
        "text_encoder/model.safetensors",
        "unet/config.json",
        "vae/config.json",
        "scheduler/scheduler_config.json",
    ):
        assert (base / name).is_file(), name
    assert ref.source == "embedded" and ref.kind == "sd" and ref.model == "."
    assert read_base_reference(base) == ref
    assert ref.identity == weights_sha256(base)

    pipe = StableDiffusionPipeline.from_pretrained(base, local_files_only=True)
    assert type(pipe.tokenizer).__name__ == "CLIPTokenizer"
    assert type(pipe.text_encoder).__name__ == "CLIPTextModel"
    assert pipe.safety_checker is None
    pipe.set_progress_bar_config(disable=True)
    # a word the corpus never contains still tokenizes (byte fallback), and the image comes out
    image = pipe(
        "zyxquorp teal poster",
        height=32,
        width=32,
        num_inference_steps=2,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
    ).images[0]
    assert image.shape == (32, 32, 3) and np.isfinite(image).all()

    metrics = json.loads((tmp_path / "metrics" / "base.json").read_text())
    assert metrics["source"] == "embedded" and metrics["identity"] == ref.identity
    assert metrics["vae_steps"] == 3 and metrics["unet_steps"] == 3
    assert 0.0 <= metrics["colour_following"] <= 1.0
    assert "white" in metrics["colour_fidelity"]


def test_external_sdxl_folder_is_checked_and_recorded(tmp_path):
    folder = save_tiny_sdxl(tmp_path / "tiny-sdxl")
    params = parse_params({"base": {"model": str(folder), "resolution": 64}})
    ref = run(params, root=tmp_path / "project")

    assert ref.kind == "sdxl" and ref.source == "local"
    assert ref.model == str(folder.resolve())
    assert ref.identity == weights_sha256(folder) and len(ref.identity) == 64
    base = tmp_path / "project" / "models" / "base"
    assert read_base_reference(base) == ref
    assert not (base / "model_index.json").exists()  # only the reference is written
    metrics = json.loads((tmp_path / "project" / "metrics" / "base.json").read_text())
    assert metrics["kind"] == "sdxl" and metrics["identity"] == ref.identity


def test_missing_folder_is_a_clear_error(tmp_path):
    missing = tmp_path / "no-such-model"
    params = parse_params({"base": {"model": str(missing)}})
    with pytest.raises(BaseModelError, match=str(missing)):
        run(params, root=tmp_path)


def test_pair_share_counts_pixels_of_the_named_colours():
    image = np.zeros((4, 4, 3), dtype=np.uint8)
    image[:2] = (245, 245, 245)  # white
    image[2:, :2] = (26, 158, 158)  # teal
    image[2:, 2:] = (220, 40, 40)  # red
    assert pair_share(image, ("white", "teal")) == pytest.approx(0.75)
    assert pair_share(image, ("red",)) == pytest.approx(0.25)
