"""VGG16 convolutional layers as a TF1 graph, with named layer tensors.

    model = Vgg16(weights, pooling='avg')   # weights: {'conv1_1': (kernel, bias), ...}
    model.build(rgb)                        # rgb: float32 [batch, H, W, 3], RGB in [0, 1]
    getattr(model, 'conv3_2')               # [batch, H/4, W/4, 256] after ReLU

Only the 13 conv layers and 5 pooling layers are built (no fully connected
layers: textures need feature maps, and without them any input size works).
Where the numbers come from is `weights.py`'s job.
"""
import numpy as np
import utils  # noqa: F401  before TensorFlow: it turns oneDNN on where TensorFlow would not
import tensorflow as tf

from layers import (ARCHITECTURE, CONV_LAYERS, LAYER_NAMES, POOLINGS, deepest,  # noqa: F401  (vgg16.X as before)
                    downsampling, min_input_size, tileable_size_step)

# The weights were trained (in Caffe, then converted for Keras) on BGR images
# in [0, 255] with this per-channel ImageNet mean subtracted, in BGR order.
IMAGENET_MEAN_BGR = (103.939, 116.779, 123.68)


def weight_tensors(weights, dtype=tf.float32, up_to='pool5'):
    """Graph constants for a {conv name: (kernel HWIO, bias)} dict, made once and shared.

    Pass the result to several Vgg16 models (e.g. one for the source, one for
    the generated image) so the graph holds one copy of the weights. Only the
    layers up to `up_to` are made: constants are serialised into the session with
    the graph, and all 58 MB made a synthesis graph's setup 1.5 s where the 12 MB
    of conv1_1..conv4_1 take 0.5 s.
    """
    needed = LAYER_NAMES[:LAYER_NAMES.index(up_to) + 1]
    with tf.compat.v1.name_scope('vgg16_weights'):
        return {name: (tf.constant(np.asarray(kernel), dtype=dtype, name=name + '_kernel'),
                       tf.constant(np.asarray(bias), dtype=dtype, name=name + '_bias'))
                for name, (kernel, bias) in weights.items() if name in needed}


def wrap(net, width=1):
    """Pad [batch, H, W, C] by `width` on every side with the opposite edge (circular padding)."""
    net = tf.concat([net[:, -width:], net, net[:, :width]], axis=1)
    return tf.concat([net[:, :, -width:], net, net[:, :, :width]], axis=2)


def mirror(net, width=1):
    """Pad [batch, H, W, C] by `width` on every side with its mirror image (edge pixel not repeated)."""
    return tf.pad(net, [[0, 0], [width, width], [width, width], [0, 0]], mode='REFLECT')


# How each conv layer sees beyond the image's edge:
#   zero      the network as trained (TensorFlow's SAME padding)
#   circular  the image is a torus: what is optimised tiles without seams (--tileable)
#   reflect   a mirror: no border of a colour of its own, no seam (a tileable run's source)
PADDINGS = {'zero': None, 'circular': wrap, 'reflect': mirror}


class Vgg16:
    """The convolutional part of VGG16; layers become attributes after `build`.

    `weights` is the numpy dict from `weights.load_weights`, or, to share one
    set of constants between models, the result of `weight_tensors`, or None
    (as in the course's `Vgg16()`): the real weights, found as `weights.py` says.
    """

    def __init__(self, weights=None, pooling='avg', dtype=tf.float32, padding='zero'):
        if weights is None:
            import weights as vgg_weights  # only when asked: most callers pass their weights
            weights = vgg_weights.load_weights(vgg_weights.resolve_weights_path())
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, not {pooling!r}")
        if padding not in PADDINGS:
            raise ValueError(f"padding must be one of {tuple(PADDINGS)}, not {padding!r}")
        self.weights = weights
        self.pooling = pooling
        self.dtype = tf.as_dtype(dtype)  # bfloat16: ~1.6x faster on CPUs with AVX512-BF16 (docs/benchmarks.md)
        self.padding = padding
        self.layers = {}

    def build(self, rgb, up_to='pool5'):
        """Create the layer tensors for `rgb` ([batch, H, W, 3] RGB in [0, 1]).

        Stops after `up_to`: synthesis that only uses layers up to pool4 need
        not pay for block 5 (a fifth of the FLOPs at no benefit).
        """
        if not all(isinstance(value[0], tf.Tensor) for value in self.weights.values()):
            self.weights = weight_tensors(self.weights, self.dtype, up_to)
        with tf.compat.v1.name_scope('vgg16'):
            # RGB [0, 1] -> BGR [0, 255] minus the mean: what the weights expect.
            bgr = tf.reverse(rgb, axis=[-1]) * 255.0 - tf.constant(IMAGENET_MEAN_BGR, rgb.dtype)
            self.bgr = bgr
            net = tf.cast(bgr, self.dtype)
            for name, width in ARCHITECTURE:
                if width is None:
                    net = self._pool(net, name)
                else:
                    kernel, bias = (tf.cast(t, self.dtype) if t.dtype != self.dtype else t
                                    for t in self.weights[name])  # shared float32 constants
                    pad = PADDINGS[self.padding]
                    if pad:
                        net = tf.nn.conv2d(pad(net), kernel, strides=1, padding='VALID', name=name + '_conv')
                    else:
                        net = tf.nn.conv2d(net, kernel, strides=1, padding='SAME', name=name + '_conv')
                    net = tf.nn.relu(tf.nn.bias_add(net, bias), name=name)
                self.layers[name] = net
                setattr(self, name, net)
                if name == up_to:
                    break
        return self

    def _pool(self, net, name):
        pool = tf.nn.avg_pool2d if self.pooling == 'avg' else tf.nn.max_pool2d
        return pool(net, ksize=2, strides=2, padding='VALID', name=name)

    def __getattr__(self, name):
        # Only reached for attributes that don't exist: say why a layer is missing.
        if name in LAYER_NAMES:
            raise AttributeError(f"layer {name!r} was not built: call build() "
                                 f"with up_to at or beyond it")
        raise AttributeError(name)
