"""The command lines' front door: --help and --version on every script, option errors before
TensorFlow loads, help text that reads right, and every command in the README valid as written."""
import os
import re
import shlex
import subprocess
import sys

import numpy as np
import pytest

import api
import compare
import jobs
import sample
import train
import utils
from conftest import ROOT, run_without_tensorflow

SCRIPTS = ('train.py', 'compare.py', 'sample.py', 'benchmark.py', 'benchmark_feedforward.py', 'weights.py')


def run_python(args, timeout=120, env=None):
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


@pytest.mark.parametrize('script', SCRIPTS)
def test_help_answers_without_loading_tensorflow(tmp_path, script):
    """--help must answer at once: TensorFlow takes seconds to load, so it must not be loaded at all.
    (`-X importtime` lists every module imported.)"""
    result, loaded = run_without_tensorflow(tmp_path, ['-X', 'importtime', script, '--help'])
    assert result.returncode == 0, result.stderr
    assert 'usage:' in result.stdout
    imported = {line.split('|')[-1].strip() for line in result.stderr.splitlines() if line.startswith('import time')}
    assert not loaded and 'scipy' not in imported, script
    assert 'fetching' not in result.stderr  # weights.py --help used to start a download


@pytest.mark.parametrize('args', [['train.py', '--image', 'texture1.jpg', '--layers', 'conv9_9'],
                                  ['train.py', '--image', 'texture1.jpg', '--feed-forward', '--batch-size', '0'],
                                  ['compare.py', '--image', 'texture1.jpg'],
                                  # Checks that need the images' sizes (float32: where a GPU driver is
                                  # installed, --precision auto asks TensorFlow whether it sees the GPU).
                                  ['train.py', '--image', 'texture1.jpg', '--iterations', '1,2,3', '--precision',
                                   'float32'],
                                  ['train.py', '--content', 'images/chelsea.jpg', '--style', 'texture1.jpg',
                                   '--style-scale', '0.01', '--precision', 'float32'],
                                  ['sample.py', 'runs/x', '--count', '0'],
                                  ['sample.py', 'no-such-run'], ['sample.py', 'images']])
def test_option_errors_answer_without_loading_tensorflow(tmp_path, args):
    result, loaded = run_without_tensorflow(tmp_path, args)
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1 and 'error:' in result.stderr, result.stderr
    assert not loaded


@pytest.mark.parametrize('script', SCRIPTS)
def test_every_script_has_a_version(script):
    result = run_python([script, '--version'])
    assert result.returncode == 0, result.stderr
    assert utils.VERSION in result.stdout


def test_help_text_reads_right():
    text = run_python(['train.py', '--help'], env={'COLUMNS': '80'}).stdout
    assert not re.search(r'conv\d\s+_\d', text)        # a layer name broken across lines
    assert '5000.0' not in text and '1000000.0' not in text
    assert "the source's" in ' '.join(text.split('  --match-colors')[1].split())[:200]
    for script in ('benchmark.py', 'benchmark_feedforward.py', 'sample.py', 'compare.py'):
        help_text = run_python([script, '--help']).stdout
        options = re.findall(r'^  (--[a-z-]+)', help_text, re.M)
        for option in options:  # every option says what it is
            entry = help_text.split(option, 1)[1].split('\n  --', 1)[0]
            assert len(entry.split()) > 2, (script, option)


def test_project_version_names_the_commit():
    commit, _ = utils.git_commit()
    if commit is None:
        pytest.skip('not a git checkout')
    assert commit[:8] in utils.project_version()


def test_progress_weights_each_step_by_its_stage_pixels():
    progress = train.Progress('texture1', [(0.5, 140, (128, 128)), (1.0, 100, (256, 256))])
    assert progress.cost == {0.5: 0.25, 1.0: 1.0}
    assert progress.total == pytest.approx(140 * 0.25 + 100)
    assert progress.done(150) == pytest.approx(140 * 0.25 + 10)
    assert progress.label(0.5) == 'texture1, scale 1/2 (128x128 px)'
    assert train.Progress('t', [(1.0, 10, (64, 64))]).label(1.0) == 't'


# ---------------------------------------------------------------- the README's commands

