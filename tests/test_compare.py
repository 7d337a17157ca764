"""compare.py: sweep expansion, scoring and ranking, the report's files, resuming a sweep."""
import csv
import json
import os
import re
import threading

import numpy as np
import pytest
from PIL import Image

import compare
import grading
import scores
from conftest import ROOT
from test_train import run_script
from utils import load_image, save_image


def test_sweeps_expand_to_every_combination():
    configurations = compare.expand_sweeps(['weighting=mean,sum', 'optimizer=lbfgs,adam', 'pooling=avg'], [])
    assert [name for name, _ in configurations] == [
        'weighting=mean_optimizer=lbfgs_pooling=avg', 'weighting=mean_optimizer=adam_pooling=avg',
        'weighting=sum_optimizer=lbfgs_pooling=avg', 'weighting=sum_optimizer=adam_pooling=avg']
    assert configurations[1][1] == ['--weighting', 'mean', '--optimizer', 'adam', '--pooling', 'avg']


def test_switches_sweep_as_off_and_on():
    configurations = compare.expand_sweeps(['feed-forward=off,on', 'seed=1'], [])
    assert configurations == [('feed-forward=off_seed=1', ['--seed', '1']),
                              ('feed-forward=on_seed=1', ['--feed-forward', '--seed', '1'])]


def test_values_with_commas_use_a_bar():
    configurations = compare.expand_sweeps(['layers=conv1_1,pool1|all-conv'], [])
    assert [args for _, args in configurations] == [['--layers', 'conv1_1,pool1'], ['--layers', 'all-conv']]
    assert all(re.fullmatch(r'[\w=,.+-]+', name) for name, _ in configurations)


@pytest.mark.parametrize('sweeps, passthrough, message', [
    (['colour=red,blue'], [], 'not a train.py option'),
    (['out=a,b'], [], 'not a train.py option'),
    (['preserve-colors=yes'], [], 'a switch, swept as preserve-colors=off,on'),
    (['weighting'], [], 'must look like KEY=V1,V2'),
    (['weighting=mean,mean'], [], 'repeated'),
    (['weighting=mean', 'weighting=sum'], [], 'swept twice'),
    (['weighting=mean,sum'], ['--weighting', 'sum'], 'both swept and given'),
])
def test_bad_sweeps(sweeps, passthrough, message):
    with pytest.raises(ValueError, match=message):
        compare.expand_sweeps(sweeps, passthrough)


def test_ranking_puts_copies_last():
    rows = [{'name': 'copy', 'swd': 0.0, 'copy': True}, {'name': 'b', 'swd': 2.0, 'copy': False},
            {'name': 'a', 'swd': 1.0, 'copy': False}]
    assert [row['name'] for row in grading.ranked(rows)] == ['a', 'b', 'copy']


@pytest.fixture(scope='module')
def candidates(tmp_path_factory):
    """A 64 px source, a shifted copy of it, a crop, noise, and a different texture."""
    folder = tmp_path_factory.mktemp('candidates')
    source = load_image(os.path.join(ROOT, 'images', 'texture1.jpg'), 64)
    rng = np.random.default_rng(0)
    paths = {'source': save_image(source, str(folder / 'source.png')),
             'shifted': save_image(np.roll(source, (20, 9), (0, 1)), str(folder / 'shifted.png')),
             'crop': save_image(source[5:53, 8:56], str(folder / 'crop.png')),
             'noise': save_image(rng.uniform(0, 1, source.shape), str(folder / 'noise.png')),
             'other': save_image(load_image(os.path.join(ROOT, 'images', 'texture2.jpg'), 64), str(folder / 'other.png'))}
    return paths


def test_scoring_flags_copies_and_writes_the_report(candidates, tiny_weights_path, tmp_path, capsys):
    out = str(tmp_path / 'reports')
    code = compare.cli(['--source', candidates['source'], '--size', '0', candidates['noise'], candidates['shifted'],
                        candidates['crop'], candidates['other'], candidates['source'].replace('source', 'source'),
                        '--weights', tiny_weights_path, '--out', out, '--name', 'graded'])
    assert code == 0, capsys.readouterr().err
    folder = os.path.join(out, 'graded')
    assert sorted(os.listdir(folder)) == ['contact_sheet.png', 'report.html', 'scores.csv']
    with open(os.path.join(folder, 'scores.csv')) as handle:
        rows = {row['name']: row for row in csv.DictReader(handle)}
    for name in ('shifted', 'crop', 'source'):
        assert rows[name]['verdict'] == 'COPY', name
    for name in ('noise', 'other'):
        assert rows[name]['verdict'] != 'COPY', name
    # The source itself scores 0 on every distance and 1 on layout.
    for score in ('gram', 'swd', 'colour', 'spectral'):
        assert float(rows['source'][score]) == pytest.approx(0, abs=1e-6), score
    assert float(rows['source']['layout']) == pytest.approx(1.0)
    # Every row has its texture's layout limit: at least the 0.25 line.
    assert all(float(row['layout_limit']) >= scores.LAYOUT_LINE for row in rows.values())
    # Copies rank last, after the non-copies ranked by SWD.
    order = list(rows)
    assert set(order[-3:]) == {'shifted', 'crop', 'source'}
    # The page is self-contained: every image is embedded, nothing is fetched.
    page = open(os.path.join(folder, 'report.html')).read()
    assert page.count('src="data:image/png;base64,') == 6  # the source and five results
    # Each thumbnail opens its image, by a path relative to the report.
    assert 'href="../../' in page and os.path.basename(candidates['noise']) in page
    assert 'http://' not in page and 'https://' not in page
    assert Image.open(os.path.join(folder, 'contact_sheet.png')).width > 4 * 100


