from pathlib import Path

import pytest
import yaml

from brandforge.brandkit import BrandKit, BrandKitError, load_brand_kit

MINIMAL = {"name": "shop", "palette": [{"name": "navy", "hex": "#1a2b3c"}]}


def write_kit(tmp_path: Path, raw: dict | str) -> Path:
    path = tmp_path / "brand.yaml"
    path.write_text(raw if isinstance(raw, str) else yaml.safe_dump(raw))
    return path


def test_minimal_kit_is_accepted_with_defaults(tmp_path):
    kit = load_brand_kit(write_kit(tmp_path, MINIMAL))
    assert kit.name == "shop"
    assert kit.palette[0].hex == "#1A2B3C"  # normalised to upper case
    assert kit.palette[0].rgb == (0x1A, 0x2B, 0x3C)
    assert kit.color_tolerance == 12.0
    assert kit.aspect_ratios == ["1:1"]
    assert kit.phrase == "shop"  # no trigger: prompts use the name


def test_a_folder_path_reads_its_brand_yaml(tmp_path):
    write_kit(tmp_path, {**MINIMAL, "trigger": "shopstyle"})
    assert load_brand_kit(tmp_path).phrase == "shopstyle"


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({**MINIMAL, "palete": []}, "palete"),
        (
            {**MINIMAL, "palette": [{"name": "navy", "hex": "#1A2B3C", "shade": 1}]},
            "palette.0.shade",
        ),
        ({**MINIMAL, "quality": {"min_sharpnes": 1.0}}, "quality.min_sharpnes"),
    ],
)
def test_unknown_key_is_an_error_naming_it_and_the_file(tmp_path, raw, key):
    path = write_kit(tmp_path, raw)
    with pytest.raises(BrandKitError) as err:
        load_brand_kit(path)
    assert str(path) in str(err.value)
    assert f"{key}: unknown key" in str(err.value)


@pytest.mark.parametrize("bad", ["1A2B3C", "#12345", "#GG0000", "teal"])
def test_bad_hex_is_rejected(tmp_path, bad):
    with pytest.raises(BrandKitError, match=r"palette\.0\.hex") as err:
        load_brand_kit(write_kit(tmp_path, {**MINIMAL, "palette": [{"name": "x", "hex": bad}]}))
    assert "#RRGGBB" in str(err.value)


def test_bad_forbidden_colour_is_rejected(tmp_path):
    with pytest.raises(BrandKitError, match="forbidden_colors"):
        load_brand_kit(write_kit(tmp_path, {**MINIMAL, "forbidden_colors": ["red"]}))


def test_palette_shares_above_one_are_rejected(tmp_path):
    palette = [
        {"name": "a", "hex": "#000000", "share": 0.7},
        {"name": "b", "hex": "#FFFFFF", "share": 0.5},
    ]
    with pytest.raises(BrandKitError, match=r"add up to 1\.200, more than 1"):
        load_brand_kit(write_kit(tmp_path, {**MINIMAL, "palette": palette}))


def test_shares_summing_to_exactly_one_are_fine():
    palette = [
        {"name": "a", "hex": "#000000", "share": 0.45},
        {"name": "b", "hex": "#FFFFFF", "share": 0.35},
        {"name": "c", "hex": "#FF0000", "share": 0.20},
    ]
    assert len(BrandKit.model_validate({**MINIMAL, "palette": palette}).palette) == 3


def test_duplicate_colour_names_and_bad_aspect_ratios_are_rejected(tmp_path):
    palette = [{"name": "a", "hex": "#000000"}, {"name": "a", "hex": "#FFFFFF"}]
    with pytest.raises(BrandKitError, match="unique"):
        load_brand_kit(write_kit(tmp_path, {**MINIMAL, "palette": palette}))
    with pytest.raises(BrandKitError, match="aspect ratio"):
        load_brand_kit(write_kit(tmp_path, {**MINIMAL, "aspect_ratios": ["4x5"]}))


def test_missing_file_invalid_yaml_and_non_mapping_name_the_file(tmp_path):
    with pytest.raises(BrandKitError, match="brand kit not found"):
        load_brand_kit(tmp_path / "nowhere" / "brand.yaml")
    path = write_kit(tmp_path, "name: [unclosed\n")
    with pytest.raises(BrandKitError, match="not valid YAML") as err:
        load_brand_kit(path)
    assert str(path) in str(err.value)
    with pytest.raises(BrandKitError, match="expected a mapping"):
        load_brand_kit(write_kit(tmp_path, "- just\n- a list\n"))


def test_empty_palette_is_rejected(tmp_path):
    with pytest.raises(BrandKitError, match="palette"):
        load_brand_kit(write_kit(tmp_path, {"name": "shop", "palette": []}))
