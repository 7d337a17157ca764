"""train.py's option values: what they may be, parsing them, and the schedule (scales,
iterations, precision) and memory they imply.

Pure functions of the options and the image sizes, so compare.py and
benchmark.py resolve settings exactly as train.py does, and no TensorFlow: the
command lines check their options before loading it (only asking whether a GPU
is there loads it, and only where a GPU driver is installed).
"""
import glob
import math
import os
import sys

import layers
from utils import InputError, quiet_stderr

OPTIMIZERS = ('lbfgs', 'adam')
STYLE_LOSSES = ('gram', 'swd', 'gram+swd')
# 'gram+swd': Gram / SWD measured 2500-3500 on the starting noise and 60-800 near
# convergence (texture1-4, 256 px): x300 keeps both parts within about 10x of each other.
SWD_WEIGHT = 300.0
PRECISIONS = ('float32', 'bfloat16')
# The generator's Adam (train.py --feed-forward); 0.002-0.1 measured on texture1 (docs/feedforward.md).
GENERATOR_LEARNING_RATE = 0.005
WEIGHTING = 'mean'
# Seeds become TensorFlow int64 scalars (the generator's noise) and numpy seeds: 32 bits is plenty
# and keeps seed + count within both.
MAX_SEED = 2 ** 32 - 1
ITERATIONS = {'lbfgs': 200, 'adam': 2000}   # at one scale
# each coarse stage of --scales; 140 L-BFGS iterations at half size (27 ms each at 256 px) reached the
# baseline's loss 2-6% sooner than 100 on texture1 and texture4, with a lower final loss (docs/benchmarks.md)
COARSE_ITERATIONS = {'lbfgs': 140, 'adam': 500}
FINE_ITERATIONS = {'lbfgs': 100, 'adam': 1000}    # the full-size stage after coarse ones
# Peak memory of a run (docs/benchmarks.md, peak memory): a fixed part (TensorFlow, the weights, the
# source's network) and a part per pixel of the full-size stage, where VGG16's activations, their
# gradients and the SWD's sorted projections dominate. Fitted to runs of texture1 at 1024-2048 px
# on this project's machine and rounded up, so every measured peak is 1.0-1.3x under its estimate.
MEMORY_FIXED_GB = 1.2
MEMORY_PER_MEGAPIXEL_GB = {('gram', 'bfloat16'): 1.6, ('gram', 'float32'): 2.6,
                           ('swd', 'bfloat16'): 6.0, ('swd', 'float32'): 6.8}
MEMORY_DEEP_FACTOR = 1.4        # layers past conv4_1 (e.g. --layers all-conv): measured 1.2-1.5x
MEMORY_DEEP_AFTER = 'conv4_1'
# A generator's training adds its own activations, kept for the backward pass: per megapixel of samples.
MEMORY_GENERATOR_PER_MEGAPIXEL_GB = 2.0
COARSE_MIN_SIDE = 128  # below this the deep layers see too few positions and copy the source's layout
MAX_STAGES = 3


def parse_numbers(text, option, kind):
    try:
        return [kind(item) for item in text.split(',')]
    except ValueError:
        raise ValueError(f"{option} must be {'numbers' if kind is float else 'whole numbers'} "
                         f"separated by commas, not {text!r}") from None


def parse_blend(text, count):
    """'0.7,0.3' -> [0.7, 0.3], one finite weight >= 0 per style image, not all zero."""
    if text is None:
        return [1.0] * count
    try:
        blend = [float(item) for item in text.split(',')]
    except ValueError:
        raise ValueError(f"--style-blend must be numbers like 0.7,0.3, not {text!r}") from None
    if len(blend) != count:
        raise ValueError(f"--style-blend has {len(blend)} weights for {count} style image(s)")
    if not all(math.isfinite(b) and b >= 0 for b in blend) or not any(blend):
        raise ValueError(f"--style-blend weights must be finite, >= 0 and not all 0, not {text!r}")
    return blend


