"""`prepare`: validate a brand folder, then write the prepared dataset and its content hash.

Validation reads every file itself first so that one run reports every problem (a user fixing
a dataset should not discover bad files one at a time). Only a clean folder is then loaded through
`datasets`' `imagefolder` (proving the layout works for Hugging Face tools) and written to
`data/prepared` as square RGB PNGs at the base model's resolution, with `dataset.json` holding the
content hash that training and the registry log as lineage.

A brand folder's top-level `negatives/` folder (rejected production assets that
`brandforge data feedback` exports, with their own `negatives/metadata.jsonl`) is versioned with
the brand but is not training data: validation, the `imagefolder` check, the prepared set and the
content hash all ignore it.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from tqdm import tqdm

from brandforge.brandkit import load_brand_kit
from brandforge.params import Params
from brandforge.pipeline import PREPARED_DIR

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")
# Other formats `imagefolder` would pick up; refusing them keeps its view and ours identical.
_OTHER_IMAGE_EXTENSIONS = frozenset(
    ".apng .bmp .gif .ico .jfif .jp2 .jpe .pbm .pgm .pnm .ppm .psd .tga .tif .tiff".split()
)
_ORIENTATION = 0x0112
# Examples of what the brand must NOT look like (serving.assets.feedback writes them): never
# trained on.
NEGATIVES_DIR = "negatives"
METRICS_FILE = "metrics/prepare.json"


class DatasetError(ValueError):
    """The brand folder has bad files; the message lists every one and why."""


@dataclass(frozen=True)
class SourceImage:
    """One validated source file."""

    rel_path: str  # posix path relative to the brand folder, as in metadata.jsonl
    caption: str
    sha256: str


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB; transparent pixels are composited on white."""
    if image.mode == "RGB":
        return image
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode.startswith("I") or image.mode == "F":
        # 16-bit or float greyscale: `convert` would clip everything above 255 to white.
        values = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if values.max(initial=0) > 255 else 255.0
        image = Image.fromarray(np.clip(values / peak * 255, 0, 255).round().astype(np.uint8))
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        white = Image.new("RGB", rgba.size, (255, 255, 255))
        white.paste(rgba, mask=rgba.getchannel("A"))
        return white
    return image.convert("RGB")


def decode_image(data: bytes) -> tuple[Image.Image, str, bool]:
    """Decode bytes fully, apply the EXIF orientation and convert to RGB.

    Returns the RGB image, the file's original mode and whether an EXIF rotation was applied.
    """
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        mode = image.mode
        orientation = image.getexif().get(_ORIENTATION, 1)
        rotated = orientation not in (None, 1)
        upright = ImageOps.exif_transpose(image) if rotated else image
        return to_rgb(upright).copy(), mode, rotated


def resize_to(image: Image.Image, *, resolution: int, center_crop: bool) -> Image.Image:
    """Scale the shorter side to `resolution`, then optionally center-crop to a square."""
    width, height = image.size
    scale = resolution / min(width, height)
    size = (max(resolution, round(width * scale)), max(resolution, round(height * scale)))
    if size != image.size:
        image = image.resize(size, Image.Resampling.LANCZOS)
    if center_crop and size != (resolution, resolution):
        left, top = (size[0] - resolution) // 2, (size[1] - resolution) // 2
        image = image.crop((left, top, left + resolution, top + resolution))
    return image


def content_hash(kit_bytes: bytes, sources: list[SourceImage]) -> str:
    """sha256 over the kit and every (path, file sha256, caption): changes with any of them."""
    digest = hashlib.sha256()
    digest.update(b"brand.yaml\0" + kit_bytes)
    for src in sorted(sources, key=lambda s: s.rel_path):
        digest.update(f"\0{src.rel_path}\0{src.sha256}\0{src.caption}".encode())
    return digest.hexdigest()


