"""VGG16's layers by name, and the weights a loss gives them: plain Python, no TensorFlow.

What the command lines check options against, so that `--help` and a mistyped
option answer before TensorFlow has loaded. vgg16.py builds these layers and
losses.py weights their losses; both re-export what is here under their old names.
"""
import math
from collections.abc import Mapping

# (name, output channels) in network order; a None width marks a pooling layer.
ARCHITECTURE = (
    ('conv1_1', 64), ('conv1_2', 64), ('pool1', None),
    ('conv2_1', 128), ('conv2_2', 128), ('pool2', None),
    ('conv3_1', 256), ('conv3_2', 256), ('conv3_3', 256), ('pool3', None),
    ('conv4_1', 512), ('conv4_2', 512), ('conv4_3', 512), ('pool4', None),
    ('conv5_1', 512), ('conv5_2', 512), ('conv5_3', 512), ('pool5', None),
)
LAYER_NAMES = tuple(name for name, _ in ARCHITECTURE)
CONV_LAYERS = tuple(name for name, width in ARCHITECTURE if width is not None)
POOLINGS = ('avg', 'max')

# The course's default: all 13 conv layers (after ReLU).
GRAM_LAYERS = CONV_LAYERS
# Gatys et al. 2015's texture layers.
GATYS_LAYERS = ('conv1_1', 'pool1', 'pool2', 'pool3', 'pool4')
# Gatys et al. 2016 and most implementations keep the content on conv4_2.
CONTENT_LAYERS = ('conv4_2',)
WEIGHTINGS = ('mean', 'sum', 'geometric')
GEOMETRIC_RATIO = 10.0  # 'geometric': each successive layer weighs 10x the previous
FLOAT32_SMALLEST = 1.1754944e-38  # the smallest normal float32: a weight below it is 0 in the graph


def downsampling(layer):
    """How many 2x poolings come before `layer`'s output (pool layers count themselves)."""
    index = LAYER_NAMES.index(layer)
    return sum(1 for name in LAYER_NAMES[:index + 1] if name.startswith('pool'))


def min_input_size(layer):
    """Smallest image side for which `layer`'s feature map is at least 1x1."""
    return 2 ** downsampling(layer)


def deepest(layers):
    """The layer of `layers` that comes last in the network."""
    return max(layers, key=LAYER_NAMES.index)


def tileable_size_step(layer):
    """Tileable sides must be multiples of this, so every pooling halves the torus exactly."""
    return 2 ** downsampling(layer)


def layer_weights(layers=GRAM_LAYERS, weighting='mean'):
    """Resolve a weighting into an explicit {layer: weight} dict (network order).

    'mean'      1/L each: the course's reference, the mean over the L layers
    'sum'       1 each
    'geometric' 10, 100, 1000, ... in network order: deeper layers dominate
    a mapping   {layer: weight}, used as given (the total is sum w_l * E_l)
    """
    if isinstance(weighting, Mapping):
        weights = {layer: float(weight) for layer, weight in weighting.items()}
    else:
        check_layer_weights({layer: 1.0 for layer in layers})  # names first, before sorting by them
        if len(set(layers)) != len(layers):
            repeated = next(layer for layer in layers if list(layers).count(layer) > 1)
            raise ValueError(f"layer {repeated} is given twice")
        ordered = sorted(layers, key=LAYER_NAMES.index)
        if weighting == 'mean':
            weights = {layer: 1.0 / len(ordered) for layer in ordered}
        elif weighting == 'sum':
            weights = {layer: 1.0 for layer in ordered}
        elif weighting == 'geometric':
            weights = {layer: GEOMETRIC_RATIO ** (i + 1) for i, layer in enumerate(ordered)}
        else:
            raise ValueError(f"weighting must be one of {WEIGHTINGS} or a mapping, not {weighting!r}")
    check_layer_weights(weights)
    return dict(sorted(weights.items(), key=lambda item: LAYER_NAMES.index(item[0])))


def check_layer_weights(weights):
    """ValueError (user-facing message) for unknown layers or weights that are not finite and >= 0."""
    if not weights:
        raise ValueError("no layers given")
    for layer, weight in weights.items():
        if layer not in LAYER_NAMES:
            raise ValueError(f"unknown layer {layer!r}; layers are {', '.join(LAYER_NAMES)}")
        if not math.isfinite(weight) or weight < 0:
            raise ValueError(f"weight of {layer} must be a finite number >= 0, not {weight}")
        if 0 < weight < FLOAT32_SMALLEST:
            raise ValueError(f"weight of {layer} is {weight:g}: below {FLOAT32_SMALLEST:.3g}, float32 makes it 0")
    if not any(weights.values()):
        raise ValueError("all layer weights are zero: nothing to optimise")