def parse_layers(text, weighting):
    """'conv1_1,pool1' -> weights by `weighting`; 'conv1_1=1,pool1=2' -> those weights."""
    if text == 'all-conv':
        text = ','.join(layers.GRAM_LAYERS)
    items = [item.strip() for item in text.split(',') if item.strip()]
    explicit = [item for item in items if '=' in item]
    if explicit and len(explicit) != len(items):
        raise ValueError("--layers: give a weight to every layer or to none")
    if not explicit:
        return layers.layer_weights(items, weighting or WEIGHTING)
    if weighting:
        raise ValueError("--weighting cannot be combined with explicit weights in --layers")
    mapping = {}
    for item in explicit:
        layer, _, value = item.partition('=')
        if layer.strip() in mapping:
            raise ValueError(f"--layers: {layer.strip()} is given twice")
        try:
            mapping[layer.strip()] = float(value)
        except ValueError:
            raise ValueError(f"--layers: weight of {layer.strip()} is not a number: {value!r}") from None
    return layers.layer_weights(weighting=mapping)


def parse_size(text):
    """'512' -> (512, 512); '512x384' (width x height) -> (384, 512) as (height, width)."""
    parts = text.lower().split('x')
    try:
        numbers = [int(part) for part in parts]
    except ValueError:
        raise ValueError(f"--output-size must look like 512 or 512x384, not {text!r}") from None
    if len(numbers) not in (1, 2) or min(numbers) < 1:
        raise ValueError(f"--output-size must look like 512 or 512x384, not {text!r}")
    width, height = numbers if len(numbers) == 2 else numbers * 2
    return height, width


def auto_precision():
    """bfloat16 where the CPU has bfloat16 instructions and no GPU is used, else float32."""
    try:
        with open('/proc/cpuinfo') as handle:
            flags = handle.read()
    except OSError:  # not Linux: no cheap way to know
        return 'float32'
    if 'avx512_bf16' not in flags and 'amx_bf16' not in flags:
        return 'float32'
    return 'float32' if gpu_visible() else 'bfloat16'


def gpu_visible():
    """Whether TensorFlow sees a GPU (this loads TensorFlow, unless there can be none)."""
    if gpu_unavailable_for_sure():
        return False
    with quiet_stderr():
        import tensorflow as tf
        return bool(tf.config.list_physical_devices('GPU'))


def gpu_device_paths():
    """The device files a GPU driver makes on Linux: NVIDIA's, WSL2's, ROCm's."""
    return glob.glob('/proc/driver/nvidia/gpus/*') + [path for path in ('/dev/dxg', '/dev/kfd')
                                                       if os.path.exists(path)]


def gpu_unavailable_for_sure():
    """True when TensorFlow cannot see a GPU: on Linux with no GPU driver, or every device hidden by
    CUDA_VISIBLE_DEVICES. Asking TensorFlow costs 3-5 s of loading it, before an option could be checked."""
    if os.environ.get('CUDA_VISIBLE_DEVICES', None) in ('', '-1'):
        return True
    return sys.platform.startswith('linux') and not gpu_device_paths()


def auto_scales(input_shapes, output_shape):
    """[..., 0.25, 0.5, 1]: halve while the output and every input keep COARSE_MIN_SIDE px."""
    smallest = min(min(shape) for shape in [*input_shapes, output_shape])
    scales = [1.0]
    while len(scales) < MAX_STAGES and smallest * scales[0] / 2 >= COARSE_MIN_SIDE:
        scales.insert(0, scales[0] / 2)
    return scales


def resolve_schedule(args, input_shapes, output_shape):
    """Fill in args.scales (if auto) and args.iterations (if not given) for these sizes."""
    if args.scales == 'auto':
        args.scales = auto_scales(input_shapes, output_shape)
    args.iterations = per_scale(args.iterations or default_iterations(args.optimizer, len(args.scales)),
                                args.scales)


def per_scale(iterations, scales, whose=''):
    """One step count per scale: a single count repeats; any other number of counts is an InputError."""
    if len(iterations) == 1:
        return iterations * len(scales)
    if len(iterations) != len(scales):
        raise InputError(f"--iterations gives {len(iterations)} counts for {whose}{len(scales)} "
                         f"scale{'s' if len(scales) > 1 else ''} "
                         f"({','.join(f'{scale:g}' for scale in scales)})")
    return iterations


def default_iterations(optimizer, stages):
    """ITERATIONS at one scale; coarse to fine, COARSE_ITERATIONS per coarse stage and FINE_ITERATIONS."""
    if stages == 1:
        return [ITERATIONS[optimizer]]
    return [COARSE_ITERATIONS[optimizer]] * (stages - 1) + [FINE_ITERATIONS[optimizer]]


