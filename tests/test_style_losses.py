"""Content and total-variation losses (style transfer) against plain numpy references."""
import numpy as np
import pytest
import tensorflow as tf

import losses

RNG = np.random.default_rng(1)


def evaluate(loss_fn, value):
    """loss_fn(placeholder) and its gradient at `value`, in float64."""
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        placeholder = tf.compat.v1.placeholder(tf.float64, value.shape)
        loss = loss_fn(placeholder)
        gradient = tf.gradients(loss, placeholder)[0]
        return session.run([loss, gradient], {placeholder: value})


def finite_differences(loss_fn, value, epsilon=1e-6):
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        placeholder = tf.compat.v1.placeholder(tf.float64, value.shape)
        loss = loss_fn(placeholder)
        numeric = np.zeros_like(value)
        for index in np.ndindex(value.shape):
            step = np.zeros_like(value)
            step[index] = epsilon
            numeric[index] = (session.run(loss, {placeholder: value + step})
                              - session.run(loss, {placeholder: value - step})) / (2 * epsilon)
        return numeric


def numpy_content_loss(noise, content):
    """Coursera's J_content: 1/(4 n_H n_W n_C) * sum((a_C - a_G)^2)."""
    _, height, width, channels = noise.shape
    return np.sum((content - noise) ** 2) / (4 * height * width * channels)


def numpy_tv_loss(image):
    down = image[:, 1:] - image[:, :-1]
    right = image[:, :, 1:] - image[:, :, :-1]
    return np.mean(down ** 2) + np.mean(right ** 2)


def test_content_loss_matches_numpy_and_its_gradient():
    noise, content = RNG.uniform(0, 5, (2, 1, 6, 5, 7))
    value, gradient = evaluate(lambda x: losses.content_loss_for_layer(x, content), noise)
    assert value == pytest.approx(numpy_content_loss(noise, content), rel=1e-12)
    np.testing.assert_allclose(gradient, 2 * (noise - content) / (4 * noise.size), rtol=1e-10)
    np.testing.assert_allclose(
        gradient, finite_differences(lambda x: losses.content_loss_for_layer(x, content), noise),
        rtol=1e-6, atol=1e-10)


def test_content_loss_conventions():
    """Gatys et al. 2016 (sum / 2) and Keras (sum) are fixed multiples of ours (sum / 4NM)."""
    noise, content = RNG.uniform(0, 5, (2, 1, 4, 3, 8))
    ours = evaluate(lambda x: losses.content_loss_for_layer(x, content), noise)[0]
    squared_error = np.sum((noise - content) ** 2)
    assert squared_error / 2 == pytest.approx(2 * noise.size * ours, rel=1e-12)
    assert squared_error == pytest.approx(4 * noise.size * ours, rel=1e-12)


def test_content_loss_is_zero_only_at_the_content():
    content = RNG.uniform(0, 5, (1, 4, 4, 3))
    assert evaluate(lambda x: losses.content_loss_for_layer(x, content), content)[0] == 0
    assert evaluate(lambda x: losses.content_loss_for_layer(x, content), content + 0.1)[0] > 0


def test_content_loss_does_not_grow_with_image_size():
    """A feature map tiled 2x2 has the same loss: --content-weight means the same at any size."""
    noise, content = RNG.uniform(0, 5, (2, 1, 4, 5, 3))
    small = evaluate(lambda x: losses.content_loss_for_layer(x, content), noise)[0]
    tiled = np.tile(content, (1, 2, 2, 1))
    large = evaluate(lambda x: losses.content_loss_for_layer(x, tiled), np.tile(noise, (1, 2, 2, 1)))[0]
    assert large == pytest.approx(small, rel=1e-12)


def test_tv_loss_matches_numpy_and_its_gradient():
    image = RNG.uniform(0, 1, (1, 5, 6, 3))
    value, gradient = evaluate(losses.total_variation_loss, image)
    assert value == pytest.approx(numpy_tv_loss(image), rel=1e-12)
    np.testing.assert_allclose(gradient, finite_differences(losses.total_variation_loss, image),
                               rtol=1e-6, atol=1e-10)


def test_tv_loss_properties():
    flat = np.full((1, 6, 6, 3), 0.4)
    assert evaluate(losses.total_variation_loss, flat)[0] == 0
    # A horizontal ramp varies only along the width.
    ramp = np.tile(np.linspace(0, 1, 6)[None, None, :, None], (1, 6, 1, 3))
    assert evaluate(losses.total_variation_loss, ramp)[0] == pytest.approx((1 / 5) ** 2, rel=1e-12)
    # Noise is rougher than a smoothed copy of itself; adding a constant changes nothing.
    noise = RNG.uniform(0, 1, (1, 8, 8, 3))
    smooth = (noise + np.roll(noise, 1, 1) + np.roll(noise, 1, 2) + np.roll(noise, (1, 1), (1, 2))) / 4
    assert evaluate(losses.total_variation_loss, noise)[0] > evaluate(losses.total_variation_loss, smooth)[0]
    assert evaluate(losses.total_variation_loss, noise + 0.3)[0] == pytest.approx(
        evaluate(losses.total_variation_loss, noise)[0], rel=1e-12)