def readme_commands():
    """Every `python ...` command in the README's bash blocks, as argument lists."""
    text = open(os.path.join(ROOT, 'README.md')).read()
    commands = []
    for block in re.findall(r'```bash\n(.*?)```', text, re.S):
        for line in block.splitlines():
            line = line.split('  #')[0].strip()
            for part in line.split('&&'):
                words = shlex.split(part.strip())
                if words[:1] == ['python'] and words[1:2] != ['-m']:
                    commands.append(words[1:])
    return commands


def test_the_readme_has_commands():
    scripts = {command[0] for command in readme_commands()}
    assert {'train.py', 'compare.py', 'sample.py'} <= scripts


@pytest.mark.parametrize('command', readme_commands(), ids=' '.join)
def test_every_readme_command_is_valid_as_written(command, tiny_weights_path, tmp_path):
    """Each command's options parse, and the inputs it names exist (its images are found and read).
    Running them all in full would take an hour; the runs themselves are tested elsewhere."""
    script, args = command[0], command[1:]
    if script == 'train.py':
        parsed = train.parse_args(args + ['--weights', tiny_weights_path])
        (jobs.feedforward_job if parsed.feed_forward else
         jobs.texture_job if parsed.mode == 'texture' else jobs.style_job)(parsed)
    elif script == 'compare.py':
        globbed = [arg for arg in args if '*' not in arg and not arg.startswith('student_')]
        results = [arg for arg in globbed[2:] if not arg.startswith('-')] if '--source' in globbed else []
        if '--source' in globbed and not results:
            globbed.append(os.path.join(ROOT, 'images', 'texture2.jpg'))
        compare.parse_args(globbed + ['--weights', tiny_weights_path, '--out', str(tmp_path)])
    elif script == 'sample.py':
        sample.parse_args(args)
    else:
        assert script in SCRIPTS, script


def test_the_readme_python_api_example_runs(tiny_weights_path, tmp_path):
    """The README's notebook example, at a tiny size and with the test weights."""
    result = api.synthesize_texture('texture1.jpg', size=48, iterations=3, layers='conv1_1,pool1',
                                    weights=tiny_weights_path, out=str(tmp_path))
    assert result.status == 'finished' and result.image.shape == (48, 48, 3)
    assert result.history[-1]['total'] < result.history[0]['total']
    assert os.path.isfile(os.path.join(result.run_dir, 'config.json'))
    with pytest.raises(ValueError, match="unknown layer 'conv9_9'"):
        api.synthesize_texture('texture1.jpg', layers='conv9_9', weights=tiny_weights_path, out=str(tmp_path))
    with pytest.raises(ValueError, match='image not found'):
        api.synthesize_texture('no_such.jpg', weights=tiny_weights_path, out=str(tmp_path))


def test_the_api_covers_style_transfer_and_generators(tiny_weights_path, tmp_path):
    styled = api.transfer_style('chelsea.jpg', ['texture1.jpg', 'texture2.jpg'], size=40, iterations=2,
                                layers={'conv1_1': 1, 'pool1': 2}, weights=tiny_weights_path, out=str(tmp_path))
    assert styled.status == 'finished' and styled.image.shape[0] == 40
    assert styled.config['layer_weights'] == {'conv1_1': 1.0, 'pool1': 2.0}
    trained = api.train_generator('texture1.jpg', size=48, output_size=32, iterations=2, layers='conv1_1,pool1',
                                  weights=tiny_weights_path, out=str(tmp_path))
    assert trained.config['mode'] == 'feed-forward'
    image = api.sample(trained.run_dir, seed=3, size=(40, 72))
    assert image.shape == (40, 72, 3)
    np.testing.assert_array_equal(image, api.sample(trained.run_dir, seed=3, size=(40, 72)))
    with pytest.raises(ValueError, match='too small for the generator'):
        api.sample(trained.run_dir, size=16)
    for seed in (-1, 2 ** 70, 1.5):
        with pytest.raises(ValueError, match='seed must be an integer from 0 to'):
            api.sample(trained.run_dir, seed=seed, size=32)


def test_api_arguments_are_the_options():
    assert api.arguments({'output_size': '512x384', 'tileable': True, 'match_colors': False, 'seed': 3,
                          'layers': {'conv1_1': 1, 'pool1': 0.5}, 'scales': (0.5, 1)}) == [
        '--output-size', '512x384', '--tileable', '--seed', '3', '--layers', 'conv1_1=1,pool1=0.5',
        '--scales', '0.5,1']
