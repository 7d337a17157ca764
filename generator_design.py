"""The generator's design as numbers, and what follows from it without TensorFlow.

    canvas_shape(300, 200)                      # (320, 224): sides rounded up to COARSEST
    check_sample_size((16, 64), tileable=False) # InputError: too small for the coarsest noise
    state, settings = load_checkpoint('runs/x/generator.npz')

generator.py builds the network from these numbers; a checkpoint records them
and is refused when they differ. Numpy only, so sample.py and train.py --resume
check a size, a memory budget or a damaged checkpoint in a fraction of a second,
before TensorFlow (3-5 s) loads.
"""
import json
import math
import os

import numpy as np

from utils import InputError, atomic_write

SCALES = 6                      # noise at 1/1 ... 1/32 of the output size (Ulyanov et al. 2016)
COARSEST = 2 ** (SCALES - 1)    # sides of the network's canvas are multiples of this
CHANNELS = 8                    # per scale; the join at scale k has 8 * (k + 1)

CHECKPOINT_FORMAT = 'texture-generator-1'
CHECKPOINT_NAME = 'generator.npz'
SAVEDMODEL_NAME = 'savedmodel'

# Peak memory of sampling: 1.3, 3.4 and 11.2 GB for 1024, 2048 and 4096 px (0.62-0.67 GB per
# megapixel after a fixed part), rounded up.
SAMPLE_MEMORY_FIXED_GB = 1.0
SAMPLE_MEMORY_PER_MEGAPIXEL_GB = 0.75


def canvas_shape(height, width):
    """The network's canvas for an output of height x width: each side rounded up to COARSEST.
    An output of another size is the canvas' top-left corner."""
    return tuple(COARSEST * math.ceil(side / COARSEST) for side in (height, width))


def check_sample_size(shape, tileable):
    """InputError for a sample too small for the coarsest noise, or not tileable when it must be."""
    height, width = shape
    if min(shape) < COARSEST:
        raise InputError(f"a sample of {width}x{height} px is too small for the generator: its coarsest noise "
                         f"is 1/{COARSEST} of the size, so each side needs at least {COARSEST} px")
    if tileable and (height % COARSEST or width % COARSEST):
        near = lambda side: max(COARSEST, round(side / COARSEST) * COARSEST)  # noqa: E731
        raise InputError(f"this generator was trained --tileable: samples tile when their sides are multiples "
                         f"of {COARSEST}, and {width}x{height} is not (try {near(width)}x{near(height)})")


def sample_memory_gb(shape):
    """About how many GB one sample of `shape` needs at its peak (measured: docs/feedforward.md)."""
    canvas = canvas_shape(*shape)
    return SAMPLE_MEMORY_FIXED_GB + SAMPLE_MEMORY_PER_MEGAPIXEL_GB * canvas[0] * canvas[1] / 1e6


def save_checkpoint(state, path, settings):
    """Every variable of `state`, and the settings that built it, to one .npz, written atomically."""
    meta = {'format': CHECKPOINT_FORMAT, 'scales': SCALES, 'channels': CHANNELS, **settings}

    def write(temporary):
        with open(temporary, 'wb') as handle:
            np.savez(handle, __meta__=np.array(json.dumps(meta)), **state)
    return atomic_write(path, write)


def load_checkpoint(path):
    """(state, settings) from save_checkpoint's file; InputError, saying what is wrong, for a file
    that is missing, truncated, not a checkpoint, or from another generator design."""
    if not os.path.isfile(path):
        raise InputError(f"no generator in {os.path.dirname(path) or '.'}: {os.path.basename(path)} not found "
                         "(a run folder made by train.py --feed-forward has one)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            meta = json.loads(str(archive['__meta__']))
            state = {name: archive[name] for name in archive.files if name != '__meta__'}
    except Exception as error:  # a truncated zip, a foreign file: nothing in it can be trusted
        raise InputError(f"cannot read the generator checkpoint {path}: it is damaged or not a checkpoint "
                         f"({type(error).__name__}); rerun train.py --feed-forward") from None
    if not isinstance(meta, dict) or meta.get('format') != CHECKPOINT_FORMAT:
        raise InputError(f"{path} is not a {CHECKPOINT_FORMAT} checkpoint")
    if (meta.get('scales'), meta.get('channels')) != (SCALES, CHANNELS):
        raise InputError(f"{path} holds a generator of {meta.get('scales')} scales and {meta.get('channels')} "
                         f"channels; this version builds {SCALES} and {CHANNELS}")
    if not all(np.all(np.isfinite(value)) for value in state.values() if np.issubdtype(value.dtype, np.floating)):
        raise InputError(f"{path} holds NaN or infinite weights: the training diverged")
    return state, meta
