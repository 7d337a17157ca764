"""Images, starting points and safe writes."""
import os
import signal
import subprocess
import sys
import threading

import numpy as np
import pytest

import commandline
import utils
import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_initial_images_are_reproducible_and_valid():
    source = np.random.default_rng(0).uniform(0.2, 0.6, (20, 30, 3)).astype(np.float32)
    for kind in utils.INITS:
        first = utils.initial_image(source, (16, 24, 3), seed=5, kind=kind)
        np.testing.assert_array_equal(first, utils.initial_image(source, (16, 24, 3), seed=5, kind=kind))
        assert not np.array_equal(first, utils.initial_image(source, (16, 24, 3), seed=6, kind=kind))
        assert first.shape == (16, 24, 3) and first.dtype == np.float32
        assert first.min() >= 0 and first.max() <= 1
    mean_noise = utils.initial_image(source, (64, 64, 3), seed=1, kind='mean-noise')
    np.testing.assert_allclose(mean_noise.reshape(-1, 3).mean(0), source.reshape(-1, 3).mean(0), atol=0.005)
    assert mean_noise.std(axis=(0, 1)) == pytest.approx([utils.MEAN_NOISE_STD] * 3, rel=0.1)
    with pytest.raises(ValueError):
        utils.initial_image(source, (4, 4, 3), 0, 'zeros')


def test_find_image_looks_in_images_for_bare_names(tmp_path):
    assert utils.find_image('texture1.jpg').endswith(os.path.join('images', 'texture1.jpg'))
    with pytest.raises(utils.InputError, match='texture1.jpg'):  # the message lists what is shipped
        utils.find_image('nothing.jpg')
    with pytest.raises(utils.InputError, match='not found'):
        utils.find_image(str(tmp_path / 'texture1.jpg'))  # a path is taken as a path


def test_load_image_scales_the_shorter_side(tmp_path):
    from PIL import Image
    Image.new('L', (90, 60), 128).save(tmp_path / 'grey.png')
    image = utils.load_image(str(tmp_path / 'grey.png'), 30)
    assert image.shape == (30, 45, 3) and image.dtype == np.float32
    np.testing.assert_allclose(image, 128 / 255, atol=1e-6)


@pytest.mark.parametrize('read', [utils.load_image, utils.image_shape], ids=['load_image', 'image_shape'])
def test_unreadable_images_are_one_input_error(tmp_path, read):
    (tmp_path / 'notes.jpg').write_text('not an image')
    with pytest.raises(utils.InputError, match='cannot read .*notes.jpg as an image'):
        read(str(tmp_path / 'notes.jpg'))
    with pytest.raises(utils.InputError, match='cannot read'):
        read(str(tmp_path / 'missing.jpg'))


def test_writes_are_atomic(tmp_path, monkeypatch):
    path = str(tmp_path / 'out.png')
    utils.save_image(np.zeros((4, 4, 3)), path)
    before = open(path, 'rb').read()

    def crash(*args, **kwargs):
        raise OSError('disk full')

    monkeypatch.setattr(utils.Image.Image, 'save', crash)
    with pytest.raises(utils.InputError, match='cannot write .*out.png: disk full'):
        utils.save_image(np.ones((4, 4, 3)), path)
    assert open(path, 'rb').read() == before  # the old file is intact
    assert os.listdir(tmp_path) == ['out.png']  # and no temporary is left


@pytest.mark.parametrize('text, shape', [('512', (512, 512)), ('512x384', (384, 512)), ('64X32', (32, 64))])
def test_parse_size(text, shape):
    assert train.parse_size(text) == shape


def test_side_by_side_keeps_one_scale(tmp_path):
    from PIL import Image
    path = str(tmp_path / 'strip.png')
    utils.save_side_by_side([np.zeros((32, 32, 3)), np.ones((64, 96, 3))], ['source', 'result'], path, height=128)
    strip = Image.open(path)
    assert strip.size == (64 + 8 + 192, 128 + 16)  # the 32 px source at the same 2x scale as the result


def test_save_csv_takes_every_key_and_leaves_missing_values_empty(tmp_path):
    """A coarse stage reports no loss for the layers it leaves out; the full-size rows do."""
    path = utils.save_csv([{'step': 0, 'total': 2.0}, {'step': 1, 'total': 1.0, 'conv4_1': 0.5}],
                          str(tmp_path / 'history.csv'))
    with open(path) as handle:
        assert handle.read().splitlines() == ['step,total,conv4_1', '0,2.0,', '1,1.0,0.5']


def test_wrapped_resize_keeps_a_tile_seamless():
    """Upsampling a tileable image between stages must not put a seam at its wrapped edge."""
    rows, cols = np.meshgrid(np.arange(32), np.arange(40), indexing='ij')
    tile = 0.5 + 0.4 * np.sin(2 * np.pi * (3 * rows / 32 + 2 * cols / 40))  # whole periods both ways
    tile = np.repeat(tile[..., None], 3, axis=2).astype(np.float32)

    def wrap_jump_over_inside_jump(image):
        wrapped = np.abs(image[0] - image[-1]).mean() + np.abs(image[:, 0] - image[:, -1]).mean()
        inside = np.abs(np.diff(image, axis=0)).mean() + np.abs(np.diff(image, axis=1)).mean()
        return wrapped / inside

    wrapped = utils.resize(tile, (64, 80), wrap=True)
    plain = utils.resize(tile, (64, 80))
    assert wrapped.shape == plain.shape == (64, 80, 3)
    assert wrap_jump_over_inside_jump(wrapped) == pytest.approx(1.0, abs=0.05)
    assert wrap_jump_over_inside_jump(plain) > 1.3
    # Away from the edges both are the same bicubic resize.
    assert np.allclose(wrapped[8:-8, 8:-8], plain[8:-8, 8:-8], atol=1e-5)


