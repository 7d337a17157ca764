"""Grading scores against plain numpy references, and the properties a grader relies on."""
import os

import numpy as np
import pytest

import scores
from conftest import ROOT
from utils import load_image

RNG = np.random.default_rng(7)


@pytest.fixture(scope='module')
def texture():
    return load_image(os.path.join(ROOT, 'images', 'texture1.jpg'), 96)


def test_gram_distance_matches_the_training_loss_formula():
    result, source = RNG.uniform(0, 2, (2, 5, 6, 4))
    flat_r, flat_s = result.reshape(-1, 4), source.reshape(-1, 4)
    expected = np.sum((flat_s.T @ flat_s / 120 - flat_r.T @ flat_r / 120) ** 2) / 4
    assert scores.gram_distance(result, source) == pytest.approx(expected, rel=1e-12)


def test_sliced_wasserstein_matches_a_plain_reference():
    """Equal sizes and as many quantiles as values: the sorted projections are compared exactly."""
    result, source = RNG.uniform(0, 1, (2, 16, 16, 3))
    directions = scores.random_directions(3, 3)
    projected_r = np.sort(result.reshape(-1, 3) @ directions, axis=0)
    projected_s = np.sort(source.reshape(-1, 3) @ directions, axis=0)
    expected = np.mean((projected_r - projected_s) ** 2)
    old = scores.QUANTILES
    scores.QUANTILES = 256  # = the number of positions: quantiles are the sorted values
    try:
        assert scores.sliced_wasserstein(result, source) == pytest.approx(expected, rel=1e-9)
    finally:
        scores.QUANTILES = old


