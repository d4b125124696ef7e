import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from evaluation.drift import (
    DESCRIPTOR_COLUMNS,
    DriftSummary,
    descriptor_frame,
    drift_report,
    drift_reports,
    image_descriptors,
    summarize_snapshot,
)

REPO = Path(__file__).resolve().parents[2]


def solid(rgb: tuple[int, int, int], size: int = 64) -> np.ndarray:
    return np.full((size, size, 3), rgb, dtype=np.uint8)


def checkerboard(size: int, cell: int) -> np.ndarray:
    y, x = np.indices((size, size))
    board = ((y // cell + x // cell) % 2 * 255).astype(np.uint8)
    return np.repeat(board[..., None], 3, axis=2)


# ---- descriptors -------------------------------------------------------------------------------


def test_descriptors_are_the_documented_finite_floats():
    image = np.random.default_rng(0).integers(0, 256, (48, 80, 3), dtype=np.uint8)
    descriptors = image_descriptors(image)
    assert tuple(descriptors) == DESCRIPTOR_COLUMNS
    assert all(isinstance(v, float) and np.isfinite(v) for v in descriptors.values())


def test_flat_grey_images_have_no_colour_contrast_edges_or_entropy():
    for level in (0, 128, 255):
        d = image_descriptors(solid((level, level, level)))
        for name in (
            "contrast",
            "saturation",
            "colourfulness",
            "chroma_spread",
            "edge_density",
            "entropy",
        ):
            assert d[name] == pytest.approx(0.0, abs=1e-6), name
        assert d["mean_a"] == pytest.approx(0.0, abs=1e-3)
        assert d["mean_b"] == pytest.approx(0.0, abs=1e-3)
    assert image_descriptors(solid((255, 255, 255)))["brightness"] == pytest.approx(100.0, abs=0.01)
    assert image_descriptors(solid((0, 0, 0)))["brightness"] == pytest.approx(0.0, abs=0.01)


def test_colour_descriptors_follow_the_colour():
    red = image_descriptors(solid((255, 0, 0)))
    assert red["saturation"] == pytest.approx(1.0)
    assert red["mean_a"] == pytest.approx(80.09, abs=0.05)  # CIELAB of sRGB red
    assert red["mean_b"] == pytest.approx(67.20, abs=0.05)
    # Hasler & Süsstrunk on a flat image: 0.3 * |(mean rg, mean yb)| = 0.3 * |(255, 127.5)|
    assert red["colourfulness"] == pytest.approx(0.3 * np.hypot(255, 127.5))
    assert image_descriptors(solid((40, 40, 200)))["mean_b"] < 0  # blue cast
    assert image_descriptors(solid((200, 200, 40)))["mean_b"] > 0  # yellow cast


def test_brightness_contrast_edges_and_entropy_respond_in_the_right_direction():
    dark, light = image_descriptors(solid((60, 60, 60))), image_descriptors(solid((200, 200, 200)))
    assert light["brightness"] > dark["brightness"]
    board = image_descriptors(checkerboard(256, 4))
    assert board["contrast"] == pytest.approx(50.0, abs=0.01)  # half L* 0, half L* 100
    assert board["entropy"] == pytest.approx(1.0)  # two equally common levels: one bit
    assert board["edge_density"] > 0.4
    halves = np.zeros((256, 256, 3), dtype=np.uint8)
    halves[:, 128:] = 255
    assert 0 < image_descriptors(halves)["edge_density"] < 0.05  # one edge, not a texture


def test_descriptors_do_not_depend_on_resolution():
    small = checkerboard(256, 16)
    large = np.kron(small, np.ones((4, 4, 1), dtype=np.uint8))  # the same picture at 1024 px
    d_small, d_large = image_descriptors(small), image_descriptors(large)
    for name in DESCRIPTOR_COLUMNS:
        assert d_large[name] == pytest.approx(d_small[name], abs=1e-6), name


def test_descriptors_of_a_1024_px_image_are_cheap():
    image = np.random.default_rng(1).integers(0, 256, (1024, 1024, 3), dtype=np.uint8)
    image_descriptors(image)  # warm up
    best = min(_timed(image_descriptors, image) for _ in range(3))
    assert best < 0.2


def _timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((8, 8, 3), dtype=np.float32),  # floats would be read as near-black
        np.zeros((8, 8), dtype=np.uint8),
        np.zeros((8, 8, 4), dtype=np.uint8),
        np.zeros((0, 8, 3), dtype=np.uint8),
    ],
)
def test_descriptors_reject_anything_but_uint8_rgb(bad):
    with pytest.raises(ValueError, match="uint8"):
        image_descriptors(bad)


