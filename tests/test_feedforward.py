"""The feed-forward generator: its network, its training, checkpoints, sampling, the SavedModel, the CLI."""
import contextlib
import csv
import glob
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import feedforward
import generator
import generator_design
import losses
import synthesize
import train
from conftest import ROOT, real_weights_path, run_without_tensorflow
from utils import InputError, load_image

SOURCE = load_image(os.path.join(ROOT, 'images', 'texture1.jpg'), 48)
LAYERS = {'conv1_1': 1.0, 'pool1': 1.0, 'pool2': 1.0}
OBJECTIVE = synthesize.Objective.texture(SOURCE, LAYERS)


def random_state(seed=0):
    """A generator's weights as training would leave them: random, not the initialisation."""
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        generator.build(generator.noise_inputs([0, 0], 1, 32, 32))
        session.run(tf.compat.v1.global_variables_initializer())
        state = session.run(generator.variables())
    rng = np.random.default_rng(seed)
    return {name: (value + rng.normal(0, 0.1, value.shape)).astype(np.float32) for name, value in state.items()}


@pytest.fixture(scope='module')
def sampler():
    sampler = feedforward.Sampler(random_state())
    yield sampler
    sampler.close()


# ---------------------------------------------------------------- the network

@pytest.mark.parametrize('shape', [(32, 32), (64, 96), (100, 37), (256, 256)])
def test_samples_have_the_asked_shape_and_valid_pixels(sampler, shape):
    image = sampler.sample(0, shape)
    assert image.shape == (*shape, 3) and image.dtype == np.float32
    assert image.min() >= 0.0 and image.max() <= 1.0
    assert image.std() > 0.01  # a texture, not a flat colour


def test_same_seed_same_sample_other_seed_another(sampler):
    first, again, other = (sampler.sample(seed, (64, 64)) for seed in (3, 3, 4))
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - other).mean() > 0.01


def test_a_sample_is_the_corner_of_its_canvas(sampler):
    """Sizes that are not multiples of the coarsest noise are the top-left of the rounded-up canvas."""
    np.testing.assert_array_equal(sampler.sample(7, (50, 40)), sampler.sample(7, (64, 64))[:50, :40])


def test_samples_tile_without_a_seam(sampler):
    """Circular padding everywhere: a sample whose sides are multiples of 32 is a torus. Its seam
    must look like any other row or column (the test --tileable runs use)."""
    image = sampler.sample(1, (64, 96)).astype(np.float64)
    seam_rows = np.abs(image[0] - image[-1]).mean()
    inner_rows = np.mean([np.abs(image[i] - image[i + 1]).mean() for i in range(image.shape[0] - 1)])
    seam_cols = np.abs(image[:, 0] - image[:, -1]).mean()
    inner_cols = np.mean([np.abs(image[:, i] - image[:, i + 1]).mean() for i in range(image.shape[1] - 1)])
    assert seam_rows < 1.5 * inner_rows and seam_cols < 1.5 * inner_cols


