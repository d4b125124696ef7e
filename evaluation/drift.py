"""Drift of generated images from the brand's training images, as Evidently data-drift reports.

Each image becomes a row of cheap, interpretable descriptors (lightness, contrast, colour cast,
colourfulness, edges, entropy); Evidently's data-drift preset then tests, column by column,
whether a set of generated images is distributed like the reference set. The descriptors are
pure numpy; Evidently is imported only when a report is built (it takes seconds to import).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from evaluation.palette import srgb_to_lab

logger = logging.getLogger(__name__)

# Descriptors are computed on a copy scaled to this many pixels on the long side: training
# images and generated images rarely share a resolution, and edge density or entropy measured
# at different scales would "drift" for that reason alone. It also makes a 1024 px image cheap.
ANALYSIS_SIZE = 256
# A neighbour-to-neighbour lightness gradient of this many L* units per pixel is an edge: well
# above noise and JPEG ringing (a few units), well below a hard object boundary (tens of units).
EDGE_GRADIENT = 10.0
ENTROPY_BINS = 256

DESCRIPTOR_COLUMNS = (
    "brightness",  # mean CIELAB L*, 0..100
    "contrast",  # standard deviation of L*
    "saturation",  # mean HSV saturation, 0..1
    "colourfulness",  # Hasler & Süsstrunk (2003) M, on 0..255 RGB
    "mean_a",  # mean CIELAB a*: green (-) to red (+) cast
    "mean_b",  # mean CIELAB b*: blue (-) to yellow (+) cast
    "chroma_spread",  # spread of colours in the a*b* plane: sqrt(var a* + var b*)
    "edge_density",  # share of pixels on an edge (see EDGE_GRADIENT)
    "entropy",  # Shannon entropy of the L* histogram, bits (at most 8)
)

# drift_reports' comparisons: key -> (reference set, current set).
COMPARISONS = {
    "training_vs_champion": ("training", "champion"),
    "training_vs_challenger": ("training", "challenger"),
    "champion_vs_challenger": ("champion", "challenger"),
}

_VALUE_DRIFT = "evidently:metric_v2:ValueDrift"
_DRIFTED_COLUMNS_COUNT = "evidently:metric_v2:DriftedColumnsCount"


def _analysis_copy(image: np.ndarray) -> np.ndarray:
    """The image scaled so that its long side is ANALYSIS_SIZE pixels, as float RGB 0..255."""
    height, width = image.shape[:2]
    scale = ANALYSIS_SIZE / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if size != (width, height):
        # Shrinking averages areas (every source pixel counts once); enlarging interpolates.
        shrink = size[0] < width
        resample = Image.Resampling.BOX if shrink else Image.Resampling.BILINEAR
        image = np.asarray(Image.fromarray(image).resize(size, resample))
    return image.astype(np.float64)


def image_descriptors(image: np.ndarray) -> dict[str, float]:
    """Interpretable per-image descriptors (DESCRIPTOR_COLUMNS) of a uint8 (H, W, 3) sRGB image."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or 0 in image.shape:
        raise ValueError(
            f"expected a non-empty uint8 sRGB array of shape (H, W, 3), "
            f"got dtype {image.dtype} and shape {image.shape}"
        )
    rgb = _analysis_copy(image)
    lab = srgb_to_lab(rgb)
    lightness, a, b = lab[..., 0], lab[..., 1], lab[..., 2]

    high, low = rgb.max(axis=-1), rgb.min(axis=-1)
    saturation = np.divide(high - low, high, out=np.zeros_like(high), where=high > 0)

    red, green, blue = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    rg = red - green
    yb = 0.5 * (red + green) - blue
    colourfulness = np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean())

    if min(lightness.shape) > 1:
        grad_y, grad_x = np.gradient(lightness)
        edge_density = float((np.hypot(grad_x, grad_y) >= EDGE_GRADIENT).mean())
    else:  # a one-pixel-wide strip has no 2-D gradient
        edge_density = 0.0

    # White comes out of the Lab conversion a hair above 100; clip it into the top bin.
    counts, _ = np.histogram(np.clip(lightness, 0.0, 100.0), bins=ENTROPY_BINS, range=(0, 100))
    p = counts[counts > 0] / lightness.size
    entropy = float(-(p * np.log2(p)).sum())

    return {
        "brightness": float(lightness.mean()),
        "contrast": float(lightness.std()),
        "saturation": float(saturation.mean()),
        "colourfulness": float(colourfulness),
        "mean_a": float(a.mean()),
        "mean_b": float(b.mean()),
        "chroma_spread": float(np.sqrt(a.var() + b.var())),
        "edge_density": edge_density,
        "entropy": entropy + 0.0,  # turns -0.0 (a flat image) into 0.0
    }


