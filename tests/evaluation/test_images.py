"""`brandforge evaluate images`: a folder of files on disk, the JSON report, the exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from brandforge.cli import app
from evaluation.images import UnreadableImage, find_images, read_image
from tests.evaluation.test_compliance import banner

MINIMAL_KIT = """\
name: acme
palette:
  - {name: teal, hex: "#1A9E9E", share: 0.4}
  - {name: white, hex: "#F5F5F5", share: 0.4}
  - {name: orange, hex: "#F58C1E", share: 0.2}
forbidden_colors: ["#DC2828"]
color_tolerance: 12        # CIEDE2000
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Good and bad images in PNG, JPEG and WebP, nested, plus files that are not images."""
    images = tmp_path / "images"
    (images / "campaign" / "week2").mkdir(parents=True)
    good = banner(256)
    Image.fromarray(good).save(images / "good.png")
    Image.fromarray(good).save(images / "campaign" / "good.jpg", quality=92)
    Image.fromarray(good).save(images / "campaign" / "week2" / "good.webp", lossless=True)
    red = good.copy()
    red[180:230, 10:60] = (0xDC, 0x28, 0x28)
    Image.fromarray(red).save(images / "campaign" / "red_badge.png")
    Image.fromarray(np.zeros((128, 128, 3), np.uint8)).save(images / "blank.png")
    (images / "campaign" / "truncated.png").write_bytes((images / "good.png").read_bytes()[:200])
    (images / "notes.txt").write_text("not an image")
    (images / ".hidden").mkdir()
    Image.fromarray(good).save(images / ".hidden" / "skip.png")
    return images


@pytest.fixture
def kit(tmp_path: Path) -> Path:
    path = tmp_path / "brand" / "brand.yaml"
    path.parent.mkdir()
    path.write_text(MINIMAL_KIT)
    return path


def _invoke(*args: str):
    return CliRunner().invoke(app, ["evaluate", "images", *args])


def test_every_image_is_scored_and_the_report_follows_the_schema(folder, kit, tmp_path):
    out = tmp_path / "out" / "report.json"
    result = _invoke(str(folder), "--brand", str(kit), "--out", str(out))
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    by_file = {e["file"]: e for e in report["images"]}
    assert sorted(by_file) == [
        "blank.png",
        "campaign/good.jpg",
        "campaign/red_badge.png",
        "campaign/truncated.png",
        "campaign/week2/good.webp",
        "good.png",
    ]
    for name in ("good.png", "campaign/good.jpg", "campaign/week2/good.webp"):
        entry = by_file[name]
        assert entry["passed"] and entry["violations"] == [], entry["violations"]
        assert 0.8 < entry["score"] <= 1
        assert entry["metrics"]["palette_adherence"] > 0.8
    badge = by_file["campaign/red_badge.png"]
    assert not badge["passed"]
    (forbidden,) = [v for v in badge["violations"] if v["rule"] == "forbidden_color"]
    assert forbidden["value"] == pytest.approx(2500 / 256**2, rel=0.15)
    assert forbidden["limit"] == 0.005
    blank = by_file["blank.png"]
    assert not blank["passed"] and blank["score"] == 0
    assert "blank" in [v["rule"] for v in blank["violations"]]
    broken = by_file["campaign/truncated.png"]
    assert broken["score"] is None and not broken["passed"]
    assert "cannot decode" in broken["error"]

    s = report["summary"]
    assert (s["images"], s["passed"], s["failed"], s["unreadable"]) == (6, 3, 2, 1)
    assert s["pass_rate"] == 0.6
    assert s["violations"]["forbidden_color"] == 1
    assert report["brand"] == "acme" and report["limits"]["max_forbidden_share"] == 0.005
    assert "3 passed, 2 failed, 1 unreadable" in result.output


def test_fail_on_violation_sets_the_exit_status(folder, kit, tmp_path):
    out = tmp_path / "report.json"
    assert (
        _invoke(str(folder), "-b", str(kit), "-o", str(out), "--fail-on-violation").exit_code == 1
    )
    assert out.is_file(), "the report is written before the exit"
    clean = tmp_path / "clean"
    clean.mkdir()
    Image.fromarray(banner(256)).save(clean / "a.png")
    assert (
        _invoke(str(clean), "-b", str(kit.parent), "-o", str(out), "--fail-on-violation").exit_code
        == 0
    )


def test_a_bad_brand_kit_or_folder_is_a_clear_error(folder, kit, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(MINIMAL_KIT.replace("color_tolerance", "colour_tolerance"))
    result = _invoke(str(folder), "--brand", str(bad), "--out", str(tmp_path / "r.json"))
    assert result.exit_code == 2
    assert "colour_tolerance" in result.output
    assert not (tmp_path / "r.json").exists()
    result = _invoke(
        str(tmp_path / "missing"), "--brand", str(kit), "--out", str(tmp_path / "r.json")
    )
    assert result.exit_code == 2 and "not a folder" in result.output


def test_a_brand_logo_that_is_missing_is_named(folder, kit, tmp_path):
    data = yaml.safe_load(MINIMAL_KIT)
    data["logo"] = {"file": "logo.png"}
    kit.write_text(yaml.safe_dump(data))
    result = _invoke(str(folder), "--brand", str(kit), "--out", str(tmp_path / "r.json"))
    assert result.exit_code == 2 and "logo.png" in result.output


def test_images_are_read_upright_and_flattened_on_white(tmp_path):
    rgba = np.zeros((40, 60, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:, :30, 3] = 255  # left half opaque red, right half transparent
    Image.fromarray(rgba).save(tmp_path / "a.png")
    image = read_image(tmp_path / "a.png")
    assert image.shape == (40, 60, 3)
    assert tuple(image[0, 0]) == (200, 0, 0) and tuple(image[0, 59]) == (255, 255, 255)

    rotated = Image.fromarray(np.zeros((40, 60, 3), np.uint8))
    exif = rotated.getexif()
    exif[0x0112] = 6  # orientation: rotate 90° on display
    rotated.save(tmp_path / "r.jpg", exif=exif)
    assert read_image(tmp_path / "r.jpg").shape == (60, 40, 3)

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "tiny.png")
    with pytest.raises(UnreadableImage, match="too small"):
        read_image(tmp_path / "tiny.png")


def test_find_images_skips_hidden_and_other_files(folder):
    names = [p.relative_to(folder).as_posix() for p in find_images(folder)]
    assert ".hidden/skip.png" not in names and "notes.txt" not in names
    assert len(names) == 6
