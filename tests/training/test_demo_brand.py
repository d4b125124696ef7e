import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from brandforge.brandkit import load_brand_kit
from brandforge.params import parse_params
from evaluation.palette import hex_to_rgb, palette_adherence
from training import demo_brand
from training.demo_brand import LAYOUTS, PALETTE, draw_visual, generate_demo_brand

PALETTE_RGB = [c.rgb for c in PALETTE]
COLOR_NAMES = {c.name for c in PALETTE}


def read_metadata(brand_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (brand_dir / "metadata.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "acme"
    generate_demo_brand(out, name="acme", n_images=48, resolution=32, seed=0)
    return out


def test_writes_count_images_at_the_resolution_with_one_caption_each(demo):
    entries = read_metadata(demo)
    assert len(entries) == 48
    files = sorted(p.relative_to(demo).as_posix() for p in (demo / "images").iterdir())
    assert files == sorted(e["file_name"] for e in entries)
    for entry in entries[:8]:
        with Image.open(demo / entry["file_name"]) as image:
            assert image.format == "PNG"
            assert image.mode == "RGB"
            assert image.size == (32, 32)


def test_kit_is_valid_and_matches_the_drawing_palette(demo):
    kit = load_brand_kit(demo / "brand.yaml")
    assert kit.name == kit.trigger == "acme"
    assert [(c.name, c.hex, c.share, c.role) for c in kit.palette] == [
        ("teal", "#1A9E9E", 0.45, "primary"),
        ("white", "#F5F5F5", 0.35, "background"),
        ("orange", "#F58C1E", 0.20, "accent"),
    ]
    assert kit.forbidden_colors == ["#DC2828"]
    assert kit.color_tolerance == 12
    assert kit.aspect_ratios == ["1:1", "4:5", "16:9"]


def test_same_seed_gives_byte_identical_files_and_another_seed_differs(demo, tmp_path):
    again = tmp_path / "again"
    generate_demo_brand(again, name="acme", n_images=48, resolution=32, seed=0)
    for name in ("brand.yaml", "metadata.jsonl", *[e["file_name"] for e in read_metadata(demo)]):
        assert (again / name).read_bytes() == (demo / name).read_bytes(), name

    other = tmp_path / "other"
    generate_demo_brand(other, name="acme", n_images=48, resolution=32, seed=1)
    assert (other / "metadata.jsonl").read_bytes() != (demo / "metadata.jsonl").read_bytes()


def test_a_smaller_count_is_a_prefix_of_a_larger_one(demo, tmp_path):
    small = tmp_path / "small"
    generate_demo_brand(small, name="acme", n_images=5, resolution=32, seed=0)
    assert read_metadata(small) == read_metadata(demo)[:5]
    for entry in read_metadata(small):
        assert (small / entry["file_name"]).read_bytes() == (demo / entry["file_name"]).read_bytes()


def test_palette_dominates_every_image_and_the_forbidden_colour_is_absent(demo):
    images = [np.asarray(Image.open(demo / e["file_name"])) for e in read_metadata(demo)]
    scores = [palette_adherence(image, PALETTE_RGB, tolerance=12) for image in images]
    assert np.mean(scores) >= 0.9
    assert min(scores) >= 0.85
    forbidden = [hex_to_rgb("#DC2828")]
    assert max(palette_adherence(image, forbidden, tolerance=12) for image in images) == 0.0


def test_images_are_varied_and_anti_aliased(demo):
    images = [np.asarray(Image.open(demo / e["file_name"])) for e in read_metadata(demo)]
    # no two visuals alike
    assert len({image.tobytes() for image in images}) == len(images)
    # edges of round shapes are blended (supersampled), not hard steps between palette colours
    blended = 0
    for image in images:
        exact = np.zeros(image.shape[:2], dtype=bool)
        for rgb in PALETTE_RGB:
            exact |= (image == rgb).all(axis=-1)
        blended += int((~exact).sum())
    assert blended > 0


def test_captions_start_with_the_trigger_and_name_the_layout_and_visible_colours(demo):
    entries = read_metadata(demo)
    layouts = set()
    for entry in entries:
        text = entry["text"]
        match = re.match(r"^acme (banner|product card|social tile|poster), ", text)
        assert match, text
        layouts.add(match.group(1))
        words = set(re.findall(r"[a-z]+", text))
        named = words & COLOR_NAMES
        assert "background" in words and named, text
        # Every colour the caption names is really there (at least 1 % of the pixels).
        image = np.asarray(Image.open(demo / entry["file_name"]))
        for color in PALETTE:
            if color.name in named:
                share = palette_adherence(image, [color.rgb], tolerance=12)
                assert share >= 0.01, (text, color.name, share)
    assert layouts == set(LAYOUTS)


def test_background_colour_named_in_a_solid_caption_is_the_most_common_colour(demo):
    checked = 0
    for entry in read_metadata(demo):
        match = re.search(r", (\w+) background,", entry["text"])
        if not match:
            continue
        image = np.asarray(Image.open(demo / entry["file_name"]))
        shares = {c.name: palette_adherence(image, [c.rgb], tolerance=12) for c in PALETTE}
        # banners and posters can be mostly bar and shape; the background still shows
        assert shares[match.group(1)] >= 0.15, (entry["text"], shares)
        checked += 1
    assert checked >= 10


def test_draw_visual_is_a_pure_function_of_the_generator():
    a, caption_a = draw_visual(np.random.default_rng(7), resolution=24, trigger="zest")
    b, caption_b = draw_visual(np.random.default_rng(7), resolution=24, trigger="zest")
    assert caption_a == caption_b and caption_a.startswith("zest ")
    assert a.size == (24, 24)
    assert np.array_equal(np.asarray(a), np.asarray(b))


def test_run_replaces_the_brand_folder_completely(tmp_path):
    params = parse_params(
        {"data": {"brands_dir": "brands", "demo_brand": "acme", "demo": {"n_images": 6, "seed": 3}}}
    )
    stale = tmp_path / "brands" / "acme" / "images" / "acme-09999.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"left over from a larger run")
    (tmp_path / "brands" / "acme" / "notes.txt").write_text("old")

    out = demo_brand.run(params, root=tmp_path)

    assert out == tmp_path / "brands" / "acme"
    assert not stale.exists() and not (out / "notes.txt").exists()
    assert len(list((out / "images").iterdir())) == 6
    assert len(read_metadata(out)) == 6
    assert load_brand_kit(out).name == "acme"
    # no temporary or backup siblings left behind
    assert [p.name for p in (tmp_path / "brands").iterdir()] == ["acme"]
