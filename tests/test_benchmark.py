"""benchmark.py's arithmetic (the benchmark itself is a script, not a test)."""
import benchmark


def test_seconds_to_is_the_first_time_at_or_below_the_loss():
    row = {'curve': [(1.0, 9.0), (2.0, 5.0), (3.0, 4.0), (4.0, 3.0)]}
    assert benchmark.seconds_to(row, 5.0) == 2.0
    assert benchmark.seconds_to(row, 3.5) == 4.0
    assert benchmark.seconds_to(row, 1.0) is None


def test_median_speedup_ranks_never_reached_as_slowest():
    assert benchmark.median_speedup([5.43, None, 6.63, 5.41]) == (5.41 + 5.43) / 2
    assert benchmark.median_speedup([3.0, 1.0, 2.0]) == 2.0
    assert benchmark.median_speedup([None, None, 3.0, 4.0]) is None  # the middle includes a texture that never got there
    assert benchmark.median_speedup([None]) is None


def test_texture_name_keeps_results_inside_the_output_folder():
    # A path used to name files like /elsewhere/pebbles-256-default.png, beside the source.
    assert benchmark.texture_name('/data/textures/pebbles.jpg') == 'pebbles'
    assert benchmark.texture_name('texture1.jpg') == 'texture1'


def test_an_interrupted_benchmark_reports_the_runs_it_finished(tmp_path, monkeypatch, capsys):
    # Ctrl-C during the third run (texture2's baseline): texture1's pair is reported and
    # saved; texture2 has no finished baseline, so nothing of it is.
    import json
    import numpy as np
    import utils

    def fake_run(image, size, options, name, out):
        if image == 'texture2.jpg':
            raise KeyboardInterrupt
        result = str(tmp_path / f'{name}.png')
        utils.save_image(np.full((8, 8, 3), 0.5, np.float32), result)
        total = 10.0 if name.endswith('baseline') else 4.0
        return {'name': name, 'image': image, 'size': size, 'total_s': total, 'final_loss': 1.0,
                'curve': [(total / 2, 2.0), (total, 1.0)], 'result': result, 'peak_rss_mb': 1}

    def fake_scores(rows):
        for row in rows:
            row.update(swd=1.0, layout=0.1, layout_limit=0.25)
        return {(row['image'], row['size']): np.zeros((8, 8, 3), np.float32) for row in rows}
    monkeypatch.setattr(benchmark, 'run_one', fake_run)
    monkeypatch.setattr(benchmark, 'score_rows', fake_scores)
    code = benchmark.main(['--images', 'texture1.jpg', 'texture2.jpg', '--out', str(tmp_path)])
    assert code == 130
    assert 'interrupted: reporting the 2 finished runs' in capsys.readouterr().err
    saved = json.loads((tmp_path / 'benchmark.json').read_text())
    assert [row['name'] for row in saved['rows']] == ['texture1-256-baseline', 'texture1-256-default']
    assert saved['rows'][1]['speedup'] == 10.0 / 4.0
    assert (tmp_path / 'texture1-256.png').exists() and not (tmp_path / 'texture2-256.png').exists()