def test_descriptor_frame_has_a_row_per_image_and_the_callers_columns():
    images = [solid((10 * i, 50, 90)) for i in range(5)]
    frame = descriptor_frame(images, extra={"palette_adherence": [0.1, 0.2, 0.3, 0.4, 0.5]})
    assert list(frame.columns) == [*DESCRIPTOR_COLUMNS, "palette_adherence"]
    assert len(frame) == 5
    assert frame["palette_adherence"].tolist() == [0.1, 0.2, 0.3, 0.4, 0.5]
    assert frame["brightness"].is_monotonic_increasing  # more red, lighter
    assert (frame.dtypes == np.float64).all()
    with pytest.raises(ValueError, match="3 values for 5 images"):
        descriptor_frame(images, extra={"palette_adherence": [0.1, 0.2, 0.3]})
    with pytest.raises(ValueError, match="clashes"):
        descriptor_frame(images, extra={"brightness": [0.0] * 5})


# ---- drift reports -----------------------------------------------------------------------------


def same_distribution(reference: np.ndarray, n: int) -> np.ndarray:
    """n values spread exactly like `reference` (its quantiles): identically distributed."""
    return np.quantile(reference, (np.arange(n) + 0.5) / n)


def frames(n_reference: int, n_current: int, *, shift_sd: float) -> tuple[pd.DataFrame, ...]:
    """A reference frame and a current frame whose brightness is shifted by `shift_sd` SDs."""
    rng = np.random.default_rng(42)
    reference = pd.DataFrame(
        {
            "brightness": rng.normal(55.0, 6.0, n_reference),
            "colourfulness": rng.gamma(4.0, 10.0, n_reference),
            "palette_adherence": rng.beta(8.0, 2.0, n_reference),
        }
    )
    current = pd.DataFrame(
        {
            "brightness": same_distribution(reference["brightness"], n_current) + shift_sd * 6.0,
            "colourfulness": same_distribution(reference["colourfulness"], n_current),
            "palette_adherence": same_distribution(reference["palette_adherence"], n_current),
        }
    )
    return reference, current


@pytest.mark.parametrize(
    ("n_reference", "method"),
    [(300, "K-S p_value"), (1200, "Wasserstein distance (normed)")],  # Evidently's switch: 1000
)
def test_a_shifted_column_is_drifted_and_identical_ones_are_not(tmp_path, n_reference, method):
    reference, current = frames(n_reference, 32, shift_sd=4.0)
    html = tmp_path / "reports" / "drift.html"
    summary = drift_report(
        reference, current, out_html=html, reference_name="training", current_name="challenger"
    )
    assert summary.drifted_columns == ["brightness"]
    assert summary.n_columns == 3
    assert summary.share_drifted == pytest.approx(1 / 3)
    # one test per column (brightness fails) and the dataset's "share drifted < 0.5" (passes)
    assert (summary.tests_passed, summary.tests_failed) == (3, 1)
    assert summary.methods == dict.fromkeys(reference.columns, method)
    assert (summary.reference, summary.current, summary.html) == ("training", "challenger", html)
    if method.startswith("K-S"):  # the scores are Evidently's own two-sample K-S p-values
        for column in reference.columns:
            expected = stats.ks_2samp(reference[column], current[column]).pvalue
            assert summary.scores[column] == pytest.approx(expected, rel=1e-6)
    assert html.stat().st_size > 10_000
    assert "palette_adherence" in html.read_text(encoding="utf-8")
    assert json.loads(json.dumps(summary.to_dict()))["drifted_columns"] == ["brightness"]