def test_the_verdict_says_copy_first_then_scale_then_layout():
    row = {'copy': False, 'copy_layout': 0.3, 'copy_scale': 1.0, 'copy_patch': 0.3, 'layout': 0.5,
           'layout_limit': 0.45, 'scale_problem': None}
    assert grading.verdict(row)[0] == 'look' and '0.50 is over' in grading.verdict(row)[1]
    assert grading.verdict({**row, 'layout': 0.4})[0] == 'ok'
    assert grading.verdict({**row, 'scale_problem': 'smaller'}) == ('scale?', 'smaller')
    copy = {**row, 'copy': True, 'copy_layout': 0.95, 'copy_scale': 0.5}
    assert grading.verdict(copy)[0] == 'COPY' and 'resized 0.5x' in grading.verdict(copy)[1]


def sweep_args(out, tiny_weights_path):
    return ['--image', 'texture1.jpg', '--sweep', 'weighting=mean,geometric', '--sweep', 'pooling=avg,max',
            '--size', '32', '--iterations', '3', '--layers', 'conv1_1,pool1', '--save-every', '0',
            '--weights', tiny_weights_path, '--out', out, '--name', 'sweep']


def test_sweep_runs_scores_and_resumes(tiny_weights_path, tmp_path, capsys):
    out = str(tmp_path / 'reports')
    assert compare.cli(sweep_args(out, tiny_weights_path)) == 0, capsys.readouterr().err
    folder = os.path.join(out, 'sweep')
    assert sorted(os.listdir(folder)) == ['.lock', 'contact_sheet.png', 'loss_curves.png', 'report.html', 'runs',
                                          'scores.csv']  # .lock: one sweep per report folder at a time
    names = sorted(os.listdir(os.path.join(folder, 'runs')))
    assert names == ['weighting=geometric_pooling=avg', 'weighting=geometric_pooling=max',
                     'weighting=mean_pooling=avg', 'weighting=mean_pooling=max']
    config = json.load(open(os.path.join(folder, 'runs', names[1], 'config.json')))
    assert config['weighting'] == 'geometric' and config['pooling'] == 'max' and config['iterations'] == [3]
    first = {name: os.path.getmtime(os.path.join(folder, 'runs', name, 'result.png')) for name in names}
    capsys.readouterr()

    # An interrupted configuration: rerunning the command redoes only that one.
    interrupted = os.path.join(folder, 'runs', names[0], 'config.json')
    config = json.load(open(interrupted))
    json.dump({**config, 'status': 'interrupted'}, open(interrupted, 'w'))
    assert compare.cli(sweep_args(out, tiny_weights_path)) == 0
    err = capsys.readouterr().err
    assert err.count('finished earlier, kept') == 3 and f'{names[0]}: running' in err
    for name in names[1:]:
        assert os.path.getmtime(os.path.join(folder, 'runs', name, 'result.png')) == first[name]
    with open(os.path.join(folder, 'scores.csv')) as handle:
        assert sorted(row['name'] for row in csv.DictReader(handle)) == names


def test_a_stop_request_between_runs_ends_the_sweep_with_a_report(tiny_weights_path, tmp_path, monkeypatch,
                                                                  capsys):
    # Ctrl-C arriving while the first configuration saves: the sweep stops before the second
    stop, train_main = threading.Event(), compare.train.main

    def first_then_stop(argv, stop_request):
        code = train_main(argv, stop_request)
        stop.set()
        return code
    monkeypatch.setattr(compare.train, 'main', first_then_stop)
    out = str(tmp_path / 'reports')
    assert compare.main(sweep_args(out, tiny_weights_path), stop) == 130
    folder = os.path.join(out, 'sweep')
    assert os.listdir(os.path.join(folder, 'runs')) == ['weighting=mean_pooling=avg']
    with open(os.path.join(folder, 'scores.csv')) as handle:
        assert [row['name'] for row in csv.DictReader(handle)] == ['weighting=mean_pooling=avg']