@pytest.mark.parametrize('positions', [1, 2, 7, 300, 1024, 3000])
@pytest.mark.parametrize('count', [1, 3, 10, 1024])
def test_quantiles_are_numpys_empirical_quantile_function(positions, count):
    """One sort gives what np.quantile(method='inverted_cdf') gives, ties and all, for any number of
    positions (more or fewer than quantiles, multiples of their count or not)."""
    values = RNG.normal(size=(positions, 4))
    values[:positions // 3] = np.round(values[:positions // 3])  # ties
    levels = (np.arange(count) + 0.5) / count
    expected = np.quantile(values, levels, axis=0, method='inverted_cdf')
    assert np.array_equal(scores.quantiles(values, count), expected)


def test_sliced_wasserstein_properties():
    features = RNG.normal(size=(20, 20, 8))
    assert scores.sliced_wasserstein(features, features) == 0
    # Where the values are does not matter, only their distribution...
    shuffled = features.reshape(-1, 8)[RNG.permutation(400)].reshape(20, 20, 8)
    assert scores.sliced_wasserstein(shuffled, features) == pytest.approx(0, abs=1e-12)
    # ...nor the number of positions (a tiled copy has the same distribution)...
    assert scores.sliced_wasserstein(np.tile(features, (2, 3, 1)), features) < 1e-3
    # ...and it repeats; a shifted distribution costs the square of the shift along each direction.
    assert scores.sliced_wasserstein(features + 1.0, features) == scores.sliced_wasserstein(features + 1.0, features)
    directions = scores.random_directions(8, 8)
    assert scores.sliced_wasserstein(features + 1.0, features) == pytest.approx(
        np.mean(directions.sum(axis=0) ** 2), rel=1e-3)


def test_colour_distance_is_per_channel_wasserstein():
    source = RNG.uniform(0, 1, (10, 10, 3))
    assert scores.colour_distance(source, source) == 0
    assert scores.colour_distance(np.clip(source, 0, 1) * 0 + 0.5, source) == pytest.approx(0.25, abs=0.01)
    shifted = source.copy()
    shifted[..., 0] += 0.3  # only red moves, by 0.3: the mean over channels is 0.1
    assert scores.colour_distance(shifted, source) == pytest.approx(0.1, rel=1e-6)


def test_radial_spectrum_of_plain_patterns():
    height = width = 64
    stripes = np.tile((np.arange(width) % 4 < 2).astype(float)[None, :, None], (height, 1, 3))
    spectrum = scores.radial_power_spectrum(stripes)
    assert spectrum.sum() == pytest.approx(1.0)
    # A period of 4 px is 0.25 cycles per pixel: half-way to Nyquist, bin 16 of 32.
    assert np.argmax(spectrum) == 16
    white = RNG.uniform(0, 1, (height, width, 3))
    assert scores.spectral_distance(white, white) == 0
    assert scores.spectral_distance(stripes, white) > 1


def test_shuffled_pixels_fool_grams_but_not_the_spectrum(texture):
    """The case graders need: same colours everywhere, none of the structure."""
    shuffled = texture.reshape(-1, 3)[RNG.permutation(texture.shape[0] * texture.shape[1])].reshape(texture.shape)
    assert scores.colour_distance(shuffled, texture) == 0
    # Pixel Grams (1x1 features) ignore arrangement entirely:
    assert scores.gram_distance(shuffled, texture) == pytest.approx(0, abs=1e-12)
    assert scores.spectral_distance(shuffled, texture) > 0.5
    assert scores.nearest_patch_distance(shuffled, texture) > 0.3


def test_identical_image_scores_zero_everywhere_and_one_on_layout(texture):
    for score in (scores.colour_distance, scores.spectral_distance):
        assert score(texture, texture) == 0
    assert scores.nearest_patch_distance(texture, texture) < 1e-4  # float32 rounding
    assert scores.layout_score(texture, texture) == pytest.approx(1.0)


@pytest.mark.parametrize('name, transform', [
    ('cyclic shift', lambda t: np.roll(t, (24, 40), (0, 1))),
    ('crop', lambda t: t[10:74, 20:84]),
    ('flip and transpose', lambda t: t[::-1].transpose(1, 0, 2)),
    ('tiled twice', lambda t: np.tile(t, (2, 2, 1))),
])
def test_copies_score_high_on_layout(texture, name, transform):
    assert scores.layout_score(transform(texture), texture) > 0.85, name


def test_crops_and_shifts_have_near_zero_patch_distance(texture):
    assert scores.nearest_patch_distance(texture[13:77, 5:69], texture) < 1e-4  # float32 rounding
    assert scores.nearest_patch_distance(texture[7:87, 3:83], texture) < 1e-4  # float32 rounding


def test_noise_scores_far_from_the_texture(texture):
    noise = RNG.uniform(0, 1, texture.shape)
    assert scores.layout_score(noise, texture) < 0.35
    assert scores.nearest_patch_distance(noise, texture) > 1.0
    assert scores.spectral_distance(noise, texture) > 0.5


def test_cyclic_correlation_matches_a_direct_computation():
    image = RNG.uniform(0, 1, (6, 7))
    template = RNG.uniform(0, 1, (3, 4))
    fast = scores.cyclic_correlation(template, image)
    for dy in range(6):
        for dx in range(7):
            window = np.roll(image, (-dy, -dx), (0, 1))[:3, :4]
            expected = np.corrcoef(window.ravel(), template.ravel())[0, 1]
            assert fast[dy, dx] == pytest.approx(expected, abs=1e-9)


def test_random_phase_keeps_the_source_mean_and_variance_and_any_shape(texture):
    source_grey = scores.grey(texture)
    samples = [scores.random_phase(texture, (64, 80), seed) for seed in range(40)]
    assert all(sample.shape == (64, 80, 3) for sample in samples)
    assert all(np.allclose(sample[..., 0], sample[..., 2]) for sample in samples)  # grey
    # The spot has zero mean, so the noise adds nothing at frequency 0: the mean is exact on a
    # canvas at least the source's size (a crop of it only on average).
    full = scores.random_phase(texture, texture.shape[:2], 3)
    assert full[..., 0].mean() == pytest.approx(source_grey.mean(), abs=1e-9)
    # Variance: the expected value is the source's (sum of the scaled spot squared).
    assert np.mean([sample[..., 0].var() for sample in samples]) == pytest.approx(source_grey.var(), rel=0.15)
    assert np.array_equal(scores.random_phase(texture, (64, 80), 5), scores.random_phase(texture, (64, 80), 5))


def test_random_phase_keeps_the_source_spectrum_on_average(texture):
    """Averaged over samples, the power spectrum is the source's (cyclic, same size)."""
    source_grey = scores.grey(texture)
    source_power = np.abs(np.fft.fft2(source_grey - source_grey.mean())) ** 2
    mean_power = np.mean([np.abs(np.fft.fft2(sample[..., 0] - sample[..., 0].mean())) ** 2
                          for sample in (scores.random_phase(texture, texture.shape[:2], seed)
                                         for seed in range(400))], axis=0)
    # Compare in 8x8 blocks of frequencies: each sample's power is exponential around the source's.
    blocks = lambda power: power.reshape(12, 8, 12, 8).sum(axis=(1, 3))  # noqa: E731
    assert np.allclose(blocks(mean_power), blocks(source_power), rtol=0.1)


def test_layout_chance_is_low_for_fine_textures_high_for_smooth_ones_and_below_copies(texture):
    fine = RNG.uniform(0, 1, texture.shape)
    smooth = np.repeat(np.repeat(RNG.uniform(0, 1, (6, 6, 3)), 16, axis=0), 16, axis=1)  # 16 px cells
    assert np.mean(scores.layout_chance(fine, fine.shape[:2], samples=8)) < 0.25
    assert np.mean(scores.layout_chance(smooth, smooth.shape[:2], samples=8)) > 0.4
    chance = scores.layout_chance(texture, texture.shape[:2])
    assert len(chance) == scores.CHANCE_SAMPLES
    assert scores.layout_score(np.roll(texture, (24, 40), (0, 1)), texture) > chance.max()
    assert scores.layout_limit(fine, fine.shape[:2]) == scores.LAYOUT_LINE
    assert scores.layout_limit(smooth, smooth.shape[:2]) == pytest.approx(
        np.percentile(scores.layout_chance(smooth, smooth.shape[:2]), scores.CHANCE_PERCENTILE))


def test_pairwise_distance_is_the_mean_over_pairs():
    a, b, c = (np.full((2, 2, 1), value) for value in (0.0, 1.0, 3.0))
    assert scores.pairwise_distance([a, b, c]) == pytest.approx((1 + 9 + 4) / 3)
    assert scores.pairwise_distance([a, a, a]) == 0
