"""Luminance-only transfer: colour conversions and what --preserve-colors promises."""
import numpy as np
import pytest

import colour

RNG = np.random.default_rng(2)


def test_yiq_round_trip_and_luminance_weights():
    image = RNG.uniform(0, 1, (5, 4, 3)).astype(np.float32)
    np.testing.assert_allclose(colour.yiq_to_rgb(colour.rgb_to_yiq(image)), image, atol=1e-6)
    np.testing.assert_allclose(colour.luminance(image), image @ [0.299, 0.587, 0.114], atol=1e-6)
    # Greys have no chroma.
    grey = np.full((2, 2, 3), 0.6, np.float32)
    np.testing.assert_allclose(colour.rgb_to_yiq(grey)[..., 1:], 0, atol=1e-6)


def test_match_luminance_takes_the_contents_mean_and_spread():
    style, content = RNG.uniform(0, 0.3, (20, 20)), RNG.uniform(0.4, 1, (20, 20))
    matched = colour.match_luminance(style, content)
    assert matched.mean() == pytest.approx(content.mean())
    assert matched.std() == pytest.approx(content.std())
    # Ranks (the style's structure) are kept.
    assert np.array_equal(np.argsort(matched, axis=None), np.argsort(style, axis=None))


def test_recolour_keeps_the_contents_chroma_and_the_results_luminance():
    content = RNG.uniform(0.3, 0.7, (6, 6, 3)).astype(np.float32)  # mid-range: no clipping
    result = colour.grey(RNG.uniform(0.4, 0.6, (6, 6)))
    recoloured = colour.recolour(result, content)
    np.testing.assert_allclose(colour.rgb_to_yiq(recoloured)[..., 1:],
                               colour.rgb_to_yiq(content)[..., 1:], atol=1e-5)
    np.testing.assert_allclose(colour.luminance(recoloured), colour.luminance(result), atol=1e-5)


def test_luminance_inputs_are_grey():
    content, style = RNG.uniform(0, 1, (2, 8, 8, 3)).astype(np.float32)
    grey_content, (grey_style,) = colour.luminance_inputs(content, [style])
    for image in (grey_content, grey_style):
        assert image.shape == (8, 8, 3) and image.min() >= 0 and image.max() <= 1
        assert np.array_equal(image[..., 0], image[..., 2])


def test_match_histograms_takes_the_references_values_and_keeps_order():
    image = RNG.uniform(0, 1, (8, 8, 3)).astype(np.float32)
    reference = RNG.uniform(0.5, 0.7, (16, 4, 3)).astype(np.float32)  # another size
    matched = colour.match_histograms(image, reference)
    for c in range(3):
        np.testing.assert_allclose(np.sort(matched[..., c].ravel()), np.sort(reference[..., c].ravel()), rtol=0)
        assert np.array_equal(np.argsort(matched[..., c], axis=None, kind='stable'),
                              np.argsort(image[..., c], axis=None, kind='stable'))
