"""Bad input and faults, as a hostile user or a failing machine makes them: one line, a non-zero
exit, no traceback, nothing half written, nothing written outside --out, and a true status."""
import errno
import json
import os
import signal
import struct
import subprocess
import sys
import threading
import time
import zlib

import numpy as np
import pytest
from PIL import Image

import compare
import grading
import train
import utils
import weights as vgg_weights
from conftest import ROOT


def run(script, args, timeout=180, env=None):
    return subprocess.run([sys.executable, os.path.join(ROOT, script), *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


def one_line(result, code, words, alone=True):
    """Exit `code`, no traceback, the last line says `words`; with `alone` (a refusal before any
    work), that line is all there is."""
    assert result.returncode == code, (result.returncode, result.stderr[-2000:])
    assert 'Traceback' not in result.stderr, result.stderr[-2000:]
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert lines and words in lines[-1], result.stderr[-2000:]
    if code == 2 and alone:
        assert len(lines) == 1, result.stderr[-2000:]


def bomb_png(path, side=30000):
    """A PNG whose header says side x side pixels (what a decompression bomb claims), a few bytes long."""
    def chunk(kind, data):
        return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data) & 0xffffffff)
    header = struct.pack('>IIBBBBB', side, side, 8, 0, 0, 0, 0)
    data = zlib.compress(b'\0' * (side + 1) * 4)
    with open(path, 'wb') as handle:
        handle.write(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', header) + chunk(b'IDAT', data) + chunk(b'IEND', b''))
    return str(path)


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp('faults')
    small = folder / 'small.png'
    Image.open(os.path.join(ROOT, 'images', 'texture1.jpg')).resize((48, 48)).save(small)
    (folder / 'a_file').write_text('')
    return {'dir': folder, 'small': str(small), 'bomb': bomb_png(folder / 'bomb.png'), 'file': str(folder / 'a_file')}


def filled(args, files, tiny_weights_path, out):
    return [a.format(small=files['small'], bomb=files['bomb'], file=files['file'], out=out,
                     weights=tiny_weights_path, dir=files['dir']) for a in args]


# One case a line: the script, its arguments, the exit code, and words the one line must contain.
CASES = [
    # writes outside --out
    ('compare.py', ['--source', '{small}', '{small}', '--name', '../../x', '--out', '{out}'], 2, 'plain folder name'),
    ('compare.py', ['--source', '{small}', '{small}', '--name', '/tmp/abs-report', '--out', '{out}'], 2,
     'plain folder name'),
    ('compare.py', ['--image', '{small}', '--sweep', 'seed=0,1', '--name', '/tmp/abs-sweep', '--out', '{out}'], 2,
     'plain folder name'),
    ('benchmark.py', ['--variant', '/../../x=--seed 1', '--out', '{out}'], 2, 'plain folder name'),
    ('benchmark.py', ['--variant', 'baseline=--seed 1', '--out', '{out}'], 2, "differ from each other and from 'baseline'"),
    ('benchmark.py', ['--variant', 'bogus', '--out', '{out}'], 2, 'must look like NAME=OPTIONS'),
    ('benchmark.py', ['--variant', 'a=--layers conv9_9', '--out', '{out}'], 2, "--variant a: unknown layer"),
    ('benchmark.py', ['--out', '{file}/bench'], 2, 'cannot write to --out'),
    # option values that used to pass silently
    ('train.py', ['--image', '{small}', '--layers', 'conv1_1,conv1_1,conv2_1'], 2, 'conv1_1 is given twice'),
    ('train.py', ['--image', '{small}', '--layers', 'conv1_1=1,conv1_1=5'], 2, 'conv1_1 is given twice'),
    ('train.py', ['--image', '{small}', '--scales', '0.5,1,1'], 2, '--scales must rise to 1'),
    ('train.py', ['--image', '{small}', '--layers', 'conv1_1=1e-320'], 2, 'float32 makes it 0'),
    ('train.py', ['--content', '{small}', '--style', ','], 2, '--style names no image'),
    ('train.py', ['--image', '{small}', '--seed', '-1'], 2, '--seed must be 0 to 4294967295, not -1'),
    # an int64 overflow in the generator's noise (OverflowError traceback) before this check
    ('train.py', ['--image', '{small}', '--feed-forward', '--seed', str(2 ** 70)], 2, '--seed must be 0 to'),
    ('train.py', ['--image', '{small}', '--init', 'mean-noize'], 2, '--init must be'),
    ('compare.py', ['--image', '{small}', '--sweep', 'seed=,', '--out', '{out}'], 2, 'no values'),
    ('compare.py', ['--image', '{small}', '--sweep', 'seed=0,1', '--reference', '--out', '{out}'], 2,
     '--reference goes with --source'),
    ('compare.py', ['--image', '{small}', '--sweep', 'seed=|', '--out', '{out}'], 2, 'no values'),
    ('compare.py', ['--image', '{small}', '--sweep', 'seed=-1,0', '--out', '{out}'], 2, '--seed must be 0 to'),
    ('compare.py', ['--image', '{small}', '--sweep', f'seed=0,{2 ** 70}', '--out', '{out}'], 2, '--seed must be 0 to'),
    ('compare.py', ['--image', '{small}', '--sweep', 'init=uniform,mean-noize', '--out', '{out}'], 2,
     '--init must be'),
    ('compare.py', ['--image', '{small}', '--sweep', 'weights={weights}|/nonexistent.npz', '--out', '{out}'], 2,
     'no such file'),
    # decompression bombs, wherever an image is read
    ('train.py', ['--image', '{bomb}'], 2, 'decompression bomb'),
    ('train.py', ['--content', '{bomb}', '--style', '{small}'], 2, 'decompression bomb'),
    ('train.py', ['--content', '{small}', '--style', '{bomb}'], 2, 'decompression bomb'),
    ('train.py', ['--image', '{small}', '--init', '{bomb}'], 2, 'decompression bomb'),
    ('compare.py', ['--source', '{bomb}', '{small}', '--out', '{out}'], 2, 'decompression bomb'),
    ('compare.py', ['--source', '{small}', '{bomb}', '--out', '{out}'], 2, 'decompression bomb'),
    # sizes
    ('compare.py', ['--source', '{small}', '{small}', '--size', '4', '--out', '{out}'], 2, 'at least 16 px'),
    ('compare.py', ['--source', '{small}', '{small}', '--size', '100000', '--out', '{out}'], 2, 'GB of memory'),
    ('train.py', ['--content', 'chelsea.jpg', '--style', '{small}', '--size', '64', '--style-scale', '1000'], 2,
     'GB of memory'),
    ('compare.py', ['--source', '{small}', '{small}', '--size', '48', '--out', '{file}/reports'], 2, 'cannot write'),
]


@pytest.mark.parametrize('script, args, code, words', CASES, ids=[f'{s} {w}' for s, _, _, w in CASES])
def test_bad_input_is_one_line(files, tiny_weights_path, tmp_path, script, args, code, words):
    out = str(tmp_path / 'out')
    argv = filled(args, files, tiny_weights_path, out)
    if script == 'train.py':
        argv += ['--out', out]
    if script in ('train.py', 'compare.py') and '--weights' not in ' '.join(argv) and 'weights=' not in ' '.join(argv):
        argv += ['--weights', tiny_weights_path]
    result = run(script, argv)
    one_line(result, code, words)
    assert not os.path.exists(out) or not os.listdir(out)  # nothing made
    assert not os.path.exists('/tmp/abs-report') and not os.path.exists('/tmp/abs-sweep')
    assert not os.path.exists(os.path.join(os.path.dirname(os.path.dirname(out)), 'x'))


# ---------------------------------------------------------------- overwrites and links

def test_an_existing_run_folder_is_never_written_into(files, tiny_weights_path, tmp_path):
    out = tmp_path / 'runs'
    (out / 'mine').mkdir(parents=True)
    (out / 'mine' / 'result.png').write_bytes(b'an earlier result')
    elsewhere = tmp_path / 'elsewhere'
    elsewhere.mkdir()
    os.symlink(elsewhere, out / 'link')
    for name in ('mine', 'link'):
        result = run('train.py', ['--image', files['small'], '--iterations', '1', '--weights', tiny_weights_path,
                                  '--out', str(out), '--name', name])
        one_line(result, 2, 'exists already')
    assert (out / 'mine' / 'result.png').read_bytes() == b'an earlier result'
    assert os.listdir(out / 'mine') == ['result.png'] and os.listdir(elsewhere) == []


def test_a_second_identical_sweep_waits_its_turn(files, tiny_weights_path, tmp_path):
    out = tmp_path / 'reports'
    folder = out / 'sweep'
    folder.mkdir(parents=True)
    with compare.sweep_lock(str(folder)):  # the first sweep, running
        result = run('compare.py', ['--image', files['small'], '--sweep', 'seed=0,1', '--size', '32', '--iterations',
                                    '1', '--weights', tiny_weights_path, '--out', str(out), '--name', 'sweep'])
    one_line(result, 2, 'another compare.py is running this sweep')
    assert os.listdir(folder) == ['.lock']


# ---------------------------------------------------------------- images read at their real range

def test_every_image_mode_is_read_at_its_real_range(tmp_path):
    grey = np.random.default_rng(0).uniform(0, 1, (20, 30))
    Image.fromarray((grey * 65535).astype(np.uint16)).save(tmp_path / 'grey16.png')
    Image.fromarray(grey.astype(np.float32), 'F').save(tmp_path / 'float.tif')
    Image.fromarray((grey * 65535).astype(np.int32), 'I').save(tmp_path / 'int32.tif')
    Image.fromarray((grey * 255).astype(np.uint8), 'L').save(tmp_path / 'grey8.png')
    for name in ('grey16.png', 'float.tif', 'int32.tif', 'grey8.png'):
        image = utils.load_image(str(tmp_path / name))
        assert image.shape == (20, 30, 3)
        np.testing.assert_allclose(image[..., 0], grey, atol=1 / 255 if name == 'grey8.png' else 1e-4), name
        assert utils.load_image(str(tmp_path / name), 10).shape == (10, 15, 3)


def test_transparency_is_composited_on_white(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 255, 0
    rgba[0, 0, 3] = 255
    Image.fromarray(rgba, 'RGBA').save(tmp_path / 'rgba.png')
    image = utils.load_image(str(tmp_path / 'rgba.png'))
    np.testing.assert_allclose(image[0, 0], [1, 0, 0])
    np.testing.assert_allclose(image[1, 1], utils.TRANSPARENT_BACKGROUND)


def test_exif_orientation_turns_the_photo_upright(tmp_path):
    pixels = np.zeros((10, 30, 3), np.uint8)
    pixels[:, :5] = 255  # a white stripe on the left of the stored pixels
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[utils.EXIF_ORIENTATION] = 6  # "turn 90 degrees clockwise to view"
    image.save(tmp_path / 'phone.jpg', exif=exif, quality=100)
    loaded = utils.load_image(str(tmp_path / 'phone.jpg'))
    assert loaded.shape == (30, 10, 3) and utils.image_shape(str(tmp_path / 'phone.jpg')) == (30, 10)
    assert loaded[:5].mean() > 0.9 and loaded[10:].mean() < 0.1  # the stripe is now on top


# ---------------------------------------------------------------- non-finite losses

def strict_json(path):
    def refuse(constant):
        raise ValueError(f'not strict JSON: {constant}')
    with open(path) as handle:
        return json.loads(handle.read(), parse_constant=refuse)


def test_a_loss_that_becomes_infinite_stops_with_one_line_and_valid_json(files, tiny_weights_path, tmp_path):
    out = tmp_path / 'runs'
    result = run('train.py', ['--content', files['small'], '--style', files['small'], '--size', '32', '--iterations',
                              '3', '--style-weight', '1e308', '--init', 'uniform', '--weights', tiny_weights_path,
                              '--out', str(out), '--name', 'inf'])
    one_line(result, 2, 'the loss became', alone=False)  # after 'writing to' and the progress bar
    config = strict_json(out / 'inf' / 'config.json')
    assert config['status'] == 'failed: the loss became NaN or infinite'
    assert utils.save_json({'loss': float('nan'), 'more': [float('inf'), 1.0]}, str(tmp_path / 'n.json'))
    assert strict_json(tmp_path / 'n.json') == {'loss': None, 'more': [None, 1.0]}


def test_a_nan_in_the_middle_keeps_the_last_finite_image(tiny_weights_path, tmp_path, monkeypatch, capsys):
    """Step 3's loss is NaN: the run stops there and keeps step 2's image and history."""
    import synthesize
    original = synthesize.synthesize

    def going_nan(*args, **kwargs):
        for step, image, losses in original(*args, **kwargs):
            yield step, image, ({**losses, 'total': float('nan')} if step == 3 else losses)
    monkeypatch.setattr(synthesize, 'synthesize', going_nan)
    out = tmp_path / 'runs'
    code = train.cli(['--image', 'texture1.jpg', '--size', '32', '--iterations', '6', '--layers', 'conv1_1',
                      '--weights', tiny_weights_path, '--out', str(out), '--name', 'nan'])
    assert code == 2 and 'the loss became nan at step 3' in capsys.readouterr().err
    config = strict_json(out / 'nan' / 'config.json')
    assert config['status'].startswith('failed: the loss') and config['iterations_done'] == 2
    assert os.path.isfile(out / 'nan' / 'result.png')


# ---------------------------------------------------------------- full and read-only disks

def disk_full_for(monkeypatch, name):
    """Every atomic write (a temporary file, then os.replace) of a file called `name` fails as on a
    full disk; the others go through."""
    replace = os.replace

    def full(source, destination):
        if str(destination).endswith(name):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return replace(source, destination)
    monkeypatch.setattr(os, 'replace', full)


def test_a_full_disk_while_writing_the_result_is_one_line_and_a_true_status(tiny_weights_path, tmp_path,
                                                                            monkeypatch, capsys):
    disk_full_for(monkeypatch, 'result.png')
    out = tmp_path / 'runs'
    code = train.cli(['--image', 'texture1.jpg', '--size', '32', '--iterations', '2', '--layers', 'conv1_1',
                      '--weights', tiny_weights_path, '--out', str(out), '--name', 'full'])
    err = capsys.readouterr().err
    assert code == 2 and 'cannot write' in err and 'result.png: No space left on device' in err
    config = strict_json(out / 'full' / 'config.json')
    assert config['status'].startswith('failed: cannot write') and 'result.png' in config['status']
    assert not [f for f in os.listdir(out / 'full') if f.endswith('.tmp')]


def test_a_full_disk_at_the_start_is_one_line(tiny_weights_path, tmp_path, monkeypatch, capsys):
    disk_full_for(monkeypatch, 'config.json')
    code = train.cli(['--image', 'texture1.jpg', '--size', '32', '--iterations', '2', '--layers', 'conv1_1',
                      '--weights', tiny_weights_path, '--out', str(tmp_path / 'runs')])
    assert code == 2 and 'config.json: No space left on device' in capsys.readouterr().err


def test_fetched_weights_are_kept_where_the_cache_cannot_be_written(tiny_weights, tmp_path, monkeypatch):
    monkeypatch.setattr(vgg_weights.tempfile, 'gettempdir', lambda: str(tmp_path))
    blocked = tmp_path / 'a_file'
    blocked.write_text('')
    messages = []
    path = vgg_weights.keep(tiny_weights, str(blocked / 'cache' / 'weights.npz'), messages.append)
    assert path == str(tmp_path / vgg_weights.CACHE_NAME) and os.path.isfile(path)
    assert 'the weights are in' in messages[0] and '--weights' in messages[0]
    assert not [f for f in os.listdir(tmp_path) if f.endswith('.tmp')]


def test_a_damaged_weights_cache_says_what_to_do(tmp_path, tiny_weights_path):
    cache = tmp_path / 'texture-synthesis'
    cache.mkdir()
    data = open(tiny_weights_path, 'rb').read()
    (cache / vgg_weights.CACHE_NAME).write_bytes(data[:len(data) // 2])
    env = {'XDG_CACHE_HOME': str(tmp_path), vgg_weights.ENV_VAR: ''}
    for script, args in (('weights.py', []), ('train.py', ['--image', 'texture1.jpg', '--size', '32',
                                                           '--out', str(tmp_path / 'r')]),
                         ('compare.py', ['--source', 'texture1.jpg', 'texture2.jpg', '--out', str(tmp_path / 'c')])):
        result = run(script, args, env=env)
        assert result.returncode != 0 and 'Traceback' not in result.stderr, result.stderr
        assert 'damaged' in result.stderr and 'python weights.py --force' in result.stderr, result.stderr


# ---------------------------------------------------------------- Ctrl-C, and damaged state

def test_ctrl_c_during_start_up_is_quiet(tiny_weights_path, tmp_path):
    for delay in (0.3, 2.0):
        process = subprocess.Popen([sys.executable, os.path.join(ROOT, 'train.py'), '--image', 'texture1.jpg',
                                    '--weights', tiny_weights_path, '--out', str(tmp_path / 'runs')],
                                   cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(delay)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=120)
        assert process.returncode == 130, err
        assert 'Traceback' not in err and 'KeyboardInterrupt' not in err


def test_a_stop_request_ends_scoring(tiny_weights):
    stop = threading.Event()
    stop.set()
    image = utils.load_image(os.path.join(ROOT, 'images', 'texture1.jpg'), 32)
    with pytest.raises(KeyboardInterrupt):
        grading.score_all(tiny_weights, [(image, image)], stop)


def test_a_sweep_with_damaged_state_files_redoes_that_work(tiny_weights_path, tmp_path, capsys):
    out = str(tmp_path / 'reports')
    args = ['--image', 'texture1.jpg', '--sweep', 'seed=0,1', '--size', '32', '--iterations', '2', '--layers',
            'conv1_1', '--save-every', '0', '--weights', tiny_weights_path, '--out', out, '--name', 'sweep']
    assert compare.cli(args) == 0
    runs = os.path.join(out, 'sweep', 'runs')
    with open(os.path.join(runs, 'seed=0', 'history.csv'), 'w') as handle:
        handle.write('step,seconds,total\n1,2,not a number\n')
    with open(os.path.join(runs, 'seed=1', 'scores.json'), 'w') as handle:
        handle.write('{"swd": 1.0,')
    capsys.readouterr()
    assert compare.cli(args) == 0
    err = capsys.readouterr().err
    assert 'seed=0: running' in err and 'seed=1: finished earlier, kept' in err and 'Traceback' not in err
    assert json.load(open(os.path.join(runs, 'seed=1', 'scores.json')))['swd'] != 1.0