def test_noise_comes_from_the_seed_alone():
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        maps = session.run(generator.noise_inputs([5, 0], 2, 64, 32))
        again = session.run(generator.noise_inputs([5, 0], 2, 64, 32))
        other = session.run(generator.noise_inputs([5, 1], 2, 64, 32))
    assert [m.shape for m in maps] == [(2, 64 // 2 ** k, 32 // 2 ** k, 3) for k in reversed(range(generator.SCALES))]
    for a, b, c in zip(maps, again, other):
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)
    assert all(0 <= m.min() and m.max() < 1 for m in maps)


def numpy_instance_norm(x, scale, shift):
    mean = x.mean(axis=(1, 2), keepdims=True)
    variance = x.var(axis=(1, 2), keepdims=True)
    return (x - mean) / np.sqrt(variance + generator.EPSILON) * scale + shift


def test_instance_normalisation_matches_numpy_and_its_gradient():
    x = np.random.default_rng(2).normal(2.0, 3.0, (3, 5, 4, 6)).astype(np.float32)
    weights = np.random.default_rng(3).normal(size=x.shape).astype(np.float32)
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        placeholder = tf.compat.v1.placeholder(tf.float32, x.shape)
        with tf.compat.v1.variable_scope('t'):
            normalised = generator._normalise(placeholder, 'n')
        scale, shift = [v for v in tf.compat.v1.global_variables()]
        session.run([scale.assign(np.linspace(0.5, 2, 6)), shift.assign(np.linspace(-1, 1, 6))])
        gradient = tf.gradients(tf.reduce_sum(normalised * weights), placeholder)[0]
        value, grad = session.run([normalised, gradient], {placeholder: x})
    np.testing.assert_allclose(value, numpy_instance_norm(x, np.linspace(0.5, 2, 6), np.linspace(-1, 1, 6)),
                               rtol=1e-4, atol=1e-4)
    # Finite differences on a few entries, in float64 numpy.
    reference = lambda z: np.sum(numpy_instance_norm(z.astype(np.float64), np.linspace(0.5, 2, 6),  # noqa: E731
                                                     np.linspace(-1, 1, 6)) * weights)
    for index in [(0, 0, 0, 0), (1, 2, 3, 4), (2, 4, 1, 5)]:
        step = np.zeros_like(x, np.float64)
        step[index] = 1e-4
        numeric = (reference(x + step) - reference(x - step)) / 2e-4
        assert grad[index] == pytest.approx(numeric, rel=1e-2, abs=1e-3)


def test_instance_normalisation_is_per_image():
    """Unlike batch normalisation, an image's sample does not depend on the rest of its batch."""
    x = np.random.default_rng(4).normal(size=(2, 8, 8, 4)).astype(np.float32)
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        placeholder = tf.compat.v1.placeholder(tf.float32, [None, 8, 8, 4])
        normalised = generator._normalise(placeholder, 'n')
        session.run(tf.compat.v1.global_variables_initializer())
        both = session.run(normalised, {placeholder: x})
        alone = session.run(normalised, {placeholder: x[1:]})
    np.testing.assert_allclose(both[1:], alone, atol=1e-5)


def test_unit_gradient_keeps_the_value_and_rescales_the_gradient():
    x = np.random.default_rng(5).normal(size=(1, 4, 4, 3))
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        placeholder = tf.compat.v1.placeholder(tf.float64, x.shape)
        wrapped = losses.with_unit_gradient(placeholder, scale=0.25)
        loss = tf.reduce_sum(1000.0 * wrapped ** 2)
        value, wrapped_value, grad = session.run([loss, wrapped, tf.gradients(loss, placeholder)[0]],
                                                 {placeholder: x})
        zero = session.run(tf.gradients(tf.reduce_sum(0.0 * losses.with_unit_gradient(placeholder)),
                                        placeholder)[0], {placeholder: x})
    np.testing.assert_array_equal(wrapped_value, x)
    assert value == pytest.approx(1000 * np.sum(x ** 2))
    plain = 2000 * x
    np.testing.assert_allclose(grad, plain * 0.25 / np.abs(plain).mean())
    assert np.all(zero == 0)  # no gradient stays none, not NaN


def test_the_objective_of_a_batch_is_the_mean_of_its_images(tiny_weights):
    """One objective for both paths: a batch's losses are its images' own, averaged."""
    images = np.random.default_rng(6).uniform(0, 1, (3, 32, 32, 3)).astype(np.float32)
    for loss in synthesize.STYLE_LOSSES:
        objective = synthesize.Objective([SOURCE], LAYERS, loss=loss)
        with tf.Graph().as_default(), tf.compat.v1.Session() as session:
            import vgg16
            shared = vgg16.weight_tensors(tiny_weights, up_to='pool2')
            statistics = synthesize.source_statistics(session, shared, objective)
            placeholder = tf.compat.v1.placeholder(tf.float32, [None, 32, 32, 3])
            total, named, _ = synthesize.objective_losses(shared, objective, statistics, placeholder)
            batch = session.run(named, {placeholder: images})
            alone = [session.run(named, {placeholder: image[None]}) for image in images]
        for name in batch:
            assert batch[name] == pytest.approx(np.mean([values[name] for values in alone]), rel=1e-4), (loss, name)
        graph = synthesize.Graph(tiny_weights, objective, (32, 32))  # the pixel optimisation's own graph
        graph.set_image(images[0])
        assert graph.evaluate()[0]['total'] == pytest.approx(alone[0]['total'], rel=1e-5)
        graph.close()


# ---------------------------------------------------------------- training

def adam_steps(trainer, until):
    """The losses of each of `trainer`'s steps until it has done `until` in all."""
    return [trainer.train_step()['total'] for _ in range(until - trainer.steps_done)]


def test_training_lowers_the_loss(tiny_weights):
    trainer = feedforward.Trainer(tiny_weights, OBJECTIVE, (32, 32), batch_size=2, learning_rate=0.02)
    totals = adam_steps(trainer, 60)
    trainer.close()
    assert len(totals) == 60
    assert np.mean(totals[-10:]) < np.mean(totals[:3]) / 3


def test_checkpoint_round_trip_resumes_exactly(tiny_weights, tmp_path):
    """Weights, Adam's moments and the step all come back: a resumed run continues as if never stopped."""
    straight = feedforward.Trainer(tiny_weights, OBJECTIVE, (32, 32), batch_size=2)
    straight_losses = adam_steps(straight, 6)
    final = straight.state()
    straight.close()

    first = feedforward.Trainer(tiny_weights, OBJECTIVE, (32, 32), batch_size=2)
    adam_steps(first, 3)
    path = generator_design.save_checkpoint(first.state(), str(tmp_path / 'generator.npz'), {'tileable': False})
    first.close()
    state, meta = generator_design.load_checkpoint(path)
    assert meta['format'] == generator_design.CHECKPOINT_FORMAT and int(state['global_step']) == 3
    assert any(name.endswith('/Adam') for name in state) and 'beta1_power' in state
    resumed = feedforward.Trainer(tiny_weights, OBJECTIVE, (32, 32), batch_size=2, state=state)
    resumed_losses = adam_steps(resumed, 6)
    again = resumed.state()
    resumed.close()
    assert resumed_losses == pytest.approx(straight_losses[3:], rel=1e-5)
    for name in final:
        np.testing.assert_allclose(again[name], final[name], rtol=1e-5, atol=1e-7)


STAGES = [(0.5, 3, (32, 32)), (1.0, 3, (64, 64))]


def test_stages_carry_weights_and_adam_over_and_resume_exactly(tiny_weights):
    """Coarse to fine: the 64 px stage starts from what the 32 px one learnt (weights, Adam's
    moments, the step), and a run stopped mid-way resumes as if it never stopped."""
    steps = feedforward.train(tiny_weights, OBJECTIVE, STAGES, batch_size=2)
    straight = [next(steps) for _ in range(3)]
    coarse_state = straight[-1][1].state()
    straight += list(steps)
    assert [step for step, _, _ in straight] == list(range(1, 7))
    assert [losses['scale'] for _, _, losses in straight] == [0.5] * 3 + [1.0] * 3
    fine = straight[-1][1]
    assert fine.sample_shape == (64, 64) and straight[0][1].sample_shape == (32, 32)
    final = fine.state()
    fine.close()
    assert int(final['global_step']) == 6 and int(coarse_state['global_step']) == 3
    # The fine stage began where the coarse one ended: from the coarse state alone, the same steps.
    from_coarse = list(feedforward.train(tiny_weights, OBJECTIVE, STAGES, batch_size=2, state=coarse_state))
    from_coarse[-1][1].close()
    assert [losses['total'] for _, _, losses in from_coarse] == pytest.approx(
        [losses['total'] for _, _, losses in straight[3:]], rel=1e-5)

    steps = feedforward.train(tiny_weights, OBJECTIVE, STAGES, batch_size=2)
    for _ in range(4):
        _, stopped, _ = next(steps)
    steps.close()
    state = stopped.state()  # stopped one step into the fine stage
    stopped.close()
    resumed = list(feedforward.train(tiny_weights, OBJECTIVE, STAGES, batch_size=2, state=state))
    assert [step for step, _, _ in resumed] == [5, 6]
    assert [losses['total'] for _, _, losses in resumed] == pytest.approx(
        [losses['total'] for _, _, losses in straight[4:]], rel=1e-5)
    again = resumed[-1][1].state()
    resumed[-1][1].close()
    for name in final:
        np.testing.assert_allclose(again[name], final[name], rtol=1e-5, atol=1e-7)


def test_a_stop_in_the_next_stages_first_step_leaves_the_last_trainer_usable(tiny_weights, monkeypatch):
    """Ctrl-C while the fine stage makes its first step: the caller holds the coarse stage's
    trainer (its last yield), which must still give its state for the checkpoint."""
    steps = feedforward.train(tiny_weights, OBJECTIVE, STAGES, batch_size=2)
    for _ in range(3):
        _, held, _ = next(steps)
    plain_step = feedforward.Trainer.train_step

    def interrupted(trainer):
        if trainer is not held:
            raise KeyboardInterrupt
        return plain_step(trainer)
    monkeypatch.setattr(feedforward.Trainer, 'train_step', interrupted)
    with pytest.raises(KeyboardInterrupt):
        next(steps)
    assert int(held.state()['global_step']) == 3
    held.close()


def test_the_rate_drops_for_the_last_quarter_of_the_last_stage():
    assert feedforward.fine_tune_step([(0.5, 3500, None), (1.0, 1000, None)]) == 4250
    assert feedforward.fine_tune_step([(1.0, 2000, None)]) == 1500


def test_a_checkpoint_of_another_shape_is_refused(tiny_weights):
    state = random_state()
    state['generator/rgb/kernel'] = state['generator/rgb/kernel'][..., :2]
    with pytest.raises(InputError, match='does not fit this generator'):
        feedforward.Sampler(state)


@pytest.mark.parametrize('damage', ['truncated', 'garbage', 'not a checkpoint', 'nan'])
def test_damaged_checkpoints_are_one_clear_error(tmp_path, damage):
    path = str(tmp_path / 'generator.npz')
    generator_design.save_checkpoint(random_state(), path, {'tileable': False})
    data = open(path, 'rb').read()
    if damage == 'truncated':
        open(path, 'wb').write(data[:len(data) // 2])
    elif damage == 'garbage':
        open(path, 'wb').write(b'PK\x03\x04 broken' * 10)
    elif damage == 'not a checkpoint':
        np.savez(path, weights=np.zeros(3))
    else:
        state = random_state()
        state['generator/rgb/bias'][0] = np.nan
        generator_design.save_checkpoint(state, path, {'tileable': False})
    with pytest.raises(InputError):
        generator_design.load_checkpoint(path)


def test_sample_sizes_are_checked():
    with pytest.raises(InputError, match='at least 32 px'):
        generator_design.check_sample_size((16, 64), tileable=False)
    with pytest.raises(InputError, match='try 96x64'):
        generator_design.check_sample_size((64, 100), tileable=True)
    generator_design.check_sample_size((64, 100), tileable=False)


# ---------------------------------------------------------------- the SavedModel

def test_the_savedmodel_samples_the_same_images_in_a_fresh_process(sampler, tmp_path):
    """Loaded with tf.saved_model.load alone, in a process that cannot import this project."""
    path = sampler.export(str(tmp_path / 'savedmodel'))
    sampler.export(path)  # a second export replaces the first
    assert sorted(os.listdir(tmp_path)) == ['savedmodel']
    script = ("import sys, numpy as np, tensorflow as tf\n"
              "model = tf.saved_model.load(sys.argv[1])\n"
              "out = model.signatures['serving_default'](seed=tf.constant(11, tf.int64), height=tf.constant(40),"
              " width=tf.constant(72))\n"
              "np.save(sys.argv[2], out['image'].numpy())\n")
    result = subprocess.run([sys.executable, '-c', script, path, str(tmp_path / 'image.npy')],
                            cwd=str(tmp_path), capture_output=True, text=True, timeout=300,
                            env={**os.environ, 'PYTHONPATH': ''})
    assert result.returncode == 0, result.stderr
    image = np.load(tmp_path / 'image.npy')
    assert image.shape == (1, 40, 72, 3)
    np.testing.assert_allclose(image[0], sampler.sample(11, (40, 72)), atol=1e-6)


# ---------------------------------------------------------------- train.py --feed-forward and sample.py

@pytest.fixture
def trained_run(tiny_weights_path, tmp_path, capsys):
    out = str(tmp_path / 'runs')
    code = train.cli(['--image', 'texture1.jpg', '--size', '48', '--feed-forward', '--scales', '0.5,1', '--iterations', '3,3',
                      '--save-every', '3', '--output-size', '64', '--layers', 'conv1_1,pool1,pool2',
                      '--weights', tiny_weights_path, '--out', out, '--name', 'gen'])
    assert code == 0, capsys.readouterr().err
    return os.path.join(out, 'gen')


def test_feed_forward_run_writes_its_folder(trained_run):
    assert sorted(os.listdir(trained_run)) == ['.lock', 'comparison.png', 'config.json', 'generator.npz', 'history.csv',
                                               'loss.png', 'result.png', 'savedmodel', 'steps']
    assert sorted(os.listdir(os.path.join(trained_run, 'steps'))) == ['step_00003.png', 'step_00006.png']
    assert Image.open(os.path.join(trained_run, 'result.png')).size == (64, 64)
    config = json.load(open(os.path.join(trained_run, 'config.json')))
    assert config['mode'] == 'feed-forward' and config['status'] == 'finished'
    assert config['iterations_done'] == 6 and config['batch_size'] == train.BATCH_SIZE
    assert 50_000 < config['generator_parameters'] < 200_000
    with open(os.path.join(trained_run, 'history.csv')) as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row['step']) for row in rows] == list(range(1, 7))
    assert [float(row['scale']) for row in rows] == [0.5] * 3 + [1.0] * 3  # 32 px samples, then 64 px
    assert config['scales'] == [0.5, 1.0] and config['iterations'] == [3, 3]
    # Every sheet shows 64 px previews, the coarse stage's too: the same samples, learnt further.
    assert Image.open(os.path.join(trained_run, 'steps', 'step_00003.png')).size == \
        Image.open(os.path.join(trained_run, 'steps', 'step_00006.png')).size
    assert not glob.glob(os.path.join(trained_run, '**', '*.tmp'), recursive=True)


def test_resume_continues_to_the_new_step_count(trained_run, tiny_weights_path, capsys):
    shutil.rmtree(os.path.join(trained_run, 'steps'))  # benchmark_feedforward's folders have none: it is made again
    code = train.cli(['--resume', trained_run, '--iterations', '3,6', '--weights', tiny_weights_path,
                      '--save-every', '9'])
    assert code == 0, capsys.readouterr().err
    assert os.listdir(os.path.join(trained_run, 'steps')) == ['step_00009.png']
    config = json.load(open(os.path.join(trained_run, 'config.json')))
    assert config['iterations_done'] == 9 and config['resumed_at'] == [6] and config['status'] == 'finished'
    assert config['iterations'] == [3, 6]
    with open(os.path.join(trained_run, 'history.csv')) as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row['step']) for row in rows] == list(range(1, 10))
    seconds = [float(row['seconds']) for row in rows]
    assert seconds == sorted(seconds)  # the clock goes on


