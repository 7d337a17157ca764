"""Gram-matrix texture losses (Gatys et al. 2015), as pure TF graph functions.

Normalisation, and how it relates to the other common ones
-----------------------------------------------------------
For a layer with N feature maps of M = H*W positions, F is the M x N matrix of
activations and

    G = F^T F / (N * M)                                  (gram_matrix)
    E = tf.nn.l2_loss(G_source - G_noise) / 2
      = sum((G_source - G_noise)^2) / 4                  (get_l2_gram_loss_for_layer)

Writing Ĝ = F^T F for the unnormalised Gram, this is exactly

  * Gatys et al. 2015:      E = 1 / (4 N^2 M^2) * sum((Ĝ_s - Ĝ_n)^2)
  * Coursera (deeplearning.ai) J_style_layer
                            = 1 / (4 n_C^2 (n_H n_W)^2) * sum((Ĝ_s - Ĝ_n)^2)   (the same)
  * PyTorch tutorial:       G_t = Ĝ / (d*h*w)  with d = N (batch 1),
                            loss = mse(G_t_s, G_t_n) = sum((G_s - G_n)^2) / N^2
                            = 4 E / N^2

tests/test_losses.py proves each of these equalities numerically.

Source statistics are precomputed: every function that takes `source` accepts
either a model (anything with layer attributes, read with getattr) or a dict
{layer: Gram matrix} computed once with `source_grams`, so the optimisation
loop never runs the source image through VGG again.
"""
from collections.abc import Mapping

import numpy as np
import utils  # noqa: F401  before TensorFlow: it turns oneDNN on where TensorFlow would not
import tensorflow as tf

from layers import (CONTENT_LAYERS, GATYS_LAYERS, GEOMETRIC_RATIO, GRAM_LAYERS,  # noqa: F401  (losses.X as before)
                    WEIGHTINGS, check_layer_weights, layer_weights)

def at_least_float32_dtype(dtype):
    """bfloat16 and float16 -> float32; float32 and float64 stay."""
    return tf.float32 if dtype in (tf.bfloat16, tf.float16) else dtype


def at_least_float32(tensor):
    """bfloat16 and float16 become float32; float32 and float64 stay."""
    dtype = at_least_float32_dtype(tensor.dtype)
    return tensor if dtype == tensor.dtype else tf.cast(tensor, dtype)


def gram_matrix(features):
    """[batch, H, W, N] feature maps -> [batch, N, N] Grams, G = F^T F / (N * M), M = H * W.

    Always a float32 Gram. From bfloat16 features the product itself runs in bfloat16:
    oneDNN (and cuBLAS) accumulate its M-term sums in float32 and only round the result,
    to about 0.2%, which left the optimisation's path unchanged (docs/benchmarks.md), while
    casting F to float32 first made the Gram's product a quarter of an evaluation's kernel time.
    """
    shape = tf.shape(features)
    batch, positions, channels = shape[0], shape[1] * shape[2], shape[3]
    flat = tf.reshape(features, tf.stack([batch, positions, channels]))  # [batch, M, N]
    return _normalised_gram(flat, tf.cast(channels * positions, at_least_float32_dtype(features.dtype)))


@tf.custom_gradient
def _normalised_gram(flat, normaliser):
    """F^T F / normaliser for F = flat [batch, M, N], with a gradient that costs one matmul, not two.

    Autodiff of matmul(F, F, transpose_a=True) differentiates each operand on its own: two
    [M, N] x [N, N] products and their sum, over a third of a whole evaluation's time at
    256 px. dL/dF = F (dG + dG^T) / normaliser is one product, done in F's own precision:
    from bfloat16 features the gradient flows back into a bfloat16 network anyway.
    """
    gram = at_least_float32(tf.matmul(flat, flat, transpose_a=True)) / normaliser

    def gradient(upstream):                                                  # upstream: [batch, N, N]
        symmetric = (upstream + tf.linalg.matrix_transpose(upstream)) / normaliser
        return tf.matmul(flat, tf.cast(symmetric, flat.dtype)), None           # [batch, M, N]
    return gram, gradient


def _source_gram(source, layer, dtype):
    if isinstance(source, Mapping):
        return tf.constant(source[layer], dtype=dtype)
    return gram_matrix(getattr(source, layer))


def get_l2_gram_loss_for_layer(noise, source, layer):
    """sum((G_source - G_noise)^2) / 4 for one layer (summed over the batch)."""
    noise_gram = gram_matrix(getattr(noise, layer))
    source_gram = _source_gram(source, layer, noise_gram.dtype)
    return tf.nn.l2_loss(source_gram - noise_gram) / 2


def get_gram_losses(noise, source, layers=GRAM_LAYERS, weighting='mean'):
    """(total, {layer: unweighted loss}): total = sum over layers of weight * loss."""
    weights = layer_weights(layers, weighting)
    per_layer = {layer: get_l2_gram_loss_for_layer(noise, source, layer) for layer in weights}
    total = tf.add_n([weight * per_layer[layer] for layer, weight in weights.items()])
    return total, per_layer


def get_gram_loss(noise, source, layers=GRAM_LAYERS, weighting='mean'):
    """The weighted Gram loss over `layers` (see `layer_weights` for the weightings)."""
    return get_gram_losses(noise, source, layers, weighting)[0]


