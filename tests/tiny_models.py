"""Tiny randomly initialised diffusers pipelines for tests: real classes, seconds to build."""

from __future__ import annotations

from pathlib import Path

from brandforge.pipeline import BaseReference, write_base_reference
from training.corpus import CORPUS_WORDS
from training.tokenizer import write_clip_tokenizer

# Training settings that teach the tiny colour-VAE model a brand's colours in a few hundred steps.
TINY_LORA_TRAIN = {
    # Convolutions too: a LoRA of the attention layers alone barely moves a random tiny UNet.
    "target_modules": [
        "to_q",
        "to_k",
        "to_v",
        "to_out.0",
        "conv1",
        "conv2",
        "proj_in",
        "proj_out",
        "conv_in",
        "conv_out",
        "time_emb_proj",
        "ff.net.0.proj",
        "ff.net.2",
    ],
    "rank": 8,
    "batch_size": 4,
    "learning_rate": 3e-3,
    "checkpoint_every": 1000,
    "validation_every": 1000,
    "evidence": {"seeds": [0, 1], "num_inference_steps": 4, "prompts": ["{brand} banner"]},
}


def build_tiny_sd(
    out_dir: Path, *, resolution: int = 32, seed: int = 0, colour_vae: bool = False
) -> Path:
    """Save a random SD 1.x-style pipeline (32 px, 8x8 latents) with a base reference.

    colour_vae: the embedded base's VAE (latents are the image's colours at 1/4 resolution), so
    an adapter trained for a few seconds already changes the colours of what the model draws.
    """
    import torch
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextModel, CLIPTokenizer

    torch.manual_seed(seed)
    tok_dir = out_dir / "_tok"
    write_clip_tokenizer(tok_dir, words=["acme", "teal", "orange", "white"])
    tokenizer = CLIPTokenizer.from_pretrained(tok_dir)
    text_encoder = CLIPTextModel(tiny_clip_config(tokenizer, width=32, intermediate=64, heads=2))
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(16, 16, 32),
        layers_per_block=1,
        norm_num_groups=8,
        sample_size=resolution,
    )
    if colour_vae:
        from training.base_model import _colour_preserving_init, _new_vae

        vae = _new_vae(resolution)
        with torch.no_grad():
            _colour_preserving_init(vae)
        vae.register_to_config(scaling_factor=2.0)  # its latents' std is about 0.5
    unet = UNet2DConditionModel(
        sample_size=resolution // 4,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=8,
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=DDIMScheduler(
            num_train_timesteps=1000,
            beta_schedule="scaled_linear",
            beta_start=0.00085,
            beta_end=0.012,
            clip_sample=False,
        ),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(out_dir)
    write_base_reference(
        out_dir,
        BaseReference(
            model=".",
            kind="sd",
            identity=f"tiny-{'colour' if colour_vae else 'random'}-{seed}",
            source="local",
            resolution=resolution,
        ),
    )
    return out_dir


def tiny_clip_config(tokenizer, *, width: int, intermediate: int, heads: int, **extra):
    """A 2-layer CLIP text config sized to a locally built tokenizer."""
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=width,
        intermediate_size=intermediate,
        num_hidden_layers=2,
        num_attention_heads=heads,
        max_position_embeddings=77,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **extra,
    )


def save_tiny_sdxl(folder: Path) -> Path:
    """Save an SDXL pipeline (two CLIP text encoders, tiny UNet and VAE) into `folder`."""
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import (
        CLIPTextModel,
        CLIPTextModelWithProjection,
        CLIPTokenizer,
    )

    torch.manual_seed(0)
    tok_dir = folder.parent / f"{folder.name}-tokenizer"
    write_clip_tokenizer(tok_dir, words=CORPUS_WORDS)
    tokenizer = CLIPTokenizer.from_pretrained(tok_dir, local_files_only=True)
    text_config = tiny_clip_config(tokenizer, width=32, intermediate=37, heads=4, projection_dim=32)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        # 6 time ids x 8 + the pooled text embedding of text_encoder_2 (projection_dim 32)
        projection_class_embeddings_input_dim=80,
        cross_attention_dim=64,  # the two encoders' hidden states, concatenated
        norm_num_groups=1,
    )
    vae = AutoencoderKL(
        block_out_channels=(32, 64),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        sample_size=32,
        norm_num_groups=16,
    )
    pipe = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=CLIPTextModel(text_config),
        text_encoder_2=CLIPTextModelWithProjection(text_config),
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=unet,
        scheduler=EulerDiscreteScheduler(
            beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear"
        ),
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder
