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


@pytest.mark.parametrize("bad", ["Shop", "shop.eu", "bases", "my shop", 12])
def test_the_kit_name_is_a_brand_name(tmp_path, bad):
    with pytest.raises(BrandKitError, match=r"name:") as err:
        load_brand_kit(write_kit(tmp_path, {**MINIMAL, "name": bad}))
    assert str(tmp_path) in str(err.value)


def test_empty_palette_is_rejected(tmp_path):
    with pytest.raises(BrandKitError, match="palette"):
        load_brand_kit(write_kit(tmp_path, {"name": "shop", "palette": []}))


# ---------------------------------------------------------------------------------------------
# Layouts (where compose puts the logo and text) and the brand font

BRAND = {
    "name": "acme",
    "palette": [
        {"name": "teal", "hex": "#1A9E9E"},
        {"name": "white", "hex": "#F5F5F5"},
        {"name": "orange", "hex": "#F58C1E"},
        {"name": "ink", "hex": "#14202B"},
    ],
    "logo": {"file": "logo.png", "placement": ["bottom-right"], "min_width_share": 0.08},
}
LAYOUT_YAML = """
font_file: fonts/AcmeSans-Bold.ttf
layouts:
  "1:1":
    safe_margin: 0.05
    logo: {x: 0.75, y: 0.82, w: 0.2, h: 0.13}
    headline:
      box: {x: 0.05, y: 0.05, w: 0.9, h: 0.25}
      align: center
      valign: top
      max_size: 0.09
      min_size: 0.04
      color: white
    cta:
      box: {x: 0.05, y: 0.82, w: 0.4, h: 0.13}
      max_size: 0.05
      min_size: 0.03
      color: ink
      background: orange
"""


def with_layout(ratio: str, **layout) -> dict:
    return {**BRAND, "layouts": {ratio: layout}}


def test_layouts_and_font_file_load_and_kits_without_them_keep_working(tmp_path):
    kit = load_brand_kit(write_kit(tmp_path, {**BRAND, **yaml.safe_load(LAYOUT_YAML)}))
    assert kit.font_file == "fonts/AcmeSans-Bold.ttf"
    layout = kit.layout_for("1:1")
    assert layout.logo is not None and layout.logo.placement == "bottom-right"
    assert layout.headline is not None and layout.headline.color == "white"
    assert layout.cta is not None and layout.cta.background == "orange"
    assert layout.cta.align == "left" and layout.cta.valign == "middle"  # the defaults

    plain = load_brand_kit(write_kit(tmp_path, MINIMAL))
    assert plain.layouts == {} and plain.font_file is None


@pytest.mark.parametrize("ratio", ["1:1", "4:5", "9:16", "16:9", "21:9", "1:3"])
@pytest.mark.parametrize(
    "placement", ["top-left", "top-right", "bottom-left", "bottom-right", "center"]
)
def test_the_default_layout_is_valid_and_follows_the_logo_placement(ratio, placement):
    kit = BrandKit.model_validate({**BRAND, "logo": {"file": "l.png", "placement": [placement]}})
    layout = kit.layout_for(ratio)
    assert layout.logo is not None and layout.logo.placement == placement
    # what default_layout gives passes every check a brand's own layout must pass
    again = {**BRAND, "logo": {"file": "l.png", "placement": [placement]}}
    BrandKit.model_validate({**again, "layouts": {ratio: layout.model_dump()}})
    boxes = layout.boxes()
    assert set(boxes) == {"logo", "headline.box", "cta.box"}
    for a, b in [("logo", "headline.box"), ("logo", "cta.box"), ("headline.box", "cta.box")]:
        x_apart = boxes[a].x + boxes[a].w <= boxes[b].x or boxes[b].x + boxes[b].w <= boxes[a].x
        y_apart = boxes[a].y + boxes[a].h <= boxes[b].y or boxes[b].y + boxes[b].h <= boxes[a].y
        assert x_apart or y_apart, f"{a} overlaps {b}"


TEXT = {"box": {"x": 0.1, "y": 0.1, "w": 0.5, "h": 0.2}}


@pytest.mark.parametrize(
    ("raw", "key", "message"),
    [
        (with_layout("4x5"), "layouts.4x5", "not an aspect ratio like 4:5"),
        (
            with_layout("1:1", headline={"box": {"x": 0.5, "y": 0.1, "w": 0.6, "h": 0.2}}),
            "layouts.1:1.headline.box",
            "x + w and y + h must be at most 1",
        ),
        (
            with_layout("1:1", headline={"box": {"x": -0.1, "y": 0.1, "w": 0.5, "h": 0.2}}),
            "layouts.1:1.headline.box.x",
            "greater than or equal to 0",
        ),
        (
            with_layout("1:1", cta={**TEXT, "background": "navy"}),
            "layouts.1:1.cta.background",
            "not a palette colour (palette: teal, white, orange, ink) (got 'navy')",
        ),
        (
            with_layout("4:5", headline={**TEXT, "color": "Teal"}),
            "layouts.4:5.headline.color",
            "not a palette colour",
        ),
        (
            with_layout("9:16", headline={"box": {"x": 0.02, "y": 0.1, "w": 0.5, "h": 0.2}}),
            "layouts.9:16.headline.box",
            "outside the safe margin 0.05",
        ),
        (
            with_layout("1:1", logo={"x": 0.05, "y": 0.05, "w": 0.2, "h": 0.1}),
            "layouts.1:1.logo",
            "the box is at top-left; logo.placement allows bottom-right",
        ),
        (
            with_layout("1:1", logo={"x": 0.9, "y": 0.85, "w": 0.05, "h": 0.1}),
            "layouts.1:1.logo.w",
            "narrower than logo.min_width_share 0.08 (got 0.05)",
        ),
        (
            with_layout("1:1", cta={**TEXT, "color": "white", "background": "orange"}),
            "layouts.1:1.cta",
            "white on orange has contrast 2.23:1, below min_text_contrast 4.5:1",
        ),
        (
            with_layout("1:1", cta={**TEXT, "min_size": 0.06, "max_size": 0.04}),
            "layouts.1:1.cta",
            "min_size 0.06 is larger than max_size 0.04",
        ),
        (
            with_layout("1:1", cta={**TEXT, "min_size": 0.2, "max_size": 0.3}),
            "layouts.1:1.cta",
            "box.h 0.2 cannot hold one line at min_size 0.2",
        ),
        (with_layout("1:1", headline={**TEXT, "font": "x"}), "layouts.1:1.headline.font", ""),
        ({**BRAND, "font_file": "AcmeSans.woff2"}, "font_file", "not a .ttf or .otf font file"),
        ({**BRAND, "font_file": "../other/Acme.ttf"}, "font_file", "inside the brand folder"),
    ],
)
def test_a_bad_layout_or_font_file_is_an_error_naming_the_key(tmp_path, raw, key, message):
    path = write_kit(tmp_path, raw)
    with pytest.raises(BrandKitError) as err:
        load_brand_kit(path)
    text = str(err.value)
    assert str(path) in text and key in text and message in text, text