def with_unit_gradient(features, scale=1.0):
    """`features` unchanged, but the gradient that flows back through them is rescaled to a
    mean absolute value of `scale` (texture_nets' -normalize_gradients, Ulyanov et al. 2016).

    The losses keep their values; only how hard each layer's loss pulls is evened out. The
    Gram losses of the default layers differ by 10^4 (conv1_1 against conv3_x), so a
    generator trained by Adam on their plain sum learnt the shapes and skipped whole colours
    (docs/feedforward.md). The mean is taken in float32 whatever the features' precision.
    """
    @tf.custom_gradient
    def identity(values):
        def gradient(upstream):
            size = tf.reduce_mean(tf.abs(tf.cast(upstream, tf.float32)))
            factor = tf.math.divide_no_nan(tf.constant(scale, tf.float32), size)  # no gradient: 0, not NaN
            return upstream * tf.cast(factor, upstream.dtype)
        return tf.identity(values), gradient
    return identity(features)


def source_grams(session, model, layers, feed_dict=None):
    """Run `model` once and return {layer: Gram as numpy}, for use as `source` above."""
    return session.run({layer: gram_matrix(getattr(model, layer)) for layer in layers}, feed_dict)


# ------------------------------------------------------------ style transfer

def content_loss_for_layer(noise_features, content_features):
    """sum((F - P)^2) / (4 N M) for [1, H, W, N] feature maps, M = H * W.

    This is Coursera's J_content = 1/(4 n_H n_W n_C) * sum((a_C - a_G)^2): divided
    by the layer's size, so the content weight means the same at any image size.
    Gatys et al. 2016 use sum((F - P)^2) / 2 and the Keras example sum((F - P)^2),
    i.e. 2 N M and 4 N M times this one (tests/test_losses.py checks both).
    """
    noise_features = at_least_float32(noise_features)
    difference = noise_features - tf.constant(content_features, noise_features.dtype)
    size = tf.cast(tf.size(difference), noise_features.dtype)  # batch 1: N * M
    return tf.reduce_sum(tf.square(difference)) / (4.0 * size)


def total_variation_loss(image):
    """Mean squared difference between neighbouring pixels, [1, H, W, 3] in [0, 1].

    Squared (not absolute) differences, like the Keras example's beta = 2 and
    Mahendran & Vedaldi: smooth everywhere, so L-BFGS sees no kinks. A mean,
    not a sum, so --tv-weight does not depend on the image size.
    """
    down = image[:, 1:, :, :] - image[:, :-1, :, :]
    right = image[:, :, 1:, :] - image[:, :, :-1, :]
    return tf.reduce_mean(tf.square(down)) + tf.reduce_mean(tf.square(right))


# ------------------------------------------------------------ sliced Wasserstein

def sorted_projections(features, directions):
    """numpy [H, W, N] features -> [K, M] projections on the K columns of `directions`, each row sorted."""
    flat = features.reshape(-1, features.shape[-1]).astype(np.float64)
    return np.sort((flat @ directions).T, axis=1)


def quantile_targets(sorted_rows, count, blend=None):
    """Each row's empirical quantile function at `count` levels (i + 0.5) / count -> [K, count].

    Several sources (a list, with blend weights) give the weighted mean of their
    quantile functions: in 1-D that is exactly their Wasserstein barycentre.
    """
    sources = sorted_rows if isinstance(sorted_rows, list) else [sorted_rows]
    blend = np.ones(len(sources)) if blend is None else np.asarray(blend, np.float64)
    levels = (np.arange(count) + 0.5) / count
    targets = 0.0
    for weight, rows in zip(blend / blend.sum(), sources):
        positions = np.minimum((levels * rows.shape[1]).astype(int), rows.shape[1] - 1)  # inverted CDF
        targets = targets + weight * rows[:, positions]
    return targets.astype(np.float32)


def sliced_wasserstein_loss_for_layer(noise_features, targets, directions, host_sort=None):
    """mean((sort(F d_k) - target quantiles_k)^2) over the K directions and the M positions,
    and over the batch: each image's own distribution is matched, not the batch's pooled one.

    noise_features [batch, H, W, N]; directions [N, K] (numpy, fixed: L-BFGS needs
    one objective); targets [K, M] from `quantile_targets`. Heitz et al. 2021.

    host_sort (default: when TensorFlow sees no GPU) sorts in numpy instead of with
    tf.sort, whose CPU kernel is 3-4x slower than numpy's argsort here (docs/design.md):
    each projection is paired with the target of its rank, and since that pairing
    is constant almost everywhere, mean((F d - paired target)^2) has the same value
    and gradient as the sorted form.
    """
    features = at_least_float32(noise_features)
    shape = tf.shape(features)
    channels = features.shape[-1]
    flat = tf.reshape(features, [-1, channels])                               # [batch * M, N]
    projected = tf.matmul(flat, tf.constant(directions, features.dtype))      # [batch * M, K]
    projected = tf.transpose(tf.reshape(projected, tf.stack([shape[0], shape[1] * shape[2], directions.shape[1]])),
                             [0, 2, 1])                                       # [batch, K, M]
    if host_sort is None:
        host_sort = not tf.config.list_physical_devices('GPU')
    if host_sort:
        # Cast once here, not at every evaluation (64 x 65536 values at conv1_1).
        host_targets = np.asarray(targets, projected.dtype.as_numpy_dtype)
        paired = tf.numpy_function(lambda values: targets_by_rank(values, host_targets), [projected],
                                   projected.dtype, stateful=False, name='targets_by_rank')
        paired = tf.stop_gradient(tf.ensure_shape(paired, projected.shape))
        return tf.reduce_mean(tf.square(projected - paired))
    ordered = tf.sort(projected, axis=-1)
    return tf.reduce_mean(tf.square(ordered - tf.constant(targets, features.dtype)))


def targets_by_rank(values, sorted_targets):
    """numpy [..., K, M] values, [K, M] rows sorted ascending -> [..., K, M]: at each value's place,
    the target of its rank in its row (the smallest value gets the smallest target, ...)."""
    paired = np.empty_like(values)
    np.put_along_axis(paired, np.argsort(values, axis=-1), sorted_targets.astype(values.dtype, copy=False), axis=-1)
    return paired
