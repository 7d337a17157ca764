"""docs/gram_textures.ipynb runs as a student would run it: every code cell in order, in one
namespace, from docs/, with the real weights (no Jupyter needed: the cells are plain Python)."""
import json
import os
import shutil
import sys

import matplotlib
import numpy as np
import pytest

import weights as vgg_weights
from conftest import ROOT, real_weights_path

NOTEBOOK = os.path.join(ROOT, 'docs', 'gram_textures.ipynb')


def code_cells(path):
    with open(path) as file:
        notebook = json.load(file)
    assert notebook['nbformat'] == 4
    return [''.join(cell['source']) for cell in notebook['cells'] if cell['cell_type'] == 'code']


def test_the_notebook_has_no_stored_outputs_and_no_magics():
    """Outputs would go stale as the code changes; `%` lines would not run outside Jupyter."""
    with open(NOTEBOOK) as file:
        cells = json.load(file)['cells']
    assert all(not cell.get('outputs') for cell in cells if cell['cell_type'] == 'code')
    assert not any(line.lstrip().startswith(('%', '!')) for source in code_cells(NOTEBOOK)
                   for line in source.splitlines())


def test_the_notebook_runs_and_shows_what_it_says(monkeypatch, capsys):
    path = real_weights_path()
    if path is None:
        pytest.skip(f"real VGG16 weights absent: run 'python weights.py' to fetch them "
                    f"into {vgg_weights.cache_path()} (CI does)")
    import matplotlib.pyplot as plt
    previous_backend = matplotlib.get_backend()
    matplotlib.use('svg')  # stands in for Jupyter's inline backend, which shows the figures open at a cell's end
    monkeypatch.setenv(vgg_weights.ENV_VAR, path)
    monkeypatch.chdir(os.path.join(ROOT, 'docs'))
    monkeypatch.setattr(sys, 'path', list(sys.path))
    namespace, figures, backends = {}, [], set()
    try:
        for number, source in enumerate(code_cells(NOTEBOOK), 1):
            exec(compile(source, f'{NOTEBOOK}, code cell {number}', 'exec'), namespace)
            figures.append(len(plt.get_fignums()))
            backends.add(matplotlib.get_backend())
            plt.close('all')
    finally:
        matplotlib.use(previous_backend)
        if 'RUNS' in namespace:
            shutil.rmtree(namespace['RUNS'], ignore_errors=True)
    # The source; conv1_1's maps and Gram; the Gram's properties (printed); the per-layer row; the
    # loss curves; the weightings' row. The toolkit's runs write loss.png without touching the
    # notebook's backend (they once switched it to Agg, and the figures after them vanished).
    assert figures == [1, 1, 0, 1, 1, 1] and backends == {'svg'}
    printed = capsys.readouterr().out
    for claim in ('numpy and losses.gram_matrix agree: True', 'symmetric: True',
                  'unchanged when the positions are shuffled: True'):
        assert claim in printed
    results = list(namespace['up_to'].values()) + list(namespace['weighted'].values())
    assert len(results) == 8 and all(result.status == 'finished' for result in results)
    assert all(result.image.shape == (128, 128, 3) for result in results)
    # Each run got further than its start: the figure shows optimised textures, not noise.
    assert all(result.history[-1]['total'] < 1e-2 * result.history[0]['total'] for result in results)
    assert np.ptp(namespace['up_to']['pool4'].image) > 0.5