def test_a_sweep_ranks_a_generator_against_the_optimisation(tiny_weights_path, tmp_path, capsys):
    out = str(tmp_path / 'reports')
    assert compare.cli(['--image', 'texture1.jpg', '--sweep', 'feed-forward=off,on', '--size', '48',
                        '--iterations', '3', '--layers', 'conv1_1,pool1', '--save-every', '0',
                        '--weights', tiny_weights_path, '--out', out, '--name', 'methods']) == 0, \
        capsys.readouterr().err
    runs = os.path.join(out, 'methods', 'runs')
    modes = {name: json.load(open(os.path.join(runs, name, 'config.json')))['mode'] for name in os.listdir(runs)}
    assert modes == {'feed-forward=off': 'texture', 'feed-forward=on': 'feed-forward'}
    assert os.path.isfile(os.path.join(runs, 'feed-forward=on', 'generator.npz'))
    with open(os.path.join(out, 'methods', 'scores.csv')) as handle:
        assert sorted(row['name'] for row in csv.DictReader(handle)) == sorted(modes)


@pytest.mark.parametrize('args, message', [
    (['--source', 'texture1.jpg'], 'give the result images'),
    (['--source', 'texture1.jpg', 'nowhere.png'], 'image not found: nowhere.png'),
    (['--image', 'texture1.jpg'], 'needs at least one --sweep'),
    (['--image', 'texture1.jpg', '--sweep', 'colour=red'], 'not a train.py option'),
    (['--image', 'texture1.jpg', '--sweep', 'weighting=mean,median'], "invalid choice: 'median'"),
    (['--image', 'texture1.jpg', '--sweep', 'iterations=10,0'], '--iterations must be at least 1'),
    (['--image', 'texture1.jpg', '--sweep', 'output-size=64|100000'], 'output-size=100000: an image of 100000x'),
    (['--image', 'texture1.jpg', '--sweep', 'scales=0.5,1|0.02,1'], 'scales=0.02,1: the output at --scales 0.02'),
    (['texture1.jpg'], 'give --source with result images'),
])
def test_compare_bad_input_is_one_line(tiny_weights_path, tmp_path, args, message):
    result = run_script(args + ['--weights', tiny_weights_path, '--out', str(tmp_path / 'r')], script='compare.py')
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


CHROMIUM = next((path for path in ('/usr/bin/chromium', '/usr/bin/chromium-browser') if os.path.exists(path)), None)


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium to render report.html (apt install chromium)")
def test_report_renders_in_a_headless_browser(candidates, tiny_weights_path, tmp_path, capsys):
    """The page a grader opens: rendered by a real browser, offline, with every row and image."""
    import subprocess
    out = str(tmp_path / 'reports')
    assert compare.cli(['--source', candidates['source'], '--size', '0', candidates['noise'], candidates['crop'],
                        '--weights', tiny_weights_path, '--out', out, '--name', 'page']) == 0
    page = os.path.join(out, 'page', 'report.html')
    dom = subprocess.run([CHROMIUM, '--headless', '--no-sandbox', '--disable-gpu', '--dump-dom',
                          f'file://{page}'], capture_output=True, text=True, timeout=120).stdout
    assert dom.count('<tr') == 3 and dom.count('class="COPY"') == 1  # header, noise, and the flagged crop
    assert dom.count('<img') == 3  # the source and two results (no loss curves when scoring)
    assert 'scored against' in dom and 'Made ' in dom
    # Sorting, in the real browser: click the name heading (ascending), then swd twice (descending).
    clicked = os.path.join(out, 'page', 'clicked.html')
    heading = "Array.from(document.querySelectorAll('th')).find(function (h) { return h.textContent === '%s'; })"
    with open(clicked, 'w') as handle:
        handle.write(open(page).read().replace('</body>', '<script>' + (heading % 'name') + '.click();</script></body>'))
    dom = subprocess.run([CHROMIUM, '--headless', '--no-sandbox', '--disable-gpu', '--dump-dom',
                          f'file://{clicked}'], capture_output=True, text=True, timeout=120).stdout
    names = re.findall(r'<td class="text">(crop|noise)</td>', dom)
    assert names == ['crop', 'noise'], names
    with open(clicked, 'w') as handle:
        handle.write(open(page).read().replace(
            '</body>', '<script>var h = ' + (heading % 'name') + '; h.click(); h.click();</script></body>'))
    dom = subprocess.run([CHROMIUM, '--headless', '--no-sandbox', '--disable-gpu', '--dump-dom',
                          f'file://{clicked}'], capture_output=True, text=True, timeout=120).stdout
    assert re.findall(r'<td class="text">(crop|noise)</td>', dom) == ['noise', 'crop']
