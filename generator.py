"""The feed-forward texture generator as a TF1 graph: noise in, RGB in [0, 1] out.

    noise = noise_inputs(seed, 1, 512, 512)     # one uniform noise map per scale, coarsest first
    rgb = build(noise, mean_colour)              # [1, 512, 512, 3] in [0, 1]

Ulyanov et al.'s multi-scale generator (Texture Networks, 2016; texture_nets'
models/pyramid.lua): noise at 1/32, 1/16, ... 1/1 of the output size; each scale
goes through conv 3x3, 3x3, 1x1 of CHANNELS maps, is joined to the upsampled
coarser path by concatenation, and the join goes through the same three convs,
wider by CHANNELS at each scale; a last 1x1 conv makes RGB. About 0.1 M
parameters. With instance normalisation (Ulyanov et al. 2017, Improved Texture
Networks) after every conv instead of batch normalisation: no running statistics,
so a sample is the same whatever else is in its batch, and any size works.

Every 3x3 conv pads circularly (as texture_nets does by default): the network
has no border, so nothing in a sample depends on where it is, and every sample
whose sides are multiples of COARSEST tiles without a seam.
"""
import math

import numpy as np
import utils  # noqa: F401  before TensorFlow: it turns oneDNN on where TensorFlow would not
import tensorflow as tf

import vgg16
# The numbers a checkpoint records: TensorFlow-free, so sizes and checkpoints are checked before it loads.
from generator_design import CHANNELS, SCALES

NOISE_CHANNELS = 3
LEAK = 0.01                     # LeakyReLU slope, as texture_nets (Torch's default)
EPSILON = 1e-5                  # instance normalisation's variance floor
SCOPE = 'generator'


def noise_inputs(seed, batch, height, width):
    """Uniform noise [batch, height / 2^k, width / 2^k, NOISE_CHANNELS] for k = SCALES - 1 ... 0.

    `seed` is a pair (two int64 numbers or an int64 tensor [2]): stateless random numbers,
    so the same seed gives the same noise on any machine, in this graph or a SavedModel.
    height and width (ints or int32 tensors) must be multiples of COARSEST.
    """
    seed = tf.cast(seed, tf.int64)
    maps = []
    for k in reversed(range(SCALES)):
        shape = tf.stack([batch, height // 2 ** k, width // 2 ** k, NOISE_CHANNELS])
        # One stream per (seed, scale): [a, b] -> [a, b * SCALES + k], so no two ever share noise.
        scale_seed = tf.stack([seed[0], seed[1] * SCALES + k])
        maps.append(tf.random.stateless_uniform(shape, scale_seed))
    return maps


def build(noises, mean_colour=(0.5, 0.5, 0.5), dtype=tf.float32):
    """RGB [batch, H, W, 3] in (0, 1) from noise_inputs' maps; the variables live in SCOPE.

    Call it again in the same graph and it reuses the same variables. `mean_colour`
    only initialises the last layer's bias: untrained, the generator paints about the
    source's mean colour, as the pixel optimisation's mean-noise start does. `dtype`:
    the convolutions' precision (variables and normalisation statistics stay float32).
    """
    with tf.compat.v1.variable_scope(SCOPE, reuse=tf.compat.v1.AUTO_REUSE):
        net = None
        for k, noise in enumerate(noises):
            branch = _block(noise, f'scale{k}', CHANNELS, dtype)
            if net is None:
                net = branch
            else:
                # Both paths normalised before they meet, so neither drowns the other (pyramid.lua).
                net = tf.concat([_normalise(_upsample(net), f'join{k}/coarse'),
                                 _normalise(branch, f'join{k}/fine')], axis=-1)
                net = _block(net, f'join{k}', CHANNELS * (k + 1), dtype)
        logit = np.log(np.clip(mean_colour, 0.02, 0.98) / (1 - np.clip(mean_colour, 0.02, 0.98)))
        rgb = _conv(net, 'rgb', 3, 1, dtype, bias=tf.compat.v1.constant_initializer(logit))
        return tf.sigmoid(tf.cast(rgb, tf.float32))


def variables():
    """The generator's variables in the default graph, by name (a checkpoint's keys)."""
    return {variable.op.name: variable for variable in
            tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.TRAINABLE_VARIABLES, scope=SCOPE + '/')}


def _block(net, name, channels, dtype):
    """conv 3x3, 3x3, 1x1, each followed by instance normalisation and LeakyReLU."""
    for index, kernel in enumerate((3, 3, 1)):
        net = _conv(net, f'{name}/conv{index}', channels, kernel, dtype)
        net = tf.nn.leaky_relu(_normalise(net, f'{name}/norm{index}'), LEAK)
    return net


def _conv(net, name, channels, kernel, dtype, bias=tf.compat.v1.zeros_initializer()):
    inputs = net.shape[-1]
    # He initialisation for the LeakyReLU that follows.
    weights = tf.compat.v1.get_variable(
        name + '/kernel', [kernel, kernel, inputs, channels], tf.float32,
        tf.compat.v1.random_normal_initializer(0.0, math.sqrt(2.0 / (kernel * kernel * inputs)), seed=0))
    biases = tf.compat.v1.get_variable(name + '/bias', [channels], tf.float32, bias)
    if kernel > 1:
        net = vgg16.wrap(net, kernel // 2)
    net = tf.nn.conv2d(tf.cast(net, dtype), tf.cast(weights, dtype), strides=1, padding='VALID')
    return tf.nn.bias_add(net, tf.cast(biases, dtype))


def _normalise(net, name):
    """Instance normalisation: each image's each channel to mean 0 and variance 1 over its
    positions, then a learnt scale and shift; statistics in float32 whatever the convs run in.

    As one fused batch normalisation of [1, H, W, batch * C]: its kernel computes the same
    numbers as tf.nn.moments and the arithmetic around it, and with its gradient took
    a step 2.3x faster ([4, 128, 128, 48]: 23 against 53 ms).
    """
    channels = net.shape[-1]
    scale = tf.compat.v1.get_variable(name + '/scale', [channels], tf.float32, tf.compat.v1.ones_initializer())
    shift = tf.compat.v1.get_variable(name + '/shift', [channels], tf.float32, tf.compat.v1.zeros_initializer())
    shape = tf.shape(net)
    batch, height, width = shape[0], shape[1], shape[2]
    stacked = tf.reshape(tf.transpose(tf.cast(net, tf.float32), [1, 2, 0, 3]),    # [1, H, W, batch * C]
                         tf.stack([1, height, width, batch * channels]))
    normalised, _, _ = tf.compat.v1.nn.fused_batch_norm(
        stacked, tf.tile(scale, [batch]), tf.tile(shift, [batch]), epsilon=EPSILON, is_training=True)
    normalised = tf.transpose(tf.reshape(normalised, tf.stack([height, width, batch, channels])), [2, 0, 1, 3])
    return tf.cast(normalised, net.dtype)


def _upsample(net):
    """Nearest-neighbour 2x: [batch, H, W, C] -> [batch, 2H, 2W, C], by broadcasting (deterministic
    on every device, unlike resize's gradient kernels on a GPU)."""
    shape = tf.shape(net)
    net = tf.tile(net[:, :, None, :, None, :], [1, 1, 2, 1, 2, 1])
    return tf.reshape(net, tf.stack([shape[0], 2 * shape[1], 2 * shape[2], net.shape[-1]]))