def descriptor_frame(
    images: Sequence[np.ndarray], extra: Mapping[str, Sequence[float]] | None = None
) -> pd.DataFrame:
    """One row of descriptors per image, plus caller-computed columns (e.g. palette adherence)."""
    frame = pd.DataFrame(
        [image_descriptors(image) for image in images], columns=list(DESCRIPTOR_COLUMNS)
    ).astype(np.float64)
    for name, values in (extra or {}).items():
        if name in frame.columns:
            raise ValueError(f"extra column {name!r} clashes with a built-in descriptor")
        if len(values) != len(images):
            raise ValueError(
                f"extra column {name!r} has {len(values)} values for {len(images)} images"
            )
        frame[name] = np.asarray(values, dtype=np.float64)
    return frame


@dataclass(frozen=True)
class DriftSummary:
    """What one Evidently drift report concluded, in a form that goes into a metrics file."""

    reference: str
    current: str
    drifted_columns: list[str]  # columns whose per-column drift test failed, in column order
    n_columns: int
    share_drifted: float
    tests_passed: int
    tests_failed: int  # every test that did not pass (FAIL, and also WARNING or ERROR if any)
    html: Path
    # Per column: Evidently's drift score and the method that produced it. The score is a
    # p-value (drift when below the threshold) for K-S, chi-square and Z-tests, and a distance
    # (drift when at or above it) for Wasserstein, which Evidently picks above 1000 reference rows.
    scores: dict[str, float] = field(default_factory=dict)
    methods: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the HTML path as a string)."""
        return {
            "reference": self.reference,
            "current": self.current,
            "drifted_columns": list(self.drifted_columns),
            "n_columns": self.n_columns,
            "share_drifted": self.share_drifted,
            "tests_passed": self.tests_passed,
            "tests_failed": self.tests_failed,
            "html": str(self.html),
            "scores": dict(self.scores),
            "methods": dict(self.methods),
        }


def _check_frames(reference: pd.DataFrame, current: pd.DataFrame) -> list[str]:
    """The shared numeric columns, or a ValueError saying what is wrong with the two frames."""
    if list(reference.columns) != list(current.columns):
        raise ValueError(
            "reference and current frames need the same columns in the same order, got "
            f"{list(reference.columns)} and {list(current.columns)}"
        )
    if reference.empty or current.empty:
        raise ValueError(
            f"drift needs rows and columns in both frames, got reference {reference.shape} "
            f"and current {current.shape}"
        )
    for name, frame in (("reference", reference), ("current", current)):
        for column in frame.columns:
            values = frame[column]
            if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
                raise ValueError(f"{name} column {column!r} is not numeric ({values.dtype})")
            if not np.isfinite(values.to_numpy(dtype=np.float64)).all():
                raise ValueError(f"{name} column {column!r} has NaN or infinite values")
    return [str(column) for column in reference.columns]


def summarize_snapshot(
    snapshot: Mapping[str, Any], *, reference: str, current: str, html: Path
) -> DriftSummary:
    """Read drifted columns and test counts out of a data-drift snapshot's `dict()`."""
    drifted_count: float | None = None
    scores: dict[str, float] = {}
    methods: dict[str, str] = {}
    for metric in snapshot["metrics"]:
        config = metric["config"]
        if config["type"] == _VALUE_DRIFT:
            scores[config["column"]] = float(metric["value"])
            methods[config["column"]] = str(config["method"])
        elif config["type"] == _DRIFTED_COLUMNS_COUNT:
            drifted_count = float(metric["value"]["count"])

    drifted: list[str] = []
    tested: list[str] = []
    passed = 0
    for test in snapshot["tests"]:
        passed += test["status"] == "SUCCESS"
        params = test["metric_config"]["params"]
        if params["type"] == _VALUE_DRIFT:
            # ValueDrift's test fails exactly when Evidently detects drift in that column,
            # whichever direction its method's score runs in.
            tested.append(params["column"])
            if test["status"] != "SUCCESS":
                drifted.append(params["column"])

    # The dataset-level count comes from a separate computation; if it disagrees with the
    # per-column tests, or a column has no test, the summary would not match the HTML report.
    if drifted_count is None or sorted(tested) != sorted(scores) or drifted_count != len(drifted):
        raise RuntimeError(
            f"unexpected Evidently snapshot for {reference} vs {current}: {len(drifted)} column "
            f"drift tests failed but the drifted-column count is {drifted_count}; tested "
            f"{sorted(tested)}, scored {sorted(scores)} (has the Evidently version changed?)"
        )
    n_tests = len(snapshot["tests"])
    return DriftSummary(
        reference=reference,
        current=current,
        drifted_columns=[column for column in scores if column in drifted],
        n_columns=len(scores),
        share_drifted=len(drifted) / len(scores) if scores else 0.0,
        tests_passed=passed,
        tests_failed=n_tests - passed,
        html=html,
        scores=scores,
        methods=methods,
    )