def run_script(script, args, timeout=180):
    return subprocess.run([sys.executable, os.path.join(ROOT, script), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def test_sample_py_writes_the_same_images_for_the_same_seed(trained_run, tmp_path):
    out = str(tmp_path / 'samples')
    result = run_script('sample.py', [trained_run, '--output-size', '96x64', '--count', '3', '--seed', '2',
                                      '--out', out])
    assert result.returncode == 0, result.stderr
    assert 'Traceback' not in result.stderr
    assert sorted(os.listdir(out)) == ['sample_96x64_seed2.png', 'sample_96x64_seed3.png',
                                       'sample_96x64_seed4.png', 'sheet_96x64_seed2-4.png']
    import grading  # compare.py on the folder: the samples, not the sheet (it holds the source)
    found, skipped = grading.find_submissions([out])
    assert len(found) == 3 and [os.path.basename(path) for path, _ in skipped] == ['sheet_96x64_seed2-4.png']
    again = run_script('sample.py', [trained_run, '--output-size', '96x64', '--count', '1', '--seed', '3',
                                     '--out', str(tmp_path / 'again')])
    assert again.returncode == 0, again.stderr
    first = np.asarray(Image.open(os.path.join(out, 'sample_96x64_seed3.png')))
    second = np.asarray(Image.open(tmp_path / 'again' / 'sample_96x64_seed3.png'))
    np.testing.assert_array_equal(first, second)
    assert first.shape == (64, 96, 3)


def test_the_contact_sheet_shows_the_first_samples_of_many(trained_run, tmp_path):
    """Ten samples: ten PNGs, and a sheet of the source and the first SHEET_SAMPLES (8), not all ten
    (each kept in memory for the sheet, a --count of thousands at 1024 px once meant gigabytes)."""
    import sample
    out = tmp_path / 'many'
    result = run_script('sample.py', [trained_run, '--output-size', '32', '--count', '10', '--out', str(out)])
    assert result.returncode == 0, result.stderr
    assert len([name for name in os.listdir(out) if name.startswith('sample_')]) == 10
    assert sample.SHEET_SAMPLES == 8 and os.listdir(out).count('sheet_32x32_seed0-7.png') == 1
    assert '10 samples in' in result.stderr and '(the first 8)' in result.stderr
    eight = run_script('sample.py', [trained_run, '--output-size', '32', '--count', '8', '--out', str(tmp_path / 'eight')])
    assert eight.returncode == 0 and '(the first' not in eight.stderr, eight.stderr
    np.testing.assert_array_equal(np.asarray(Image.open(out / 'sheet_32x32_seed0-7.png')),
                                  np.asarray(Image.open(tmp_path / 'eight' / 'sheet_32x32_seed0-7.png')))


FEED_FORWARD_BAD_INPUTS = [
    (['--feed-forward', '--optimizer', 'adam'], '--optimizer does not go with --feed-forward'),
    (['--feed-forward', '--init', 'uniform'], '--init does not go with --feed-forward'),
    (['--feed-forward', '--iterations', '10,20,30'], '--iterations gives 3 counts for 1 scale (1)'),
    (['--feed-forward', '--scales', '0.5,1', '--output-size', '48'], 'the training samples at --scales 0.5 are 24x24 px, too small'),
    (['--feed-forward', '--scales', '1,0.5'], '--scales must rise to 1'),
    (['--feed-forward', '--batch-size', '0'], '--batch-size must be at least 1'),
    (['--feed-forward', '--learning-rate', 'nan'], '--learning-rate must be a finite number > 0'),
    (['--feed-forward', '--output-size', '16'], 'too small for the generator'),
    (['--feed-forward', '--tileable', '--output-size', '100'], 'multiples of 32'),
    (['--feed-forward', '--batch-size', '100000'], 'try --batch-size'),
    (['--feed-forward', '--output-size', '100000'], 'GB of memory'),
    (['--batch-size', '8'], '--batch-size is for --feed-forward'),
    (['--resume', '{tmp}/nowhere'], 'is not a run folder'),
]


@pytest.mark.parametrize('args, message', FEED_FORWARD_BAD_INPUTS, ids=[m for _, m in FEED_FORWARD_BAD_INPUTS])
def test_feed_forward_bad_input_is_one_line(tiny_weights_path, tmp_path, args, message):
    args = [arg.replace('{tmp}', str(tmp_path)) for arg in args]
    if '--resume' not in args:
        args = ['--image', 'texture1.jpg', '--size', '48'] + args
    result = run_script('train.py', args + ['--weights', tiny_weights_path, '--out', str(tmp_path / 'runs')])
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not os.path.exists(tmp_path / 'runs') or not os.listdir(tmp_path / 'runs')


def damaged_copies(trained_run, tmp_path):
    """Copies of a run folder as a disk, a crash or a hand edit leaves them: {what: folder}."""
    def copy(name, config=None, checkpoint=None):
        folder = str(tmp_path / name)
        shutil.copytree(trained_run, folder)
        if config is not None:
            recorded = json.load(open(os.path.join(folder, 'config.json')))
            json.dump(config(recorded), open(os.path.join(folder, 'config.json'), 'w'))
        if checkpoint is not None:
            checkpoint(os.path.join(folder, 'generator.npz'))
        return folder
    return {
        'pixel run': copy('pixels', config=lambda c: {'mode': 'texture'}),
        'no generator': copy('empty', checkpoint=os.remove),
        'truncated': copy('truncated', checkpoint=lambda path: open(path, 'r+b').truncate(os.path.getsize(path) // 3)),
        'no layers': copy('no-layers', config=lambda c: {k: v for k, v in c.items() if k != 'layer_weights'}),
        'batch as text': copy('text-batch', config=lambda c: {**c, 'batch_size': 'two'}),
        'unknown layer': copy('bad-layer', config=lambda c: {**c, 'layer_weights': {'conv9_9': 1.0}}),
        'scales above 1': copy('bad-scales', config=lambda c: {**c, 'scales': [2.0]}),
    }


DAMAGED_MESSAGES = {'pixel run': 'is a texture run, not a generator', 'no generator': 'generator.npz not found',
                    'truncated': 'damaged or not a checkpoint', 'no layers': "its 'layer_weights' has none",
                    'batch as text': "its 'batch_size' has \"two\"", 'unknown layer': "its 'layer_weights' has",
                    'scales above 1': "its 'scales' has [2.0]"}


def test_resume_bad_inputs(trained_run, tiny_weights_path, tmp_path):
    """One line each, before TensorFlow loads (a stand-in tensorflow notes whether it was imported)."""
    damaged = damaged_copies(trained_run, tmp_path)
    cases = [(['--resume', trained_run, '--batch-size', '2'], 'cannot be changed'),
             (['--resume', trained_run, '--iterations', '3,3'], 'has trained 6 steps already'),
             (['--resume', trained_run, '--iterations', '1,2,3'], "3 counts for the run's 2 scales"),
             ] + [(['--resume', damaged[what]], message) for what, message in DAMAGED_MESSAGES.items()]
    for args, message in cases:
        result, loaded = run_without_tensorflow(tmp_path, ['train.py', *args, '--weights', tiny_weights_path])
        assert result.returncode == 2, result.stderr
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert not loaded, args


def test_a_generator_being_trained_cannot_be_resumed_meanwhile(trained_run, tiny_weights_path, tmp_path):
    """Both would write one checkpoint, history and sheets; the second is refused at once."""
    import runs
    with contextlib.closing(runs.training_lock(trained_run)):  # as train.py holds it while it trains
        result, loaded = run_without_tensorflow(tmp_path, ['train.py', '--resume', trained_run, '--iterations', '9',
                                                           '--weights', tiny_weights_path])
    assert result.returncode == 2 and 'is being trained by another train.py' in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not loaded
    resumed = run_script('train.py', ['--resume', trained_run, '--iterations', '7', '--weights', tiny_weights_path])
    assert resumed.returncode == 0, resumed.stderr  # free again once released


def test_sample_py_bad_inputs(trained_run, tmp_path):
    """One line each, nothing written, before TensorFlow loads."""
    damaged = damaged_copies(trained_run, tmp_path)
    cases = [([damaged[what]], message) for what, message in DAMAGED_MESSAGES.items()] + [
             ([trained_run, '--output-size', '16'], 'too small for the generator'),
             ([trained_run, '--output-size', '100000'], 'GB of memory'),
             ([trained_run, '--count', '0'], '--count must be 1 to'),
             ([trained_run, '--seed', str(2 ** 70)], '--seed must be 0 to'),  # was an OverflowError traceback
             ([trained_run, '--seed', str(2 ** 32 - 2), '--count', '3'], 'at most 4294967295'),
             ([trained_run, '--output-size', 'big'], '--output-size must look like'),
             ([str(tmp_path / 'nowhere')], 'is not a run folder'),
             ([os.path.join(trained_run, 'result.png')], 'is a file, not a run folder')]
    for args, message in cases:
        result, loaded = run_without_tensorflow(tmp_path, ['sample.py', *args, '--out', str(tmp_path / 'out')])
        assert result.returncode == 2, (args, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], (args, result.stderr)
        assert not loaded, args
        assert not os.path.exists(tmp_path / 'out') or not os.listdir(tmp_path / 'out')


@pytest.mark.parametrize('stop', ['SIGINT', 'SIGTERM'])
def test_a_stopped_training_saves_a_checkpoint_that_resumes(tiny_weights_path, tmp_path, stop):
    import signal
    import time
    out = str(tmp_path / 'runs')
    process = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, 'train.py'), '--image', 'texture1.jpg', '--size', '48', '--feed-forward',
         '--scales', '1', '--iterations', '1000000', '--output-size', '32', '--layers', 'conv1_1,pool1', '--weights',
         tiny_weights_path, '--out', out, '--name', 'gen', '--save-every', '2'],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    history = os.path.join(out, 'gen', 'config.json')
    deadline = time.time() + 120
    while time.time() < deadline and not os.path.exists(os.path.join(out, 'gen', 'steps', 'step_00002.png')):
        time.sleep(0.2)  # training has started
    process.send_signal(getattr(signal, stop))
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert 'Traceback' not in err
    config = json.load(open(history))
    assert config['status'] == 'interrupted' and config['iterations_done'] > 0
    state, _ = generator_design.load_checkpoint(os.path.join(out, 'gen', 'generator.npz'))
    assert int(state['global_step']) == config['iterations_done']
    resumed = run_script('train.py', ['--resume', os.path.join(out, 'gen'), '--iterations',
                                      str(config['iterations_done'] + 2), '--weights', tiny_weights_path])
    assert resumed.returncode == 0, resumed.stderr
    assert json.load(open(history))['iterations_done'] == config['iterations_done'] + 2


# ---------------------------------------------------------------- with the real weights

@pytest.mark.skipif(real_weights_path() is None,
                    reason="real VGG16 weights absent: run 'python weights.py' to fetch them (CI does)")
def test_real_weights_training_moves_the_samples_gram_loss_down_by_orders_of_magnitude(real_weights):
    source = load_image(os.path.join(ROOT, 'images', 'texture2.jpg'), 64)
    layers = train.parse_layers(train.LAYERS, None)
    objective = synthesize.Objective.texture(source, layers)
    trainer = feedforward.Trainer(real_weights, objective, (64, 64), batch_size=2)
    untrained = trainer.samples()
    adam_steps(trainer, 150)
    trained = trainer.samples()
    trainer.close()
    graph = synthesize.Graph(real_weights, objective, (64, 64))

    def loss(image):
        graph.set_image(image)
        return graph.evaluate()[0]['total']
    before = np.mean([loss(image) for image in untrained])
    after = np.mean([loss(image) for image in trained])
    graph.close()
    assert after < before / 100, (before, after)


# ---------------------------------------------------------------- benchmark_feedforward's figures

def test_the_diversity_figure_is_finite_for_a_small_source_and_nan_for_a_flat_one(tiny_weights):
    """A source no larger than the crops once gave four identical crops and a division by zero."""
    import benchmark_feedforward
    rng = np.random.default_rng(0)
    samples = [rng.random((64, 64, 3)).astype(np.float32) for _ in range(3)]
    source = rng.random((64, 96, 3)).astype(np.float32)
    spread = benchmark_feedforward.diversity(tiny_weights, samples, source)
    assert np.isfinite(spread) and spread > 0
    assert np.isnan(benchmark_feedforward.diversity(tiny_weights, samples, np.full((64, 64, 3), 0.5, np.float32)))
