import socket
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from evaluation.clip_score import (
    CLIP_SCORE_WEIGHT,
    ClipScoreError,
    ClipScorer,
    prompt_alignment,
)
from tests.tiny_models import tiny_clip_config
from training.tokenizer import write_clip_tokenizer

PROMPTS = ["acme teal banner", "orange product card", "white poster", "teal social tile"]


@pytest.fixture(scope="module")
def tiny_clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised CLIP (tiny text and vision towers) saved with its processor."""
    import torch
    from transformers import (
        CLIPConfig,
        CLIPImageProcessorPil,  # CLIPImageProcessor's PIL backend; torchvision is not installed
        CLIPModel,
        CLIPProcessor,
        CLIPTokenizer,
        CLIPVisionConfig,
    )
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # save_pretrained's bar is noise in test logs
    root = tmp_path_factory.mktemp("tiny-clip")
    write_clip_tokenizer(root / "tokenizer", words=["acme", "teal", "orange", "white"])
    tokenizer = CLIPTokenizer.from_pretrained(root / "tokenizer", local_files_only=True)
    text = tiny_clip_config(tokenizer, width=32, intermediate=37, heads=4)
    vision = CLIPVisionConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
    )
    torch.manual_seed(4)  # its random weights give cosines of both signs on these images
    model = CLIPModel(
        CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=16)
    )
    processor = CLIPProcessor(
        image_processor=CLIPImageProcessorPil(
            size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
        ),
        tokenizer=tokenizer,
    )
    folder = root / "clip"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def scorer(tiny_clip_dir: Path) -> ClipScorer:
    return ClipScorer.load(tiny_clip_dir)


def images(n: int) -> list[np.ndarray]:
    """n varied uint8 images (noise, two brand colours, a grey ramp), of different sizes."""
    noise = np.random.default_rng(7).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    teal = np.full((56, 48, 3), (26, 158, 158), dtype=np.uint8)
    orange = np.full((40, 64, 3), (245, 140, 30), dtype=np.uint8)
    ramp = np.repeat(
        np.repeat(np.linspace(0, 255, 48).astype(np.uint8)[None, :, None], 40, 0), 3, 2
    )
    return [[noise, teal, orange, ramp][i % 4] for i in range(n)]


def test_scores_are_bounded_deterministic_and_one_per_image(scorer, tiny_clip_dir):
    pictures: list = images(4)
    pictures.append(Image.fromarray(pictures[0]).convert("RGBA"))  # PIL, with alpha
    pictures.append(pictures[1][..., 0])  # greyscale array
    prompts = [*PROMPTS, "a", "acme " * 100]  # the last one is longer than CLIP's context
    scores = scorer.score(pictures, prompts)
    assert scores.shape == (6,)
    assert scores.dtype == np.float64
    assert np.isfinite(scores).all()
    assert ((scores >= 0) & (scores <= CLIP_SCORE_WEIGHT)).all()
    assert (scores > 0).any()
    np.testing.assert_array_equal(scorer.score(pictures, prompts), scores)
    np.testing.assert_allclose(scorer.score(pictures, prompts, batch_size=4), scores, atol=1e-6)
    np.testing.assert_array_equal(ClipScorer.load(tiny_clip_dir).score(pictures, prompts), scores)


def test_score_is_the_clipscore_formula_on_the_models_embeddings(scorer, tiny_clip_dir):
    import torch
    from transformers import CLIPModel, CLIPProcessor

    model = CLIPModel.from_pretrained(tiny_clip_dir, local_files_only=True).eval()
    processor = CLIPProcessor.from_pretrained(tiny_clip_dir, local_files_only=True)
    pictures = images(4)
    with torch.inference_mode():
        pixels = processor(images=pictures, return_tensors="pt")["pixel_values"]
        tokens = processor(text=PROMPTS, padding=True, return_tensors="pt")
        image_embeds = model.get_image_features(pixel_values=pixels).pooler_output
        text_embeds = model.get_text_features(
            input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]
        ).pooler_output
    image_embeds = image_embeds / image_embeds.norm(dim=-1, keepdim=True)
    text_embeds = text_embeds / text_embeds.norm(dim=-1, keepdim=True)
    cosine = (image_embeds @ text_embeds.T).double().numpy()  # every image against every prompt
    # random weights give both signs, so this checks the clipping at 0 as well as the scale
    assert (cosine > 0).any() and (cosine < 0).any()

    pairs = [(i, j) for i in range(4) for j in range(4)]
    scores = scorer.score([pictures[i] for i, _ in pairs], [PROMPTS[j] for _, j in pairs])
    expected = [2.5 * max(cosine[i, j], 0.0) for i, j in pairs]
    np.testing.assert_allclose(scores, expected, atol=1e-5)


def test_images_and_prompts_must_pair_up(scorer):
    with pytest.raises(ValueError, match="3 images but 2 prompts"):
        scorer.score(images(3), PROMPTS[:2])
    with pytest.raises(ValueError, match="no images"):
        scorer.score([], [])
    with pytest.raises(ValueError, match="uint8"):
        scorer.score([np.zeros((8, 8, 3), dtype=np.float32)], ["a"])


def test_a_missing_model_folder_is_an_error_naming_it(tmp_path):
    missing = tmp_path / "models" / "clip"
    with pytest.raises(ClipScoreError, match=str(missing)) as err:
        ClipScorer.load(missing)
    assert "CLIPModel.save_pretrained" in str(err.value)


def test_a_folder_without_a_tokenizer_is_an_error(tmp_path, tiny_clip_dir):
    folder = tmp_path / "weights-only"
    folder.mkdir()
    for name in ("config.json", "model.safetensors"):
        (folder / name).write_bytes((tiny_clip_dir / name).read_bytes())
    with pytest.raises(ClipScoreError, match=f"{folder}.*no tokenizer"):
        ClipScorer.load(folder)


def test_an_uncached_hub_id_fails_without_touching_the_network(monkeypatch):
    lookups: list[object] = []

    def refuse(*args: object, **kwargs: object) -> None:
        lookups.append(args)
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    with pytest.raises(ClipScoreError, match="brandforge-test/no-such-clip"):
        ClipScorer.load("brandforge-test/no-such-clip")
    assert lookups == []


@pytest.mark.parametrize("setting", [None, "", "  "])
def test_prompt_alignment_without_a_model_is_not_configured(setting):
    result = prompt_alignment(images(2), PROMPTS[:2], setting)
    assert result == {"configured": False, "reason": "eval.clip_model is not set"}


def test_prompt_alignment_reports_every_score_and_their_mean(scorer, tiny_clip_dir):
    result = prompt_alignment(images(4), PROMPTS, tiny_clip_dir)
    assert result["configured"] is True
    assert result["model"] == str(tiny_clip_dir)
    assert result["scores"] == pytest.approx(scorer.score(images(4), PROMPTS).tolist())
    assert result["mean"] == pytest.approx(np.mean(result["scores"]))
    with pytest.raises(ClipScoreError):
        prompt_alignment(images(1), PROMPTS[:1], tiny_clip_dir / "nope")