class _Problems:
    """Problems keyed by file (or metadata line), so the report has one line per bad file."""

    def __init__(self) -> None:
        self.by_key: dict[str, list[str]] = {}

    def add(self, key: str, why: str) -> None:
        self.by_key.setdefault(key, []).append(why)

    def __bool__(self) -> bool:
        return bool(self.by_key)

    def lines(self) -> list[str]:
        def order(key: str) -> tuple[int, int, str]:
            if key.startswith("metadata.jsonl line "):
                return (0, int(key.rsplit(" ", 1)[1]), key)
            return (1, 0, key)

        return [
            f"  - {key}: {'; '.join(self.by_key[key])}" for key in sorted(self.by_key, key=order)
        ]


def _skipped(rel: PurePosixPath) -> bool:
    # `imagefolder` ignores hidden files and folders and `__special__` folders; so do we.
    # `negatives/` it would read, so `_imagefolder_files` leaves it out of what it loads.
    if rel.parts[:1] == (NEGATIVES_DIR,):
        return True
    return any(part.startswith(".") or part.startswith("__") for part in rel.parts)


def _imagefolder_files(brand_dir: Path) -> dict[str, Any]:
    """The files `load_dataset("imagefolder", data_dir=brand_dir)` would read, per split, minus
    the `negatives/` folder: the same discovery `datasets` runs itself, then filtered.

    Passed on as `data_files`, already resolved (`DataFilesList`), so file names are not
    re-read as glob patterns.
    """
    from datasets.data_files import DataFilesDict, DataFilesList, get_data_patterns

    base = brand_dir.expanduser().resolve().as_posix()
    found = DataFilesDict.from_patterns(get_data_patterns(base), base_path=base)
    kept: dict[str, Any] = {}
    for split, files in found.items():
        pairs = [
            (name, origin)
            for name, origin in zip(files, files.origin_metadata, strict=True)
            if not _skipped(PurePosixPath(os.path.relpath(name, base)))
        ]
        if pairs:
            kept[split] = DataFilesList([n for n, _ in pairs], [o for _, o in pairs])
    return kept


def _find_images(brand_dir: Path, problems: _Problems) -> list[str]:
    found = []
    for path in sorted(brand_dir.rglob("*")):
        rel = PurePosixPath(path.relative_to(brand_dir).as_posix())
        if not path.is_file() or _skipped(rel):
            continue
        suffix = path.suffix.lower()
        if suffix in IMAGE_EXTENSIONS:
            found.append(str(rel))
        elif suffix in _OTHER_IMAGE_EXTENSIONS:
            problems.add(
                str(rel),
                f"unsupported image type {suffix} (convert it to {', '.join(IMAGE_EXTENSIONS)})",
            )
    return found


def _read_captions(brand_dir: Path, problems: _Problems) -> dict[str, tuple[int, Any]]:
    """file_name -> (line number, raw text value) from metadata.jsonl; bad lines go to problems."""
    path = brand_dir / "metadata.jsonl"
    captions: dict[str, tuple[int, Any]] = {}
    if not path.is_file():
        problems.add("metadata.jsonl", "not found (every image needs a caption line there)")
        return captions
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        key = f"metadata.jsonl line {number}"
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as err:
            problems.add(key, f"not valid JSON ({err.msg} at column {err.colno})")
            continue
        if not isinstance(entry, dict) or not isinstance(entry.get("file_name"), str):
            problems.add(key, 'expected an object with a "file_name" string')
            continue
        name = PurePosixPath(entry["file_name"].removeprefix("./"))
        if name.is_absolute() or ".." in name.parts:
            problems.add(
                key, f"file_name {entry['file_name']!r} must be relative to the brand folder"
            )
            continue
        if str(name) in captions:
            problems.add(key, f"{name} is already captioned on line {captions[str(name)][0]}")
            continue
        captions[str(name)] = (number, entry.get("text"))
    return captions


