"""compare.py --reference: where each result sits between uniform noise (0) and the tool's own
texture of the same source (1), so a grader can read "about as good as train.py's defaults"
without knowing what an SWD of 28 means.

The reference is train.py's defaults on the source at the scale the results are scored at,
made once and cached by the source file's hash and that scale:

    ~/.cache/texture-synthesis/references/<sha256 of the source, 16 hex>-<scale>px.png

The position is taken on a log scale, because the distances span orders of magnitude
(texture1's SWD: noise 1.1e4, a good texture 28): log(noise / value) / log(noise / reference).
1.0 is the reference's own score, above 1 better than it, 0 no better than noise.
"""
import contextlib
import hashlib
import io
import math
import os
import sys
import tempfile

import numpy as np

import utils
import weights as vgg_weights
from utils import InputError

SCORES = ('swd', 'gram', 'colour', 'spectral')   # the quality scores (patch and layout are not)
NOISE_SEED = 0                                   # the same noise every time: positions repeat


def cache_path(source_path, scale):
    with open(source_path, 'rb') as handle:
        digest = hashlib.sha256(handle.read()).hexdigest()[:16]
    folder = os.path.join(os.path.dirname(vgg_weights.cache_path()), 'references')
    return os.path.join(folder, f'{digest}-{scale}px.png')


def reference_image(source_path, scale, weights_path=None, make=None):
    """train.py's defaults on the source at `scale` (its shorter side in px): from the cache, or
    made now and cached. `make(argv)` runs train.py (train.run; a test passes a cheaper one)."""
    path = cache_path(source_path, scale)
    if os.path.isfile(path):
        try:
            return utils.load_image(path)
        except InputError:
            pass  # a damaged cache file: make it again
    if make is None:
        import train
        make = train.run
    print(f"reference: train.py's defaults on {os.path.basename(source_path)} at {scale} px "
          f"(made once, then kept in {os.path.dirname(path)}; about 20 s at 256 px on a CPU)", file=sys.stderr)
    with tempfile.TemporaryDirectory() as folder:
        argv = ['--image', source_path, '--size', str(scale), '--out', folder, '--name', 'reference',
                '--save-every', '0'] + (['--weights', weights_path] if weights_path else [])
        with contextlib.redirect_stderr(io.StringIO()):  # its lines name a folder about to go
            made = make(argv)
        if made.image is None or made.status not in ('finished', 'converged'):
            raise InputError(f"the reference run did not finish ({made.status})")
        # As the cache will give it back: 8 bits a channel, so the first grading and the next agree.
        image = utils.to_uint8(made.image).astype(np.float32) / 255
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        utils.save_image(image, path)
    except (OSError, InputError) as error:
        print(f"reference not cached ({error}): it will be made again next time", file=sys.stderr)
    return image


def noise_image(shape):
    """Uniform noise of `shape` [H, W] as an RGB image: the 0 of every position."""
    return np.random.default_rng(NOISE_SEED).uniform(0, 1, (*shape, 3)).astype(np.float32)


def position(value, noise, reference):
    """Where `value` sits between `noise` (0) and `reference` (1), on a log scale; None when the
    reference is no better than noise for this score, so the scale means nothing."""
    tiny = 1e-12
    value, noise, reference = (max(float(v), tiny) for v in (value, noise, reference))
    if not noise > reference:
        return None
    return math.log(noise / value) / math.log(noise / reference)


def add_positions(rows, anchors):
    """Each row gets '<score>_vs_reference' for SCORES; anchors: {scale: (noise row, reference row)}."""
    for row in rows:
        noise, made = anchors[row['scale']]
        for key in SCORES:
            row[f'{key}_vs_reference'] = position(row[key], noise[key], made[key])
    return rows
