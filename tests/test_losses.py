"""Gram matrices and Gram losses against plain numpy references."""
import types

import numpy as np
import pytest
import tensorflow as tf

import losses

RNG = np.random.default_rng(0)


def run(tensor_fn, *arrays):
    """Evaluate tensor_fn(*constants) in a fresh graph, in float64 for tight comparisons."""
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        return session.run(tensor_fn(*[tf.constant(a) for a in arrays]))


def numpy_gram(features):
    """features [H, W, N] -> F^T F / (N M), F the M x N matrix."""
    height, width, channels = features.shape
    flat = features.reshape(height * width, channels)
    return flat.T @ flat / (channels * height * width)


def numpy_layer_loss(noise_features, source_features):
    return np.sum((numpy_gram(source_features) - numpy_gram(noise_features)) ** 2) / 4


def models(noise_maps, source_maps):
    """Stand-ins for built Vgg16 models: anything with layer attributes works."""
    noise = types.SimpleNamespace(**{k: tf.constant(v[None]) for k, v in noise_maps.items()})
    source = types.SimpleNamespace(**{k: tf.constant(v[None]) for k, v in source_maps.items()})
    return noise, source


def feature_maps(layers, seed):
    rng = np.random.default_rng(seed)
    # Different sizes and widths per layer, like a real network.
    return {layer: rng.uniform(0, 3, (12 // (i + 1) + 2, 10 // (i + 1) + 3, 4 + 2 * i))
            for i, layer in enumerate(layers)}


# ---------------------------------------------------------------- gram_matrix

@pytest.mark.parametrize('shape', [(1, 5, 7, 3), (2, 4, 4, 6), (3, 1, 9, 2)])
def test_gram_matches_numpy_for_any_batch_and_size(shape):
    features = RNG.normal(size=shape)
    gram = run(losses.gram_matrix, features)
    assert gram.shape == (shape[0], shape[3], shape[3])
    for item in range(shape[0]):
        np.testing.assert_allclose(gram[item], numpy_gram(features[item]), rtol=1e-10)


def test_gram_is_symmetric_and_positive_semidefinite():
    gram = run(losses.gram_matrix, RNG.normal(size=(1, 8, 6, 5)))[0]
    np.testing.assert_allclose(gram, gram.T, rtol=1e-12)
    assert np.linalg.eigvalsh(gram).min() > -1e-12


def test_gram_ignores_where_pixels_are():
    features = RNG.normal(size=(1, 6, 7, 4))
    flat = features.reshape(-1, 4)
    shuffled = flat[RNG.permutation(len(flat))].reshape(features.shape)
    np.testing.assert_allclose(run(losses.gram_matrix, features), run(losses.gram_matrix, shuffled),
                               rtol=1e-10)


def test_gram_does_not_depend_on_image_size_for_a_repeated_texture():
    tile = RNG.normal(size=(1, 4, 4, 3))
    tiled = np.tile(tile, (1, 3, 2, 1))  # same statistics, 6x the pixels
    np.testing.assert_allclose(run(losses.gram_matrix, tile), run(losses.gram_matrix, tiled), rtol=1e-10)


def test_gram_of_unknown_spatial_size():
    """The graph may not know H and W until it runs (placeholders with None dims)."""
    features = RNG.normal(size=(1, 5, 3, 2)).astype(np.float32)
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        placeholder = tf.compat.v1.placeholder(tf.float32, [1, None, None, 2])
        gram = session.run(losses.gram_matrix(placeholder), {placeholder: features})
    np.testing.assert_allclose(gram[0], numpy_gram(features[0]), rtol=1e-5)


def test_gram_gradient_matches_finite_differences_for_any_upstream():
    """gram_matrix has a hand-written gradient, F (U + U^T) / (N M): check it on a loss
    sum(U * G) whose U is not symmetric, so a gradient that assumed U^T = U would fail."""
    features = RNG.normal(size=(2, 3, 2, 4))
    upstream = RNG.normal(size=(2, 4, 4))
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        placeholder = tf.compat.v1.placeholder(tf.float64, features.shape)
        loss = tf.reduce_sum(tf.constant(upstream) * losses.gram_matrix(placeholder))
        gradient = session.run(tf.gradients(loss, placeholder)[0], {placeholder: features})
    flat = features.reshape(2, 6, 4)
    expected = (flat @ (upstream + upstream.transpose(0, 2, 1)) / (4 * 6)).reshape(features.shape)
    np.testing.assert_allclose(gradient, expected, rtol=1e-10)
    epsilon, index = 1e-6, (1, 2, 0, 3)
    step = np.zeros_like(features)
    step[index] = epsilon
    numeric = (np.sum(upstream * np.stack([numpy_gram(f) for f in features + step]))
               - np.sum(upstream * np.stack([numpy_gram(f) for f in features - step]))) / (2 * epsilon)
    assert gradient[index] == pytest.approx(numeric, rel=1e-6)


def test_gram_of_bfloat16_features_is_float32_and_its_gradient_bfloat16():
    """A bfloat16 network gets a float32 Gram (sums over M positions need it) and a bfloat16
    gradient back, close to the float32 one."""
    features = RNG.uniform(0, 2, size=(1, 16, 16, 8)).astype(np.float32)
    target = numpy_gram(RNG.uniform(0, 2, size=(16, 16, 8)))
    results = {}
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        for dtype in (tf.float32, tf.bfloat16):
            inputs = tf.cast(tf.constant(features), dtype)
            gram = losses.gram_matrix(inputs)
            loss = tf.nn.l2_loss(gram - target.astype(np.float32))
            gradient = tf.gradients(loss, inputs)[0]
            assert gram.dtype == tf.float32 and gradient.dtype == dtype
            results[dtype] = session.run([gram, tf.cast(gradient, tf.float32)])
    (gram32, gradient32), (gram16, gradient16) = results[tf.float32], results[tf.bfloat16]
    # F and the Gram are rounded to bfloat16 (8 bits: 0.4%); the gradient scales G - target,
    # a difference of such numbers, so it moves more.
    np.testing.assert_allclose(gram16, gram32, rtol=2e-2, atol=1e-3)
    assert np.abs(gradient16 - gradient32).max() < 5e-2 * np.abs(gradient32).max()


def test_bfloat16_gram_sums_in_float32():
    """A bfloat16 running sum stops growing at 256 (adding 1 no longer changes it): a Gram over
    256 x 256 positions is only right if the product accumulates in float32."""
    features = np.ones((1, 256, 256, 2), np.float32)
    features[..., 1] = 3.0
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        gram = session.run(losses.gram_matrix(tf.cast(tf.constant(features), tf.bfloat16)))
    np.testing.assert_allclose(gram[0], numpy_gram(features[0]), rtol=1e-2)


# ---------------------------------------------------------------- layer loss

def test_layer_loss_matches_numpy_and_seed_definition():
    noise_maps, source_maps = feature_maps(['conv1_1'], 1), feature_maps(['conv1_1'], 2)

    def loss(_):
        return losses.get_l2_gram_loss_for_layer(*models(noise_maps, source_maps), 'conv1_1')

    expected = numpy_layer_loss(noise_maps['conv1_1'], source_maps['conv1_1'])
    np.testing.assert_allclose(run(loss, 0.0), expected, rtol=1e-10)


def test_layer_loss_is_gatys_formula_on_unnormalised_grams():
    noise, source = RNG.uniform(size=(7, 5, 6)), RNG.uniform(size=(7, 5, 6))
    channels, positions = 6, 35
    unnormalised = lambda f: f.reshape(-1, channels).T @ f.reshape(-1, channels)  # noqa: E731
    gatys = np.sum((unnormalised(source) - unnormalised(noise)) ** 2) / (4 * channels ** 2 * positions ** 2)
    np.testing.assert_allclose(numpy_layer_loss(noise, source), gatys, rtol=1e-12)
    # Coursera's J_style_layer = 1/(4 n_C^2 (n_H n_W)^2) * sum((G_S - G_G)^2): the same number.
    coursera = np.sum((unnormalised(source) - unnormalised(noise)) ** 2) / (4 * channels ** 2 * (7 * 5) ** 2)
    np.testing.assert_allclose(numpy_layer_loss(noise, source), coursera, rtol=1e-12)
    # PyTorch tutorial: G = F F^T / (a b c d), loss = mse(G, target) = 4 E / N^2.
    pytorch = np.mean((numpy_gram(source) - numpy_gram(noise)) ** 2)
    np.testing.assert_allclose(pytorch, 4 * numpy_layer_loss(noise, source) / channels ** 2, rtol=1e-12)


def test_layer_loss_is_zero_for_identical_statistics():
    maps = feature_maps(['pool2'], 3)
    loss = run(lambda _: losses.get_l2_gram_loss_for_layer(*models(maps, maps), 'pool2'), 0.0)
    assert loss == 0.0


def test_precomputed_source_grams_give_the_same_loss():
    layers = ['conv1_1', 'conv2_1', 'pool3']
    noise_maps, source_maps = feature_maps(layers, 4), feature_maps(layers, 5)
    grams = {layer: numpy_gram(source_maps[layer])[None] for layer in layers}

    def both(_):
        noise, source = models(noise_maps, source_maps)
        return (losses.get_gram_loss(noise, source, layers, 'sum'),
                losses.get_gram_loss(noise, grams, layers, 'sum'))

    from_model, from_grams = run(both, 0.0)
    np.testing.assert_allclose(from_model, from_grams, rtol=1e-10)


# ---------------------------------------------------------------- weightings

LAYERS = ['conv1_1', 'pool1', 'conv3_2', 'pool4']


@pytest.mark.parametrize('weighting, weights', [
    ('mean', [0.25, 0.25, 0.25, 0.25]),
    ('sum', [1, 1, 1, 1]),
    ('geometric', [10, 100, 1000, 10000]),
    ({'conv1_1': 2.0, 'pool1': 0.0, 'conv3_2': 0.5, 'pool4': 3.0}, [2.0, 0.0, 0.5, 3.0]),
])
def test_weighted_total_matches_numpy(weighting, weights):
    noise_maps, source_maps = feature_maps(LAYERS, 6), feature_maps(LAYERS, 7)
    per_layer = [numpy_layer_loss(noise_maps[layer], source_maps[layer]) for layer in LAYERS]
    expected = float(np.dot(weights, per_layer))
    total = run(lambda _: losses.get_gram_loss(*models(noise_maps, source_maps), LAYERS, weighting), 0.0)
    np.testing.assert_allclose(total, expected, rtol=1e-10)


def test_geometric_follows_network_order_not_argument_order():
    assert losses.layer_weights(['pool4', 'conv1_1'], 'geometric') == {'conv1_1': 10.0, 'pool4': 100.0}


def test_default_layers_are_the_13_conv_layers():
    assert len(losses.GRAM_LAYERS) == 13 and all(name.startswith('conv') for name in losses.GRAM_LAYERS)
    assert losses.layer_weights()['conv5_3'] == pytest.approx(1 / 13)


@pytest.mark.parametrize('weighting, message', [
    ({'conv9_1': 1.0}, 'unknown layer'),
    ({'conv1_1': -1.0}, '>= 0'),
    ({'conv1_1': float('nan')}, '>= 0'),
    ({'conv1_1': float('inf')}, '>= 0'),
    ({'conv1_1': 0.0}, 'all layer weights are zero'),
    ('harmonic', 'weighting must be'),
])
def test_bad_weights_are_refused(weighting, message):
    with pytest.raises(ValueError, match=message):
        losses.layer_weights(['conv1_1'], weighting)


# ---------------------------------------------------------------- gradient

def test_gradient_matches_finite_differences():
    """d(loss)/d(noise features) from TF against central differences in float64."""
    noise_features = RNG.uniform(0, 1, (1, 3, 4, 3))
    source_features = RNG.uniform(0, 1, (1, 3, 4, 3))
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        placeholder = tf.compat.v1.placeholder(tf.float64, noise_features.shape)
        noise = types.SimpleNamespace(conv1_1=placeholder, pool1=placeholder * 2.0)
        source = types.SimpleNamespace(conv1_1=tf.constant(source_features),
                                       pool1=tf.constant(source_features * 1.5))
        loss = losses.get_gram_loss(noise, source, ['conv1_1', 'pool1'], 'geometric')
        gradient = session.run(tf.gradients(loss, placeholder)[0], {placeholder: noise_features})
        numeric = np.zeros_like(noise_features)
        epsilon = 1e-6
        for index in np.ndindex(noise_features.shape):
            step = np.zeros_like(noise_features)
            step[index] = epsilon
            plus = session.run(loss, {placeholder: noise_features + step})
            minus = session.run(loss, {placeholder: noise_features - step})
            numeric[index] = (plus - minus) / (2 * epsilon)
    np.testing.assert_allclose(gradient, numeric, rtol=1e-6, atol=1e-9)
