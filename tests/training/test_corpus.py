import numpy as np
import pytest

from training.corpus import COLOUR_NAMES, NAMED_COLOURS, generate_corpus, nearest_colour_names


def test_same_seed_same_corpus_and_other_seed_differs():
    a_images, a_captions = generate_corpus(48, resolution=32, seed=3)
    b_images, b_captions = generate_corpus(48, resolution=32, seed=3)
    c_images, c_captions = generate_corpus(48, resolution=32, seed=4)
    assert np.array_equal(a_images, b_images) and a_captions == b_captions
    assert not np.array_equal(a_images, c_images) or a_captions != c_captions


@pytest.mark.parametrize("resolution", [16, 32, 64])
def test_shapes_and_types(resolution):
    images, captions = generate_corpus(20, resolution=resolution, seed=0)
    assert images.shape == (20, resolution, resolution, 3)
    assert images.dtype == np.uint8
    assert len(captions) == 20 and all(isinstance(c, str) and c for c in captions)


def test_captions_name_the_colours_actually_drawn():
    images, captions = generate_corpus(300, resolution=32, seed=1)
    for image, caption in zip(images, captions, strict=True):
        words = caption.replace(",", " ").split()
        named = [w for w in words if w in COLOUR_NAMES]  # in caption order
        assert 1 <= len(named) <= 3, caption
        nearest = nearest_colour_names(image)
        counts = np.bincount(nearest.ravel(), minlength=len(COLOUR_NAMES))
        if "gradient" in caption:
            # the two ends of a gradient are the named colours
            ends = [image[:, 0], image[:, -1]] if "horizontal" in caption else [image[0], image[-1]]
            for end, name in zip(ends, named, strict=True):
                target = np.asarray(NAMED_COLOURS[name], dtype=float)
                assert np.abs(end.astype(float).mean(0) - target).max() <= 16, caption
            continue
        for name in named:  # every named colour covers a visible part of the image
            assert counts[COLOUR_NAMES.index(name)] >= 8, caption
        # ... and nothing else is drawn
        assert counts[[COLOUR_NAMES.index(n) for n in named]].sum() == image.shape[0] ** 2


def test_corpus_covers_every_colour_and_layout():
    _, captions = generate_corpus(1000, resolution=32, seed=0)
    text = " ".join(captions)
    for colour in COLOUR_NAMES:
        assert f" {colour} " in f" {text} "
    for word in (
        "circle",
        "square",
        "triangle",
        "card",
        "stripes",
        "band",
        "bars",
        "gradient",
        "split",
        "plain",
    ):
        assert word in text


def test_rejects_bad_sizes():
    with pytest.raises(ValueError):
        generate_corpus(0, resolution=32, seed=0)
