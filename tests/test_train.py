"""train.py end to end: outputs, reproducibility, Ctrl-C, every bad input; real weights when present."""
import csv
import glob
import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from PIL import Image

from options import SWD_WEIGHT
import train
from conftest import ROOT, real_weights_path
from utils import initial_image, load_image


@pytest.fixture
def small_texture(tmp_path):
    """A 48 px colour texture (the shipped one, shrunk) in a temporary folder."""
    path = str(tmp_path / 'small.png')
    Image.open(os.path.join(ROOT, 'images', 'texture1.jpg')).resize((48, 48)).save(path)
    return path


def run_cli(args, capsys):
    code = train.cli(args)
    return code, capsys.readouterr().err


def only_run_dir(out):
    runs = sorted(glob.glob(os.path.join(out, '*')))
    assert len(runs) == 1, runs
    return runs[0]


def test_end_to_end_writes_the_whole_run_folder(small_texture, tiny_weights_path, tmp_path, capsys):
    out = str(tmp_path / 'runs')
    code, err = run_cli(['--image', small_texture, '--size', '48', '--iterations', '6', '--save-every', '3',
                         '--weights', tiny_weights_path, '--out', out, '--layers', 'conv1_1,pool1,pool2'],
                        capsys)
    assert code == 0, err
    run = only_run_dir(out)
    assert sorted(os.listdir(run)) == ['comparison.png', 'config.json', 'history.csv', 'loss.png',
                                       'result.png', 'steps']
    assert sorted(os.listdir(os.path.join(run, 'steps'))) == ['step_00003.png', 'step_00006.png']
    assert Image.open(os.path.join(run, 'result.png')).size == (48, 48)
    with open(os.path.join(run, 'history.csv')) as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r['step']) for r in rows] == list(range(7))
    assert set(rows[0]) == {'step', 'seconds', 'total', 'conv1_1', 'pool1', 'pool2'}
    assert float(rows[-1]['total']) < float(rows[0]['total'])
    config = json.load(open(os.path.join(run, 'config.json')))
    assert config['status'] == 'finished'
    assert config['layer_weights'] == pytest.approx({'conv1_1': 1 / 3, 'pool1': 1 / 3, 'pool2': 1 / 3})
    assert config['weighting'] == 'mean' and config['optimizer'] == 'lbfgs' and config['seed'] == 0
    assert config['weights_sha256'] and config['output_shape'] == [48, 48]
    assert not glob.glob(os.path.join(run, '**', '*.tmp'), recursive=True)


def test_adam_with_explicit_weights_and_larger_canvas(small_texture, tiny_weights_path, tmp_path, capsys):
    out = str(tmp_path / 'runs')
    code, err = run_cli(['--image', small_texture, '--size', '32', '--output-size', '64x40',
                         '--optimizer', 'adam', '--iterations', '5', '--save-every', '0',
                         '--layers', 'conv1_1=1,pool2=0.5', '--weights', tiny_weights_path, '--out', out],
                        capsys)
    assert code == 0, err
    run = only_run_dir(out)
    assert Image.open(os.path.join(run, 'result.png')).size == (64, 40)
    assert os.listdir(os.path.join(run, 'steps')) == []
    config = json.load(open(os.path.join(run, 'config.json')))
    assert config['layer_weights'] == {'conv1_1': 1.0, 'pool2': 0.5} and config['weighting'] == 'explicit'
    result = np.asarray(Image.open(os.path.join(run, 'result.png')))
    assert result.min() >= 0 and result.max() <= 255


def test_same_seed_same_output_and_another_seed_differs(small_texture, tiny_weights_path, tmp_path, capsys):
    results = []
    for run, seed in enumerate(['1', '1', '2']):
        out = str(tmp_path / f'runs{run}')
        code, err = run_cli(['--image', small_texture, '--size', '32', '--iterations', '5', '--seed', seed,
                             '--weights', tiny_weights_path, '--out', out, '--layers', 'conv1_1,pool1'],
                            capsys)
        assert code == 0, err
        results.append(np.asarray(Image.open(os.path.join(only_run_dir(out), 'result.png'))))
    np.testing.assert_array_equal(results[0], results[1])
    assert np.abs(results[0].astype(int) - results[2]).mean() > 1