def validate_brand_dir(
    brand_dir: Path, *, min_size: int
) -> tuple[list[SourceImage], dict[str, Any]]:
    """Check every file of a brand folder; raises DatasetError listing every bad file.

    Returns the valid sources (sorted by path) and statistics: {"converted": {mode: n},
    "exif_rotated": n}.
    """
    problems = _Problems()
    images = _find_images(brand_dir, problems)
    captions = _read_captions(brand_dir, problems)

    for name, (number, _) in captions.items():
        if name not in images:
            problems.add(
                f"metadata.jsonl line {number}", f"{name} is listed but there is no such image"
            )

    sources: list[SourceImage] = []
    converted: Counter[str] = Counter()
    exif_rotated = 0
    by_bytes: dict[str, str] = {}
    by_pixels: dict[str, str] = {}
    for rel in tqdm(images, desc="validate", unit="img"):
        number, text = captions.get(rel, (0, None))
        if not number:
            problems.add(rel, "no caption (add a line to metadata.jsonl)")
        elif not isinstance(text, str) or not text.strip():
            problems.add(rel, f'empty or missing "text" caption (metadata.jsonl line {number})')

        data = (brand_dir / rel).read_bytes()
        file_hash = hashlib.sha256(data).hexdigest()
        if file_hash in by_bytes:
            problems.add(rel, f"exact duplicate of {by_bytes[file_hash]} (same bytes)")
            continue
        by_bytes[file_hash] = rel
        try:
            image, mode, rotated = decode_image(data)
        except UnidentifiedImageError:
            problems.add(rel, "cannot be decoded (not an image, or an unknown format)")
            continue
        except Exception as err:  # PIL raises many types for broken files; all mean "unreadable"
            problems.add(rel, f"cannot be decoded ({type(err).__name__}: {err})")
            continue
        width, height = image.size
        if min(width, height) < min_size:
            problems.add(rel, f"{width}x{height} px is smaller than prepare.min_size={min_size}")
        pixel_hash = hashlib.sha256(f"{width}x{height}".encode() + image.tobytes()).hexdigest()
        if pixel_hash in by_pixels:
            problems.add(rel, f"exact duplicate of {by_pixels[pixel_hash]} (same pixels)")
        by_pixels.setdefault(pixel_hash, rel)
        if rel not in problems.by_key:
            if mode != "RGB":
                converted[mode] += 1
            exif_rotated += rotated
            sources.append(SourceImage(rel, str(text).strip(), file_hash))

    if not images and not problems:
        problems.add("images/", "no images found (put .png/.jpg/.webp files under images/)")
    if problems:
        lines = problems.lines()
        raise DatasetError(
            "\n".join(
                [
                    f"{brand_dir}: {len(lines)} bad file(s) or metadata line(s):",
                    *lines,
                    'Fix or remove them (captions are lines of metadata.jsonl like {"file_name": '
                    '"images/x.png", "text": "caption"}), then `dvc add` the brand folder again '
                    "and rerun prepare.",
                ]
            )
        )
    stats = {
        "converted": dict(sorted(converted.items())),
        "exif_rotated": exif_rotated,
    }
    return sources, stats


def _relative(path: str, brand_dir: Path) -> str:
    """`path` relative to the brand folder, without following file symlinks (DVC's cache links)."""
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(brand_dir))
    if rel.startswith(".."):  # the brand folder itself was reached through a symlink
        folder = os.path.realpath(os.path.dirname(path))
        rel = os.path.relpath(os.path.join(folder, os.path.basename(path)), brand_dir.resolve())
    return Path(rel).as_posix()