def drift_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    out_html: Path,
    reference_name: str,
    current_name: str,
) -> DriftSummary:
    """Evidently's data-drift preset, with its tests, on two descriptor frames; saves the HTML."""
    columns = _check_frames(reference, current)
    # Evidently's import and its statistics over constant columns warn about its own
    # internals (numpy.core, litestar deprecations, 0/0 in a correlation), nothing a user can
    # act on. Report.run sends no telemetry (only Evidently's UI service does).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from evidently import DataDefinition, Dataset, Report
        from evidently.presets import DataDriftPreset

        definition = DataDefinition(numerical_columns=columns)
        report = Report([DataDriftPreset()], include_tests=True)
        snapshot = report.run(
            Dataset.from_pandas(current.reset_index(drop=True), data_definition=definition),
            Dataset.from_pandas(reference.reset_index(drop=True), data_definition=definition),
        )
        out_html.parent.mkdir(parents=True, exist_ok=True)
        # save_html silently writes nothing when given a Path rather than a str.
        snapshot.save_html(str(out_html))
        result = snapshot.dict()
    summary = summarize_snapshot(
        result, reference=reference_name, current=current_name, html=out_html
    )
    logger.info(
        "drift %s -> %s: %d/%d columns drifted %s",
        reference_name,
        current_name,
        len(summary.drifted_columns),
        summary.n_columns,
        summary.drifted_columns,
    )
    return summary


def drift_reports(
    *, training: pd.DataFrame, champion: pd.DataFrame, challenger: pd.DataFrame, out_dir: Path
) -> dict[str, DriftSummary]:
    """Training→champion, training→challenger and champion→challenger reports, keyed by name."""
    frames = {"training": training, "champion": champion, "challenger": challenger}
    return {
        key: drift_report(
            frames[ref],
            frames[cur],
            out_html=out_dir / f"drift_{key}.html",
            reference_name=ref,
            current_name=cur,
        )
        for key, (ref, cur) in COMPARISONS.items()
    }
