"""`brandforge evaluate images`: the compliance report of every image in a folder.

No model and no training run: any folder of PNG, JPEG or WebP files (nested folders too) is scored
against a brand kit. A file that cannot be decoded is reported as unreadable, never crashed on.
The report's schema is documented in README.md ("Compliance report").
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import warnings
from collections import Counter
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from brandforge.brandkit import BrandKit, BrandKitError
from evaluation.compliance import ComplianceReport, Limits, brand_limits, compliance_report
from evaluation.quality import MIN_SIDE

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")


class UnreadableImage(ValueError):
    """The file is not a decodable image."""


def find_images(folder: Path) -> list[Path]:
    """Every PNG/JPEG/WebP file under `folder`, sorted; hidden files and folders are skipped."""
    found = []
    for path in folder.rglob("*"):
        rel = path.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS:
            found.append(path)
    return sorted(found)


def read_image(path: Path) -> np.ndarray:
    """An sRGB uint8 (H, W, 3) array: EXIF orientation applied, transparency over white."""
    from PIL import Image, ImageOps

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as opened:
                opened.load()
                img: Image.Image = ImageOps.exif_transpose(opened)
                if img.mode in ("RGBA", "LA", "PA") or (
                    img.mode == "P" and "transparency" in img.info
                ):
                    rgba = img.convert("RGBA")
                    canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                    img = Image.alpha_composite(canvas, rgba)
                rgb = img.convert("RGB")
    except (
        OSError,
        ValueError,
        SyntaxError,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
    ) as err:
        raise UnreadableImage(f"cannot decode image: {err}") from None
    if min(rgb.width, rgb.height) < MIN_SIDE:
        raise UnreadableImage(
            f"image is {rgb.width}x{rgb.height} px, too small to assess (need {MIN_SIDE} px a side)"
        )
    return np.asarray(rgb, dtype=np.uint8)


def load_logo(kit: BrandKit, brand_dir: Path) -> np.ndarray | None:
    """The brand's logo as an RGBA array, when the kit names one; a missing file is an error."""
    if kit.logo is None:
        return None
    from PIL import Image

    path = brand_dir / kit.logo.file
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGBA"), dtype=np.uint8)
    except FileNotFoundError:
        raise BrandKitError(
            f"{brand_dir / 'brand.yaml'}: logo.file {kit.logo.file!r} not found at {path}"
        ) from None
    except OSError as err:
        raise BrandKitError(f"{path}: the brand logo cannot be read: {err}") from None


def image_entry(rel: str, report: ComplianceReport) -> dict[str, Any]:
    return {"file": rel, **report.to_dict()}


def unreadable_entry(rel: str, why: str) -> dict[str, Any]:
    return {
        "file": rel,
        "error": why,
        "score": None,
        "passed": False,
        "violations": [
            {
                "rule": "unreadable",
                "value": None,
                "limit": None,
                "severity": "error",
                "message": why,
            }
        ],
        "metrics": {},
    }


def summarise(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts, pass rate, mean score and how often each rule was violated."""
    scored = [e for e in entries if e["score"] is not None]
    passed = sum(1 for e in scored if e["passed"])
    rules: Counter[str] = Counter(
        v["rule"] for e in entries for v in e["violations"] if v["rule"] != "unreadable"
    )
    return {
        "images": len(entries),
        "scored": len(scored),
        "passed": passed,
        "failed": len(scored) - passed,
        "unreadable": len(entries) - len(scored),
        "pass_rate": round(passed / len(scored), 4) if scored else None,
        "mean_score": round(float(np.mean([e["score"] for e in scored])), 4) if scored else None,
        "violations": dict(sorted(rules.items())),
    }


def evaluate_folder(
    folder: Path, kit: BrandKit, *, brand_dir: Path, limits: Limits | None = None
) -> dict[str, Any]:
    """Score every image under `folder`; returns the whole report (see README for the schema)."""
    from tqdm.auto import tqdm

    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a folder of images")
    limits = limits or brand_limits(kit)
    logo = load_logo(kit, brand_dir)
    files = find_images(folder)
    entries = []
    for path in tqdm(files, desc="compliance", unit="img", disable=not files):
        rel = path.relative_to(folder).as_posix()
        try:
            image = read_image(path)
        except UnreadableImage as err:
            log.warning("%s: %s", path, err)
            entries.append(unreadable_entry(rel, str(err)))
            continue
        entries.append(image_entry(rel, compliance_report(image, kit, logo=logo, limits=limits)))
    return {
        "brand": kit.name,
        "folder": str(folder),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "color_tolerance": kit.color_tolerance,
        "limits": asdict(limits),
        "summary": summarise(entries),
        "images": entries,
    }


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write atomically: an interrupted run never leaves half a report over a good one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
