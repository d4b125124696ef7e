import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from brandforge.brandkit import BrandKitError
from brandforge.params import parse_params
from training import prepare
from training.demo_brand import demo_brand_kit, generate_demo_brand
from training.prepare import DatasetError

RED, BLUE, GREEN = (220, 30, 30), (30, 30, 220), (30, 200, 30)


def params(**prepare_params):
    return parse_params(
        {
            "data": {"brand": "shop", "brands_dir": "brands"},
            "prepare": {"min_size": 16, **prepare_params},
            "base": {"resolution": 16},
        }
    )


def png(color=RED, size=(24, 24), mode="RGB", **save) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, color).save(buf, format="PNG", **save)
    return buf.getvalue()


def noise_png(seed: int, size=(20, 20)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (*size[::-1], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def make_brand(root: Path, files: dict[str, bytes], captions: dict[str, str] | None = None) -> Path:
    """A brand folder with the given image files; captions default to one per file."""
    brand = root / "brands" / "shop"
    (brand / "images").mkdir(parents=True)
    (brand / "brand.yaml").write_text(yaml.safe_dump(demo_brand_kit("shop")))
    for name, data in files.items():
        (brand / name).parent.mkdir(parents=True, exist_ok=True)
        (brand / name).write_bytes(data)
    if captions is None:
        captions = {name: f"shop visual {i}" for i, name in enumerate(files)}
    write_metadata(brand, [{"file_name": n, "text": t} for n, t in captions.items()])
    return brand


def write_metadata(brand: Path, entries: list[dict]) -> None:
    (brand / "metadata.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries))


def prepared(root: Path) -> list[dict]:
    lines = (root / "data/prepared/metadata.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def prepared_image(root: Path, source: str) -> np.ndarray:
    entry = next(e for e in prepared(root) if e["source"] == source)
    with Image.open(root / "data/prepared" / entry["file_name"]) as image:
        assert image.mode == "RGB"
        return np.asarray(image)


def test_clean_brand_is_prepared_with_hash_and_metrics(tmp_path):
    make_brand(
        tmp_path,
        {
            "images/a.png": png(RED),
            "images/sub/deeper/b.PNG": png(BLUE, size=(40, 20)),
            "images/c.jpg": b"",  # replaced below by a real JPEG
            "images/d.webp": b"",
        },
    )
    brand = tmp_path / "brands/shop"
    Image.new("RGB", (30, 30), GREEN).save(brand / "images/c.jpg", quality=95)
    Image.new("RGB", (16, 16), BLUE).save(brand / "images/d.webp", lossless=True)

    result = prepare.run(params(), root=tmp_path)

    out = tmp_path / "data/prepared"
    info = json.loads((out / "dataset.json").read_text())
    assert info == {k: result[k] for k in ("brand", "hash", "n_images", "resolution", "source")}
    assert info["brand"] == "shop" and info["n_images"] == 4 and info["resolution"] == 16
    assert info["source"] == "brands/shop" and len(info["hash"]) == 64
    assert (out / "brand.yaml").read_bytes() == (brand / "brand.yaml").read_bytes()
    entries = prepared(tmp_path)
    assert [e["file_name"] for e in entries] == [f"images/{i:05d}.png" for i in range(4)]
    assert {e["source"]: e["text"] for e in entries} == {
        "images/a.png": "shop visual 0",
        "images/sub/deeper/b.PNG": "shop visual 1",
        "images/c.jpg": "shop visual 2",
        "images/d.webp": "shop visual 3",
    }
    for e in entries:
        assert Image.open(out / e["file_name"]).size == (16, 16)
    assert (prepared_image(tmp_path, "images/sub/deeper/b.PNG") == BLUE).all()
    metrics = json.loads((tmp_path / "metrics/prepare.json").read_text())
    assert metrics == {"n_images": 4, "hash": info["hash"], "converted": {}, "exif_rotated": 0}
    # nothing temporary left beside the outputs
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["prepared"]
    assert sorted(p.name for p in (tmp_path / "metrics").iterdir()) == ["prepare.json"]


def test_every_problem_is_reported_at_once_one_line_per_file(tmp_path):
    brand = make_brand(
        tmp_path,
        {
            "images/good.png": noise_png(0),
            "images/corrupt.png": b"\x89PNG\r\n\x1a\n this is not really a png",
            "images/truncated.png": noise_png(1)[:120],
            "images/uncaptioned.png": noise_png(2),
            "images/blank.png": noise_png(3),
            "images/tiny.png": png(RED, size=(40, 8)),
            "images/same.png": noise_png(0),  # same bytes as good.png
            "images/recompressed.png": b"",  # same pixels as good.png, other bytes
            "images/anim.gif": b"GIF89a",
        },
    )
    Image.open(io.BytesIO(noise_png(0))).save(brand / "images/recompressed.png", compress_level=1)
    write_metadata(
        brand,
        [
            {"file_name": "images/good.png", "text": "fine"},
            {"file_name": "images/corrupt.png", "text": "broken"},
            {"file_name": "images/truncated.png", "text": "cut short"},
            {"file_name": "images/blank.png", "text": "   "},
            {"file_name": "images/tiny.png", "text": "too small"},
            {"file_name": "images/same.png", "text": "same bytes"},
            {"file_name": "images/recompressed.png", "text": "same pixels"},
            {"file_name": "images/gone.png", "text": "no such file"},
        ],
    )
    with (brand / "metadata.jsonl").open("a") as f:
        f.write('{"file_name": "images/x.png", "text": \n')  # line 9: broken JSON

    with pytest.raises(DatasetError) as err:
        prepare.run(params(), root=tmp_path)

    message = str(err.value)
    lines = message.splitlines()
    assert lines[0].startswith(str(brand))
    bad = {line.split(": ", 1)[0].strip(" -"): line for line in lines if line.startswith("  - ")}
    assert set(bad) == {
        "images/corrupt.png",
        "images/truncated.png",
        "images/uncaptioned.png",
        "images/blank.png",
        "images/tiny.png",
        "images/same.png",
        "images/recompressed.png",
        "images/anim.gif",
        "metadata.jsonl line 8",
        "metadata.jsonl line 9",
    }
    assert "cannot be decoded" in bad["images/corrupt.png"]
    assert "cannot be decoded" in bad["images/truncated.png"]
    assert "no caption" in bad["images/uncaptioned.png"]
    assert "empty or missing" in bad["images/blank.png"]
    assert "40x8 px is smaller than prepare.min_size=16" in bad["images/tiny.png"]
    assert "duplicate of images/good.png (same bytes)" in bad["images/same.png"]
    assert "duplicate of images/good.png (same pixels)" in bad["images/recompressed.png"]
    assert "unsupported image type .gif" in bad["images/anim.gif"]
    assert "images/gone.png is listed but there is no such image" in bad["metadata.jsonl line 8"]
    assert "not valid JSON" in bad["metadata.jsonl line 9"]
    assert "images/good.png" not in bad
    assert "metadata.jsonl" in lines[-1] and "dvc add" in lines[-1]  # what to do
    # a failed run writes nothing
    assert not (tmp_path / "data").exists() and not (tmp_path / "metrics").exists()


def test_several_problems_of_one_file_share_its_line(tmp_path):
    make_brand(tmp_path, {"images/bad.png": b"garbage"}, captions={})
    with pytest.raises(DatasetError) as err:
        prepare.run(params(), root=tmp_path)
    [line] = [ln for ln in str(err.value).splitlines() if "images/bad.png" in ln]
    assert "no caption" in line and "cannot be decoded" in line


def test_failure_keeps_the_previous_prepared_set(tmp_path):
    brand = make_brand(tmp_path, {"images/a.png": noise_png(0), "images/b.png": noise_png(1)})
    first = prepare.run(params(), root=tmp_path)
    (brand / "images/b.png").write_bytes(b"broken now")
    with pytest.raises(DatasetError, match="images/b.png"):
        prepare.run(params(), root=tmp_path)
    info = json.loads((tmp_path / "data/prepared/dataset.json").read_text())
    assert info["hash"] == first["hash"]
    assert len(list((tmp_path / "data/prepared/images").iterdir())) == 2


@pytest.mark.parametrize(
    ("mode", "color", "expected"),
    [
        ("L", 128, (128, 128, 128)),
        ("LA", (100, 255), (100, 100, 100)),
        ("RGBA", (*RED, 255), RED),
        ("RGBA", (*RED, 0), (255, 255, 255)),  # fully transparent: composited on white
        ("P", None, BLUE),
    ],
)
def test_non_rgb_modes_are_converted_not_rejected(tmp_path, mode, color, expected):
    if mode == "P":
        data = io.BytesIO()
        Image.new("RGB", (20, 20), BLUE).convert("P", palette=Image.Palette.ADAPTIVE).save(
            data, format="PNG"
        )
        payload = data.getvalue()
    else:
        payload = png(color, size=(20, 20), mode=mode)
    make_brand(tmp_path, {"images/x.png": payload})

    result = prepare.run(params(), root=tmp_path)

    assert result["converted"] == {mode: 1}
    pixels = prepared_image(tmp_path, "images/x.png")
    assert np.abs(pixels.astype(int) - expected).max() <= 1
    metrics = json.loads((tmp_path / "metrics/prepare.json").read_text())
    assert metrics["converted"] == {mode: 1}


def test_cmyk_jpeg_is_converted_to_rgb(tmp_path):
    buf = io.BytesIO()
    Image.new("CMYK", (24, 24), (0, 255, 255, 0)).save(buf, format="JPEG", quality=95)  # red ink
    make_brand(tmp_path, {"images/print.jpg": buf.getvalue()})

    result = prepare.run(params(), root=tmp_path)

    assert result["converted"] == {"CMYK": 1}
    red, green, blue = prepared_image(tmp_path, "images/print.jpg").reshape(-1, 3).mean(axis=0)
    assert red > 200 and green < 60 and blue < 60


def test_exif_orientation_is_applied(tmp_path):
    # Stored sideways: a wide image, red on the left and blue on the right, tagged "rotate 90 CW".
    stored = Image.new("RGB", (48, 24), BLUE)
    stored.paste(RED, (0, 0, 24, 24))
    exif = stored.getexif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    stored.save(buf, format="JPEG", quality=95, exif=exif.tobytes())
    make_brand(tmp_path, {"images/phone.jpg": buf.getvalue()})

    result = prepare.run(params(center_crop=False), root=tmp_path)

    assert result["exif_rotated"] == 1
    pixels = prepared_image(tmp_path, "images/phone.jpg").astype(int)
    assert pixels.shape == (32, 16, 3)  # upright: portrait, shorter side at the resolution
    top, bottom = pixels[:12].reshape(-1, 3).mean(0), pixels[-12:].reshape(-1, 3).mean(0)
    assert top[0] > 180 and top[2] < 80  # red on top after turning clockwise
    assert bottom[2] > 180 and bottom[0] < 80


def test_size_checks_apply_after_rotation_and_center_crop_makes_squares(tmp_path):
    wide = Image.new("RGB", (48, 32), GREEN)
    wide.paste(RED, (0, 0, 4, 32))  # a red strip on the left edge: cropped away
    buf = io.BytesIO()
    wide.save(buf, format="PNG")
    make_brand(tmp_path, {"images/wide.png": buf.getvalue()})

    prepare.run(params(), root=tmp_path)

    pixels = prepared_image(tmp_path, "images/wide.png")
    assert pixels.shape == (16, 16, 3)
    assert (np.abs(pixels.astype(int) - GREEN).max(axis=-1) <= 2).all()

    shutil.rmtree(tmp_path / "data")
    prepare.run(params(center_crop=False), root=tmp_path)
    assert prepared_image(tmp_path, "images/wide.png").shape == (16, 24, 3)


def test_hash_is_stable_and_follows_images_captions_and_kit(tmp_path):
    brand = make_brand(tmp_path, {"images/a.png": noise_png(0), "images/b.png": noise_png(1)})
    first = prepare.run(params(), root=tmp_path)["hash"]
    assert prepare.run(params(), root=tmp_path)["hash"] == first

    write_metadata(
        brand,
        [
            {"file_name": "images/a.png", "text": "other words"},
            {"file_name": "images/b.png", "text": "b"},
        ],
    )
    caption_changed = prepare.run(params(), root=tmp_path)["hash"]
    (brand / "images/b.png").write_bytes(noise_png(5))
    image_changed = prepare.run(params(), root=tmp_path)["hash"]
    (brand / "brand.yaml").write_text((brand / "brand.yaml").read_text() + "fonts: [Arial]\n")
    kit_changed = prepare.run(params(), root=tmp_path)["hash"]
    assert len({first, caption_changed, image_changed, kit_changed}) == 4


def test_missing_folder_and_bad_kit_say_where(tmp_path):
    with pytest.raises(DatasetError, match="brand folder not found") as err:
        prepare.run(params(), root=tmp_path)
    assert str(tmp_path / "brands/shop") in str(err.value)

    brand = make_brand(tmp_path, {"images/a.png": noise_png(0)})
    (brand / "brand.yaml").write_text("name: shop\npalette: []\ncolour: teal\n")
    with pytest.raises(BrandKitError) as err:
        prepare.run(params(), root=tmp_path)
    assert str(brand / "brand.yaml") in str(err.value) and "colour: unknown key" in str(err.value)


def test_missing_metadata_lists_every_image(tmp_path):
    brand = make_brand(tmp_path, {"images/a.png": noise_png(0), "images/b.png": noise_png(1)})
    (brand / "metadata.jsonl").unlink()
    with pytest.raises(DatasetError) as err:
        prepare.run(params(), root=tmp_path)
    message = str(err.value)
    assert "metadata.jsonl: not found" in message
    assert "images/a.png: no caption" in message and "images/b.png: no caption" in message


def test_the_generated_demo_brand_prepares_cleanly(tmp_path):
    generate_demo_brand(tmp_path / "brands/acme", name="acme", n_images=12, resolution=16, seed=0)
    p = parse_params(
        {
            "data": {"brand": "acme", "brands_dir": "brands"},
            "prepare": {"min_size": 16},
            "base": {"resolution": 16},
        }
    )
    result = prepare.run(p, root=tmp_path)
    assert result["n_images"] == 12 and result["brand"] == "acme"
    entries = prepared(tmp_path)
    assert all(e["text"].startswith("acme ") for e in entries)
    # already at the resolution: pixels pass through unchanged
    for e in entries[:3]:
        source = np.asarray(Image.open(tmp_path / "brands/acme" / e["source"]))
        assert np.array_equal(prepared_image(tmp_path, e["source"]), source)


def test_symlinked_images_as_dvc_links_them_are_accepted(tmp_path):
    store = tmp_path / "cache"
    store.mkdir()
    (store / "0").write_bytes(noise_png(0))
    (store / "1").write_bytes(noise_png(1))
    brand = make_brand(tmp_path, {})
    for i in range(2):
        (brand / f"images/{i}.png").symlink_to(store / str(i))
    write_metadata(brand, [{"file_name": f"images/{i}.png", "text": f"pic {i}"} for i in range(2)])

    result = prepare.run(params(), root=tmp_path)

    assert result["n_images"] == 2
    assert [e["source"] for e in prepared(tmp_path)] == ["images/0.png", "images/1.png"]