@pytest.mark.parametrize('stop', [signal.SIGINT, signal.SIGTERM])
def test_a_stop_signal_asks_first_and_raises_on_the_second(stop, capfd):
    # Python runs the handler right after os.kill returns, inside the block
    before = {number: signal.getsignal(number) for number in commandline.STOP_SIGNALS}
    with commandline.stop_requests() as requested:
        assert not requested.is_set()
        os.kill(os.getpid(), stop)
        assert requested.is_set()  # and no exception: the run stops at its next step
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), stop)
    assert {number: signal.getsignal(number) for number in commandline.STOP_SIGNALS} == before
    assert 'Ctrl-C again' in capfd.readouterr().err


def test_the_stop_line_is_seen_while_stderr_is_captured(capfd):
    # A Ctrl-C during a run's first step comes while quiet_stderr holds fd 2 (TensorFlow's logs);
    # the line used to go into that capture file and was thrown away with it.
    with commandline.stop_requests(after='this run') as requested:
        with utils.quiet_stderr():
            os.kill(os.getpid(), signal.SIGINT)
        assert requested.is_set()
    assert 'stopping after this run' in capfd.readouterr().err


def test_a_crash_prints_the_python_lines_it_came_from():
    # faulthandler._sigsegv() crashes the way a fault in TensorFlow's C++ code would
    code = 'import commandline, faulthandler; commandline.report_crashes(); faulthandler._sigsegv()'
    result = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == -signal.SIGSEGV
    assert 'Segmentation fault' in result.stderr and '<string>", line 1' in result.stderr


def test_stop_requests_outside_the_main_thread_never_stop():
    seen = []

    def worker():
        with commandline.stop_requests() as requested:
            seen.append(requested.is_set())
    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen == [False]


@pytest.mark.parametrize('module, user_setting', [('utils', None), ('utils', '0'), ('vgg16', None),
                                                  ('losses', None), ('synthesize', None), ('runs', None)])
def test_onednn_is_on_unless_the_user_turned_it_off(module, user_setting):
    # TensorFlow turns oneDNN on by itself only on AVX-512 VNNI/BF16 or AMX CPUs; utils turns it
    # on everywhere else, before TensorFlow loads. TensorFlow logs the choice when it loads.
    # The modules a notebook imports on their own (vgg16, losses, ...) import utils first too.
    env = {key: value for key, value in os.environ.items() if key != 'TF_ENABLE_ONEDNN_OPTS'}
    env['TF_CPP_MIN_LOG_LEVEL'] = '0'
    if user_setting is not None:
        env['TF_ENABLE_ONEDNN_OPTS'] = user_setting
    loaded = subprocess.run([sys.executable, '-c', f'import {module}, tensorflow'], cwd=ROOT, env=env,
                            capture_output=True, text=True, check=True)
    assert ('oneDNN custom operations are on' in loaded.stderr) == (user_setting is None)


def test_loss_plots_leave_a_notebooks_matplotlib_alone(tmp_path):
    """Writing loss.png must not switch the caller's backend (a notebook's inline one: the
    plots after an api call stopped showing) nor leave figures open for it to display."""
    script = f"""
import matplotlib
matplotlib.use('svg')   # stands in for a notebook's inline backend
import matplotlib.pyplot as plt
import report, utils
history = [{{'step': 1, 'total': 10.0, 'conv1_1': 4.0}}, {{'step': 2, 'total': 5.0, 'conv1_1': 2.0}}]
utils.save_loss_plot(history, ['conv1_1'], {str(tmp_path / 'loss.png')!r})
report.loss_curves({{'a': history}}, {str(tmp_path / 'curves.png')!r})
print(matplotlib.get_backend(), len(plt.get_fignums()))
"""
    done = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ['svg', '0']
    for name in ('loss.png', 'curves.png'):
        assert utils.load_image(str(tmp_path / name)).shape[:2] == (450, 700)


class SomeLibraryError(Exception):
    """Stands in for an error of a module loaded late (TensorFlow's ResourceExhaustedError)."""


def test_command_line_turns_expected_failures_into_one_line_and_an_exit_code(capsys):
    def failing(error):
        def main(argv, stop):
            assert not stop.is_set() and argv == ['--x']
            raise error
        return main

    assert commandline.command_line(lambda argv, stop: 7, ['--x']) == 7  # main's own code passes through
    cases = [(utils.InputError('no such image'), {}, 2, 'error: no such image'),
             (LookupError('weights missing'), {}, 2, 'error: weights missing'),       # one of `errors`
             (SomeLibraryError('OOM when allocating'), {'SomeLibraryError': 'out of memory'}, 2, 'error: out of memory'),
             (KeyboardInterrupt(), {}, 130, 'stopped early')]
    for error, by_name, code, line in cases:
        assert commandline.command_line(failing(error), ['--x'], interrupted='stopped early', errors=(LookupError,),
                                  by_name=by_name) == code
        assert capsys.readouterr().err.strip().splitlines() == [line]
    # Anything else is a bug: its traceback is what the user must report.
    with pytest.raises(SomeLibraryError):
        commandline.command_line(failing(SomeLibraryError('a bug')), ['--x'], by_name={'OtherError': 'no'})
    with pytest.raises(ValueError):
        commandline.command_line(failing(ValueError('a bug')), ['--x'])