# ---------------------------------------------------------------- sliced Wasserstein (Heitz et al. 2021)

def numpy_swd(noise, source, directions):
    """Equal sizes: mean over directions and positions of (sorted projection differences)^2."""
    project = lambda f: np.sort(f.reshape(-1, f.shape[-1]) @ directions, axis=0)  # noqa: E731
    return np.mean((project(noise) - project(source)) ** 2)


@pytest.mark.parametrize('host_sort', [True, False], ids=['numpy sort', 'tf.sort'])
def test_swd_loss_matches_numpy_and_its_gradient(host_sort):
    noise, source = RNG.uniform(0, 3, (2, 1, 4, 5, 6))
    directions = RNG.normal(size=(6, 4))
    directions /= np.linalg.norm(directions, axis=0)
    targets = losses.quantile_targets(losses.sorted_projections(source[0], directions), 20).astype(np.float64)
    loss_fn = lambda x: losses.sliced_wasserstein_loss_for_layer(x, targets, directions, host_sort)  # noqa: E731
    value, gradient = evaluate(loss_fn, noise)
    assert value == pytest.approx(numpy_swd(noise[0], source[0], directions), rel=1e-6)
    np.testing.assert_allclose(gradient, finite_differences(loss_fn, noise), rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize('host_sort', [True, False], ids=['numpy sort', 'tf.sort'])
def test_swd_loss_of_a_batch_is_the_mean_of_each_image_matched_alone(host_sort):
    """A generator's batch: each image's distribution must match the source's, not the batch pooled."""
    noise, source = RNG.uniform(0, 3, (3, 4, 5, 6)), RNG.uniform(0, 3, (4, 5, 6))
    directions = RNG.normal(size=(6, 4))
    directions /= np.linalg.norm(directions, axis=0)
    targets = losses.quantile_targets(losses.sorted_projections(source, directions), 20).astype(np.float64)
    loss_fn = lambda x: losses.sliced_wasserstein_loss_for_layer(x, targets, directions, host_sort)  # noqa: E731
    value, gradient = evaluate(loss_fn, noise)
    assert value == pytest.approx(np.mean([numpy_swd(image, source, directions) for image in noise]), rel=1e-6)
    np.testing.assert_allclose(gradient, finite_differences(loss_fn, noise), rtol=1e-5, atol=1e-8)


def test_targets_by_rank_pairs_each_value_with_the_target_of_its_rank():
    values = RNG.normal(size=(3, 50))
    targets = np.sort(RNG.normal(size=(3, 50)), axis=1)
    paired = losses.targets_by_rank(values, targets)
    for row in range(3):
        for index in range(50):
            rank = np.sum(values[row] < values[row, index])  # how many are smaller
            assert paired[row, index] == targets[row, rank]
    # Summed over a row, the pairing is the sorted one: the loss is the same.
    np.testing.assert_allclose(((values - paired) ** 2).sum(1), ((np.sort(values, 1) - targets) ** 2).sum(1))


def test_swd_targets_handle_other_sizes_and_blends():
    source = RNG.uniform(0, 1, (6, 6, 3))
    directions = np.eye(3)
    rows = losses.sorted_projections(source, directions)
    # A 2x2 tiling has the same distribution: its targets at 144 positions repeat each value 4 times.
    np.testing.assert_allclose(losses.quantile_targets(rows, 144), np.repeat(rows, 4, axis=1), rtol=1e-6)
    # Blending a distribution with itself shifted by 1 gives the halfway shift (the 1-D barycentre).
    blended = losses.quantile_targets([rows, rows + 1.0], 36, blend=[1, 1])
    np.testing.assert_allclose(blended, rows + 0.5, rtol=1e-6)


@pytest.mark.parametrize('host_sort', [True, False], ids=['numpy sort', 'tf.sort'])
def test_swd_loss_ignores_where_features_are(host_sort):
    source = RNG.uniform(0, 1, (1, 8, 8, 5))
    directions = RNG.normal(size=(5, 5))
    targets = losses.quantile_targets(losses.sorted_projections(source[0], directions), 64)
    shuffled = source.reshape(64, 5)[RNG.permutation(64)].reshape(1, 8, 8, 5)
    loss_fn = lambda x: losses.sliced_wasserstein_loss_for_layer(x, targets, directions, host_sort)  # noqa: E731
    assert evaluate(loss_fn, shuffled)[0] == pytest.approx(0, abs=1e-10)
