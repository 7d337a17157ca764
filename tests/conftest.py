"""Shared fixtures: a tiny VGG16 stand-in, real weights when present, TF graph mode."""
import importlib
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

importlib.import_module('utils')  # first: it turns oneDNN on before TensorFlow loads, as for users
import weights as vgg_weights  # noqa: E402
from vgg16 import CONV_LAYERS  # noqa: E402

# Narrow widths with VGG16's layout: the whole network runs in milliseconds.
TINY_WIDTHS = {'1': 4, '2': 6, '3': 8, '4': 8, '5': 8}


def run_without_tensorflow(tmp_path, args, timeout=120):
    """(result, whether TensorFlow was imported) of `python *args` in the project: a stand-in
    tensorflow package, first on the path, notes its import in a file and fails. For the paths that
    must answer before TensorFlow loads (3-5 s); -X importtime cannot tell, as TensorFlow is
    imported under quiet_stderr, which hides its lines too."""
    package, marker = tmp_path / 'stand-in' / 'tensorflow', tmp_path / 'tensorflow-imported'
    package.mkdir(parents=True, exist_ok=True)
    (package / '__init__.py').write_text(f"open({str(marker)!r}, 'w').close()\n"
                                         "raise ImportError('the stand-in tensorflow')\n")
    result = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                            env={**os.environ, 'PYTHONPATH': str(package.parent)})
    return result, marker.exists()


def make_tiny_weights(seed=0):
    """He-initialised random weights of VGG16's shape, narrowed: for tests only."""
    rng = np.random.default_rng(seed)
    weights, in_channels = {}, 3
    for name in CONV_LAYERS:
        out_channels = TINY_WIDTHS[name[4]]
        std = np.sqrt(2.0 / (9 * in_channels))
        kernel = rng.normal(0.0, std, (3, 3, in_channels, out_channels)).astype(np.float32)
        # Scaled for inputs in [-124, 152] (mean-subtracted [0, 255]).
        weights[name] = (kernel / 64.0 if name == 'conv1_1' else kernel,
                         rng.normal(0.0, 0.1, out_channels).astype(np.float32))
        in_channels = out_channels
    return weights


@pytest.fixture(scope='session')
def tiny_weights():
    return make_tiny_weights()


@pytest.fixture(scope='session')
def tiny_weights_path(tmp_path_factory, tiny_weights):
    path = str(tmp_path_factory.mktemp('weights') / 'tiny.npz')
    vgg_weights.write_npz(tiny_weights, path)
    return path


def real_weights_path():
    """The real weights if this machine has them (no fetch), else None."""
    for candidate in (os.environ.get(vgg_weights.ENV_VAR), vgg_weights.cache_path()):
        if candidate and os.path.isfile(candidate):
            return candidate
    return None


@pytest.fixture(scope='session')
def real_weights():
    path = real_weights_path()
    if path is None:
        pytest.skip(f"real VGG16 weights absent: run 'python weights.py' to fetch them "
                    f"into {vgg_weights.cache_path()} (CI does)")
    return vgg_weights.load_weights(path)