def _load_with_datasets(brand_dir: Path, sources: list[SourceImage]) -> None:
    """Load the folder with `imagefolder` and check it sees exactly the validated files."""
    import datasets

    # A throwaway cache: this load is a check, and a persistent cache would only pile up copies.
    with tempfile.TemporaryDirectory(prefix="brandforge-imagefolder-") as cache_dir:
        try:
            dataset = datasets.load_dataset(
                "imagefolder",
                data_files=_imagefolder_files(brand_dir),
                split="train",
                cache_dir=cache_dir,
            )
        except Exception as err:  # e.g. metadata lines whose extra fields disagree in type
            raise DatasetError(
                f"{brand_dir}: `datasets` cannot load it as an imagefolder "
                f"({type(err).__name__}: {err}); check metadata.jsonl's fields, and rename "
                "files or folders named like splits (test, eval, validation, train)"
            ) from err
        dataset = dataset.cast_column("image", datasets.Image(decode=False))
        seen = {_relative(row["image"]["path"], brand_dir): row.get("text") for row in dataset}
        del dataset
    expected = {s.rel_path: s.caption for s in sources}
    if set(seen) != set(expected):
        missing = sorted(set(expected) - set(seen))[:5]
        extra = sorted(set(seen) - set(expected))[:5]
        raise DatasetError(
            f"{brand_dir}: `datasets` imagefolder sees {len(seen)} images but validation found "
            f"{len(expected)} (not loaded: {missing}, unexpected: {extra}); folders named like "
            "splits (train/, test/, validation/) change what imagefolder loads, so rename them"
        )
    differ = sorted(k for k, text in seen.items() if str(text).strip() != expected[k])
    if differ:
        raise DatasetError(
            f"{brand_dir}: `datasets` imagefolder reads other captions than metadata.jsonl for "
            f"{differ[:5]}; is there a second metadata file in a subfolder?"
        )


def _write_atomically(target: Path, fill: Callable[[Path], None]) -> None:
    """Run fill(tmp_dir) in a sibling temp dir, then swap it in place of `target`."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    tmp.chmod(0o755)
    try:
        fill(tmp)
        old = target.parent / f".{target.name}.old-{tmp.name.rsplit('-', 1)[-1]}"
        if target.exists():
            target.rename(old)
        tmp.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def run(params: Params, *, root: Path) -> dict[str, Any]:
    """Validate `data.brand` and write `data/prepared` and `metrics/prepare.json`."""
    root = Path(root)
    source = f"{params.data.brands_dir.rstrip('/')}/{params.data.brand}"
    brand_dir = root / source
    if not brand_dir.is_dir():
        raise DatasetError(
            f"{brand_dir}: brand folder not found (set data.brand in params.yaml, or add the "
            f"folder with brand.yaml, images/ and metadata.jsonl and `dvc add` it)"
        )
    kit = load_brand_kit(brand_dir / "brand.yaml")
    kit_bytes = (brand_dir / "brand.yaml").read_bytes()
    sources, stats = validate_brand_dir(brand_dir, min_size=params.prepare.min_size)
    _load_with_datasets(brand_dir, sources)

    resolution = params.base.resolution
    dataset_hash = content_hash(kit_bytes, sources)
    info: dict[str, Any] = {
        "brand": params.data.brand,
        "hash": dataset_hash,
        "n_images": len(sources),
        "resolution": resolution,
        "source": source,
    }

    def fill(out: Path) -> None:
        (out / "images").mkdir()
        lines = []
        for index, src in enumerate(tqdm(sources, desc="prepare", unit="img")):
            image, _, _ = decode_image((brand_dir / src.rel_path).read_bytes())
            image = resize_to(image, resolution=resolution, center_crop=params.prepare.center_crop)
            file_name = f"images/{index:05d}.png"
            image.save(out / file_name, format="PNG", compress_level=6)
            lines.append(
                json.dumps({"file_name": file_name, "text": src.caption, "source": src.rel_path})
            )
        (out / "metadata.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
        (out / "brand.yaml").write_bytes(kit_bytes)
        (out / "dataset.json").write_text(json.dumps(info, indent=2) + "\n")

    _write_atomically(root / PREPARED_DIR, fill)

    metrics = {"n_images": len(sources), "hash": dataset_hash, **stats}
    metrics_path = root / METRICS_FILE
    metrics_path.parent.mkdir(parents=True, exist_ok=True)
    tmp_metrics = metrics_path.with_suffix(".json.tmp")
    tmp_metrics.write_text(json.dumps(metrics, indent=2) + "\n")
    os.replace(tmp_metrics, metrics_path)
    log.info("prepared %d images of %s (hash %s)", len(sources), kit.name, dataset_hash[:12])
    return {**info, **stats}