def test_drift_reports_compare_training_champion_and_challenger(tmp_path):
    training, champion = frames(300, 32, shift_sd=0.0)
    _, challenger = frames(300, 32, shift_sd=5.0)
    summaries = drift_reports(
        training=training, champion=champion, challenger=challenger, out_dir=tmp_path
    )
    assert list(summaries) == [
        "training_vs_champion",
        "training_vs_challenger",
        "champion_vs_challenger",
    ]
    assert {key: s.drifted_columns for key, s in summaries.items()} == {
        "training_vs_champion": [],
        "training_vs_challenger": ["brightness"],
        "champion_vs_challenger": ["brightness"],
    }
    assert [(s.reference, s.current) for s in summaries.values()] == [
        ("training", "champion"),
        ("training", "challenger"),
        ("champion", "challenger"),
    ]
    assert summaries["training_vs_champion"].tests_failed == 0
    for key, summary in summaries.items():
        assert summary.html == tmp_path / f"drift_{key}.html"
        assert summary.html.is_file()


def test_frames_must_share_numeric_finite_columns(tmp_path):
    reference, current = frames(50, 10, shift_sd=0.0)
    out = tmp_path / "x.html"
    names = {"out_html": out, "reference_name": "a", "current_name": "b"}
    with pytest.raises(ValueError, match="same columns"):
        drift_report(reference, current.drop(columns="brightness"), **names)
    with pytest.raises(ValueError, match="NaN"):
        drift_report(reference, current.assign(brightness=np.nan), **names)
    with pytest.raises(ValueError, match="not numeric"):
        drift_report(reference.assign(tag="x"), current.assign(tag="y"), **names)
    with pytest.raises(ValueError, match="rows"):
        drift_report(reference, current.iloc[:0], **names)
    assert not out.exists()


def test_an_inconsistent_snapshot_is_an_error_not_a_wrong_summary():
    snapshot = {
        "metrics": [
            {
                "config": {"type": "evidently:metric_v2:DriftedColumnsCount"},
                "value": {"count": 1.0, "share": 1.0},
            },
            {
                "config": {"type": "evidently:metric_v2:ValueDrift", "column": "x", "method": "m"},
                "value": 0.5,
            },
        ],
        "tests": [
            {
                "status": "SUCCESS",
                "metric_config": {
                    "params": {"type": "evidently:metric_v2:ValueDrift", "column": "x"}
                },
            }
        ],
    }
    with pytest.raises(RuntimeError, match="Evidently"):
        summarize_snapshot(snapshot, reference="a", current="b", html=Path("x.html"))
    snapshot["metrics"][0]["value"]["count"] = 0.0
    summary = summarize_snapshot(snapshot, reference="a", current="b", html=Path("x.html"))
    assert summary == DriftSummary(
        "a", "b", [], 1, 0.0, 1, 0, Path("x.html"), {"x": 0.5}, {"x": "m"}
    )


QUIET_AND_OFFLINE = """
import json, logging, socket, sys
from pathlib import Path
attempts = []
sys.addaudithook(
    lambda event, args: attempts.append(event)
    if event in ("socket.connect", "socket.getaddrinfo") else None
)
logging.basicConfig(level=logging.WARNING)
import numpy as np, pandas as pd
from evaluation.drift import drift_report
rng = np.random.default_rng(0)
# a drifted column, a steady one, and a constant one (Evidently's statistics warn on those)
reference = pd.DataFrame({"a": rng.normal(0, 1, 100), "b": rng.normal(0, 1, 100), "c": 1.0})
current = pd.DataFrame({"a": rng.normal(3, 1, 16), "b": rng.normal(0, 1, 16), "c": 1.0})
drift_report(reference, current, out_html=Path(sys.argv[1]), reference_name="a", current_name="b")
print(json.dumps(attempts))
"""


def test_evidently_stays_offline_and_quiet(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("PYTHONWARNINGS", None)
    result = subprocess.run(
        [sys.executable, "-W", "default", "-c", QUIET_AND_OFFLINE, str(tmp_path / "r.html")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no warnings, no log lines, no progress bars
    assert json.loads(result.stdout) == []  # no connection attempted, no host name looked up