def test_bare_name_is_found_in_images(tiny_weights_path, tmp_path, capsys):
    out = str(tmp_path / 'runs')
    code, err = run_cli(['--image', 'texture1.jpg', '--size', '32', '--iterations', '1',
                         '--weights', tiny_weights_path, '--out', out, '--layers', 'conv1_1'], capsys)
    assert code == 0, err
    assert os.path.basename(only_run_dir(out)).startswith('texture1-')


# ---------------------------------------------------------------- bad input, as a user sees it

def run_script(args, timeout=120, script='train.py'):
    return subprocess.run([sys.executable, os.path.join(ROOT, script), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope='module')
def bad_inputs(tmp_path_factory, tiny_weights_path):
    folder = tmp_path_factory.mktemp('bad')
    (folder / 'notes.jpg').write_text('this is not an image')
    (folder / 'a_file').write_text('')
    (folder / 'garbage.npz').write_bytes(b'PK\x03\x04 broken')
    narrow = dict(np.load(tiny_weights_path))
    narrow['conv2_1/kernel'] = narrow['conv2_1/kernel'][:, :, :1]
    np.savez(folder / 'narrow.npz', **narrow)
    return folder


BAD_INPUTS = [
    (['--image', 'no_such_texture.jpg'], 'image not found'),
    (['--image', '{bad}/notes.jpg'], 'cannot read'),
    (['--image', 'texture1.jpg', '--layers', 'conv1_1,conv9_9'], "unknown layer 'conv9_9'"),
    (['--image', 'texture1.jpg', '--layers', 'conv1_1=1,pool1=-2'], 'must be a finite number >= 0'),
    (['--image', 'texture1.jpg', '--layers', 'conv1_1=nan'], 'must be a finite number >= 0'),
    (['--image', 'texture1.jpg', '--layers', 'conv1_1=1,pool1'], 'every layer or to none'),
    (['--image', 'texture1.jpg', '--layers', 'conv1_1=1', '--weighting', 'sum'], 'cannot be combined'),
    (['--image', 'texture1.jpg', '--size', '4'], 'too small for layer conv4_1: it needs at least 8 px'),
    (['--image', 'texture1.jpg', '--output-size', '6x64'], 'too small for layer conv4_1'),
    (['--image', 'texture1.jpg', '--size', '12', '--layers', 'pool4'], 'too small for layer pool4'),
    (['--image', 'texture1.jpg', '--output-size', 'big'], '--output-size must look like'),
    (['--image', 'texture1.jpg', '--output-size', '100000'], 'GB of memory'),
    (['--image', 'texture1.jpg', '--size', '100000'], 'try --size'),
    (['--image', 'texture1.jpg', '--iterations', '0'], '--iterations must be at least 1'),
    (['--image', 'texture1.jpg', '--out', '{bad}/a_file/runs'], 'cannot write to --out'),
    (['--image', 'texture1.jpg', '--weights', '{bad}/garbage.npz'], 'cannot read weights'),
    (['--image', 'texture1.jpg', '--weights', '{bad}/narrow.npz'], 'conv2_1 has kernel'),
    (['--image', 'texture1.jpg', '--weights', '{bad}/missing.h5'], '--weights'),
    (['--image', 'texture1.jpg', '--weights', '{bad}/vgg16.npy'], 'no such file'),
]


@pytest.mark.parametrize('args, message', BAD_INPUTS, ids=[m for _, m in BAD_INPUTS])
def test_bad_input_is_one_line_and_nonzero_exit(bad_inputs, tiny_weights_path, args, message):
    args = [a.replace('{bad}', str(bad_inputs)) for a in args]
    if '--weights' not in args:
        args += ['--weights', tiny_weights_path]
    if '--out' not in args:
        args += ['--out', str(bad_inputs / 'runs')]
    result = run_script(args + ['--iterations', '2'] if '--iterations' not in args else args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert 'Traceback' not in result.stderr
    assert not os.path.exists(bad_inputs / 'runs') or not os.listdir(bad_inputs / 'runs')


@pytest.mark.parametrize('stop', [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_keeps_the_image_and_history(stop, small_texture, tiny_weights_path, tmp_path):
    """Ctrl-C, or the SIGTERM a batch scheduler's time limit or `kill` sends: the run saves and says so."""
    out = str(tmp_path / 'runs')
    process = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, 'train.py'), '--image', small_texture, '--size', '32',
         '--optimizer', 'adam', '--iterations', '1000000', '--save-every', '0',
         '--weights', tiny_weights_path, '--out', out, '--layers', 'conv1_1,pool1'],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and not glob.glob(os.path.join(out, '*')):
        time.sleep(0.2)
    time.sleep(3)  # the folder exists before the first step: let it take some
    process.send_signal(stop)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert 'Traceback' not in err
    assert 'stopping after this step' in err
    run = only_run_dir(out)
    config = json.load(open(os.path.join(run, 'config.json')))
    assert config['status'] == 'interrupted' and config['iterations_done'] > 0
    assert os.path.isfile(os.path.join(run, 'result.png'))
    with open(os.path.join(run, 'history.csv')) as handle:
        assert len(list(csv.DictReader(handle))) == config['iterations_done'] + 1
    assert not glob.glob(os.path.join(run, '**', '*.tmp'), recursive=True)


def test_a_stop_request_during_start_up_leaves_no_run_folder(small_texture, tiny_weights_path, tmp_path):
    # What the signal handler of commandline.stop_requests sets, here before the run folder is made
    # (Ctrl-C while TensorFlow loads): nothing was done, so nothing is left behind.
    stop = threading.Event()
    stop.set()
    out = str(tmp_path / 'runs')
    with pytest.raises(KeyboardInterrupt):  # cli() turns it into 'interrupted' and exit 130
        train.main(['--image', small_texture, '--size', '32', '--iterations', '50', '--weights',
                    tiny_weights_path, '--out', out, '--layers', 'conv1_1,pool1'], stop)
    assert not os.path.exists(out) or not os.listdir(out)


def test_help_shows_defaults():
    result = run_script(['--help'])
    assert result.returncode == 0
    assert '(default: lbfgs)' in result.stdout and '(default: 256)' in result.stdout


# ---------------------------------------------------------------- with the real weights

def colour_distance(image, source):
    """Mean per-channel 1-D Wasserstein distance between pixel value distributions."""
    quantiles = np.linspace(0, 1, 101)
    return np.mean([np.abs(np.quantile(image[..., c], quantiles) - np.quantile(source[..., c], quantiles)).mean()
                    for c in range(3)])


def edge_energy(image):
    """Mean absolute difference between neighbouring pixels."""
    return np.abs(np.diff(image, axis=0)).mean() + np.abs(np.diff(image, axis=1)).mean()


@pytest.mark.skipif(real_weights_path() is None,
                    reason="real VGG16 weights absent: run 'python weights.py' to fetch them (CI does)")
def test_real_weights_make_a_texture(tmp_path, capsys):
    out = str(tmp_path / 'runs')
    code, err = run_cli(['--image', 'texture1.jpg', '--size', '64', '--iterations', '60',
                         '--weights', real_weights_path(), '--out', out], capsys)
    assert code == 0, err
    run = only_run_dir(out)
    with open(os.path.join(run, 'history.csv')) as handle:
        totals = [float(row['total']) for row in csv.DictReader(handle)]
    assert totals[-1] < totals[0] / 100, 'Gram loss should fall by orders of magnitude'
    source = load_image(os.path.join(ROOT, 'images', 'texture1.jpg'), 64)
    result = load_image(os.path.join(run, 'result.png'))
    start = initial_image(source, source.shape, seed=0, kind='mean-noise')  # what the run started from
    # Two statistics the loss does not optimise directly: colours, and edge strength.
    assert colour_distance(result, source) < colour_distance(start, source) / 3
    assert abs(edge_energy(result) - edge_energy(source)) < abs(edge_energy(start) - edge_energy(source)) / 1.5


@pytest.mark.skipif(real_weights_path() is None,
                    reason="real VGG16 weights absent: run 'python weights.py' to fetch them (CI does)")
def test_real_weights_same_seed_same_output(tmp_path, capsys):
    results = []
    for run in range(2):
        out = str(tmp_path / f'runs{run}')
        code, err = run_cli(['--image', 'texture2.jpg', '--size', '48', '--iterations', '8', '--save-every', '0',
                             '--weights', real_weights_path(), '--out', out], capsys)
        assert code == 0, err
        results.append(open(os.path.join(only_run_dir(out), 'result.png'), 'rb').read())
    assert results[0] == results[1]


@pytest.mark.parametrize('options, columns', [
    (['--loss', 'swd'], {'swd', 'swd_conv1_1', 'swd_pool1', 'swd_pool2'}),
    (['--loss', 'gram+swd', '--scales', '0.5,1', '--iterations', '3,2'],
     {'swd', 'swd_conv1_1', 'swd_pool1', 'swd_pool2', 'conv1_1', 'pool1', 'pool2', 'scale'}),
    (['--loss', 'gram+swd', '--swd-weight', '30'],
     {'swd', 'swd_conv1_1', 'swd_pool1', 'swd_pool2', 'conv1_1', 'pool1', 'pool2'}),
    (['--tileable', '--match-colors', '--precision', 'bfloat16'], {'conv1_1', 'pool1', 'pool2'}),
])
def test_loss_scales_and_tiles_end_to_end(small_texture, tiny_weights_path, tmp_path, capsys, options, columns):
    out = str(tmp_path / 'runs')
    code, err = run_cli(['--image', small_texture, '--size', '48', '--iterations', '4', '--save-every', '0',
                         '--layers', 'conv1_1,pool1,pool2', '--weights', tiny_weights_path, '--out', out,
                         *options], capsys)
    assert code == 0, err
    run = only_run_dir(out)
    assert sorted(os.listdir(run)) == ['comparison.png', 'config.json', 'history.csv', 'loss.png',
                                       'result.png', 'steps']
    with open(os.path.join(run, 'history.csv')) as handle:
        rows = list(csv.DictReader(handle))
    assert set(rows[0]) == {'step', 'seconds', 'total'} | columns
    config = json.load(open(os.path.join(run, 'config.json')))
    assert config['status'] == 'finished' and config['iterations_done'] == len(rows) - 1
    if options[:2] == ['--loss', 'gram+swd']:
        given = options[options.index('--swd-weight') + 1] if '--swd-weight' in options else None
        assert config['swd_weight'] == (float(given) if given else SWD_WEIGHT)
        last = rows[-1]  # the total is the Gram losses plus the SWD at its weight
        gram = sum(float(last[layer]) for layer in ('conv1_1', 'pool1', 'pool2')) / 3
        assert float(last['total']) == pytest.approx(gram + config['swd_weight'] * float(last['swd']), rel=1e-4)
    if '--match-colors' in options:
        result = np.asarray(Image.open(os.path.join(run, 'result.png')), np.float32) / 255
        source = load_image(small_texture, 48)
        for channel in range(3):  # the histogram is the source's, up to 8-bit rounding
            assert np.abs(np.sort(result[..., channel], axis=None)
                          - np.sort(source[..., channel], axis=None)).max() < 2 / 255


SCHEDULE_BAD_INPUTS = [
    (['--scales', '0.5'], '--scales must rise to 1'),
    (['--scales', '1,0.5'], '--scales must rise to 1'),
    (['--scales', 'half,1'], '--scales must be numbers'),
    (['--scales', '0.5,1', '--iterations', '1,2,3'], '--iterations gives 3 counts for 2 scales'),
    (['--scales', '0.02,1'], 'the output at --scales 0.02'),
    (['--tileable', '--output-size', '250'], '--tileable needs sides that are multiples of 8'),
    (['--precision', 'float8'], "invalid choice: 'float8'"),
    (['--loss', 'l1'], "invalid choice: 'l1'"),
    (['--swd-weight', '30'], '--swd-weight needs --loss gram+swd'),
    (['--loss', 'gram+swd', '--swd-weight', '-1'], '--swd-weight must be a finite number > 0'),
    (['--loss', 'gram+swd', '--swd-weight', 'inf'], '--swd-weight must be a finite number > 0'),
]


@pytest.mark.parametrize('args, message', SCHEDULE_BAD_INPUTS, ids=[m for _, m in SCHEDULE_BAD_INPUTS])
def test_schedule_bad_input_is_one_line(tiny_weights_path, tmp_path, args, message):
    result = run_script(['--image', 'texture1.jpg', '--weights', tiny_weights_path, '--out', str(tmp_path / 'r')]
                        + args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
