"""Tiny randomly initialised diffusers pipelines for tests: real classes, seconds to build."""

from __future__ import annotations

from pathlib import Path

from brandforge.pipeline import BaseReference, write_base_reference


def build_tiny_sd(out_dir: Path, *, resolution: int = 32, seed: int = 0) -> Path:
    """Save a random SD 1.x-style pipeline (32 px, 8x8 latents) with a base reference."""
    import torch
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from training.tokenizer import write_clip_tokenizer

    torch.manual_seed(seed)
    tok_dir = out_dir / "_tok"
    write_clip_tokenizer(tok_dir, words=["acme", "teal", "orange", "white"])
    tokenizer = CLIPTokenizer.from_pretrained(tok_dir)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=77,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
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
            identity=f"tiny-random-{seed}",
            source="local",
            resolution=resolution,
        ),
    )
    return out_dir