def stage_shapes(output_shape, scales, step=1):
    """The output shape at each scale, each side rounded to a multiple of `step` (tileable)."""
    return [tuple(max(step, int(round(side * scale / step)) * step) for side in output_shape) for scale in scales]


def check_size(shape, layer_names, what):
    deepest = layers.deepest(layer_names)
    needed = layers.min_input_size(deepest)
    if min(shape) < needed:
        raise InputError(f"{what} is {shape[1]}x{shape[0]} px, too small for layer {deepest}: "
                         f"it needs at least {needed} px per side")


def check_scales(args, style_shapes, output_shape):
    """Every stage of --scales, and --tileable's sizes, must suit the deepest layer."""
    deepest = layers.deepest(list(args.layer_weights))
    if args.tileable:
        step = layers.tileable_size_step(deepest)
        if output_shape[0] % step or output_shape[1] % step:
            raise InputError(f"--tileable needs sides that are multiples of {step} (for layer {deepest}), "
                             f"not {output_shape[1]}x{output_shape[0]}: set --output-size")
    step = layers.tileable_size_step(deepest) if args.tileable else 1
    for scale, shape in zip(args.scales, stage_shapes(output_shape, args.scales, step)):
        check_size(shape, args.layer_weights, f'the output at --scales {scale:g}')
        for style_shape in style_shapes:
            check_size(tuple(round(side * scale) for side in style_shape), args.layer_weights,
                       f'the source at --scales {scale:g}')


def estimated_memory_gb(output_shape, loss, precision, layer_names, batch=1, feed_forward=False):
    """About how many GB a run with this full-size output and these VGG16 layers needs at its peak.
    feed_forward: a generator's training on `batch` samples of `output_shape`, which adds the
    generator's own activations to VGG16's."""
    kind = 'gram' if loss == 'gram' else 'swd'  # the SWD's sorts dominate gram+swd
    per_megapixel = MEMORY_PER_MEGAPIXEL_GB[kind, precision]
    if layers.LAYER_NAMES.index(layers.deepest(layer_names)) > layers.LAYER_NAMES.index(MEMORY_DEEP_AFTER):
        per_megapixel *= MEMORY_DEEP_FACTOR
    if feed_forward:
        per_megapixel += MEMORY_GENERATOR_PER_MEGAPIXEL_GB
    return MEMORY_FIXED_GB + per_megapixel * batch * output_shape[0] * output_shape[1] / 1e6


def available_memory_gb():
    """Memory the system can give a new process (available RAM plus free swap), or None if unknown.

    psutil reads it on Linux (MemAvailable), macOS and Windows alike, so the check that keeps
    the kernel's out-of-memory killer away works on the laptops students use.
    """
    try:
        import psutil
        return (psutil.virtual_memory().available + psutil.swap_memory().free) / 2**30
    except Exception:  # no psutil, or a platform it cannot read: the check is skipped
        return None


def check_memory(output_shape, loss, precision, layer_names, option, batch=1, feed_forward=False):
    """Refuse, before anything is built, an output too large for this machine's free memory:
    on a CPU the kernel's OOM killer would otherwise end the run without a word or a saved
    image. On a GPU, TensorFlow's own out-of-memory error is reported instead. `option` is
    the one that sets the size: '--output-size' or '--size' (the shorter side)."""
    available = available_memory_gb()
    needed = estimated_memory_gb(output_shape, loss, precision, layer_names, batch, feed_forward)
    if available is None or needed <= available:
        return
    if gpu_visible():
        return
    room = max(available - MEMORY_FIXED_GB, 0) / (needed - MEMORY_FIXED_GB)
    if batch > 1 and int(batch * room) >= 1:
        fits = f'--batch-size {int(batch * room)}'
    else:
        shrink = math.sqrt(room * batch) if batch > 1 else math.sqrt(room)
        height, width = (max(8, int(side * shrink) // 8 * 8) for side in output_shape)
        fits = {'--output-size': f'--output-size {width}x{height}',
                '--style-scale': 'a smaller --style-scale'}.get(option, f'--size {min(height, width)}')
    what = (f"training on {batch} samples of {output_shape[1]}x{output_shape[0]} px" if feed_forward
            else f"an image of {output_shape[1]}x{output_shape[0]} px")
    raise InputError(f"{what} needs about {needed:.1f} GB of memory "
                     f"and {available:.1f} GB is free: try {fits}{'' if option == '--style-scale' else ' or less'}")
