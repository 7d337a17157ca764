"""What a user sees, with the real weights: new textures (not copies), and seamless tiles."""
import csv
import os

import numpy as np
import pytest

import scores
import train
from conftest import ROOT, real_weights_path
from test_train import only_run_dir
from utils import load_image

pytestmark = pytest.mark.skipif(
    real_weights_path() is None,
    reason="real VGG16 weights absent: run 'python weights.py' to fetch them (CI does)")


def make(tmp_path, capsys, name, *options):
    out = str(tmp_path / name)
    code = train.cli(['--weights', real_weights_path(), '--out', out, '--save-every', '0', *options])
    assert code == 0, capsys.readouterr().err
    return load_image(os.path.join(only_run_dir(out), 'result.png'))


def seam_ratio(image):
    """Mean jump across the wrapped edges over the mean jump between neighbouring pixels inside.

    About 1 for a seamless tile; for an untiled texture the edges are unrelated rows: well above 1.
    """
    wrapped = (np.abs(image[0] - image[-1]).mean() + np.abs(image[:, 0] - image[:, -1]).mean()) / 2
    inside = (np.abs(np.diff(image, axis=0)).mean() + np.abs(np.diff(image, axis=1)).mean()) / 2
    return wrapped / inside


def test_tileable_results_wrap_as_smoothly_as_their_interior(tmp_path, capsys):
    options = ['--image', 'texture1.jpg', '--size', '96', '--iterations', '40']  # smooth cells: seams show
    tiled = make(tmp_path, capsys, 'tiled', *options, '--tileable')
    plain = make(tmp_path, capsys, 'plain', *options)
    assert seam_ratio(tiled) < 1.3
    assert seam_ratio(plain) > 1.3 * seam_ratio(tiled)


def test_default_settings_make_a_new_texture_not_the_source_again(tmp_path, capsys):
    """The coarse-to-fine trap: a coarse stage that redraws the source's layout scores high here.

    At 256 px the defaults run coarse to fine (128 px, then 256 px; history.csv says so).
    Plain synthesis and noise score about 0.1-0.3, two results from different seeds about
    the same against each other (texture2: 0.14), the source itself 1.0.
    """
    source = load_image(os.path.join(ROOT, 'images', 'texture2.jpg'), 256)
    out = str(tmp_path / 'default')
    result = make(tmp_path, capsys, 'default', '--image', 'texture2.jpg', '--size', '256')
    with open(os.path.join(only_run_dir(out), 'history.csv')) as handle:
        scales = {row['scale'] for row in csv.DictReader(handle)}
    assert scales == {'0.5', '1.0'}
    assert scores.layout_score(result, source) <= 0.25
    assert scores.nearest_patch_distance(result, source) > 0.05  # not stitched from source pixels
