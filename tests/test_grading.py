"""Grading a class: copies caught at every scale, new textures not flagged, folders of
submissions, the scale each is scored at, and a CSV that leads with what a grader reads."""
import csv
import json
import os

import numpy as np
import pytest
from PIL import Image, ImageFilter

import compare
import grading
import scores
from conftest import ROOT, real_weights_path
import utils
from utils import load_image, save_image

FACTORS = (0.25, 0.4, 0.6, 1.0, 1.7, 2.5, 4.0)


def resized(image, factor):
    height, width = (max(8, round(side * factor)) for side in image.shape[:2])
    return np.asarray(Image.fromarray((image * 255).astype(np.uint8)).resize((width, height), Image.LANCZOS),
                      np.float32) / 255


def blurred(image):
    return np.asarray(Image.fromarray((image * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(1)),
                      np.float32) / 255


COPIES = {
    'the source': lambda s: s,
    'a crop': lambda s: s[20:200, 30:230],
    'a cyclic shift': lambda s: np.roll(s, (70, 31), (0, 1)),
    'flipped': lambda s: s[::-1],
    'mirrored': lambda s: s[:, ::-1],
    'turned 90 degrees': lambda s: np.rot90(s),
    'colour-jittered': lambda s: np.clip(s * np.float32([1.15, 0.9, 1.05]) + 0.04, 0, 1),
    'slightly blurred': blurred,
    'a crop of the source upscaled 2x': lambda s: resized(s, 2)[40:200, 60:220],
}


# texture2 (fine gravel: its thumbnails decorrelate at small scale errors) and texture4 (large
# smooth cells: the highest layout scores by chance) are the hardest cases measured.
@pytest.fixture(scope='module', params=['texture2.jpg', 'texture4.jpg'])
def source(request):
    return load_image(os.path.join(ROOT, 'images', request.param), 256)


@pytest.mark.parametrize('copy', list(COPIES))
def test_copies_are_caught_at_every_scale(source, copy):
    """Each kind of copy, resized by 0.25x to 4x, lines up with the source at one of the scales searched."""
    for factor in FACTORS:
        made = resized(COPIES[copy](source), factor)
        if min(made.shape[:2]) < 16:
            continue
        if 'upscaled' in copy and factor > 2:
            continue  # 4x of that is a crop of the source at over 4x: beyond the search
        search = scores.copy_search(made, source)
        assert search['copy_layout'] >= grading.COPY_LAYOUT, (copy, factor, search)


def test_a_copy_search_reports_the_scale_and_finds_the_patches(source):
    search = scores.copy_search(resized(np.rot90(source), 0.5), source)
    assert search['copy_scale'] == pytest.approx(0.5) and search['copy_layout'] > 0.9
    assert search['copy_patch'] < grading.COPY_PATCH


def test_textures_without_the_source_arrangement_are_not_flagged_at_any_scale(source):
    """Random-phase samples (the source's spectrum and colours, none of its arrangement) at every
    scale: what a new texture shares with the source, at the least."""
    for factor in FACTORS:
        for seed in range(3):
            sample = scores.random_phase(resized(source, factor), resized(source, factor).shape[:2], seed=seed)
            search = scores.copy_search(sample, source)
            assert search['copy_layout'] < grading.COPY_LAYOUT, (factor, seed, search)


def collage(image, piece, seed=0):
    """The image cut into piece x piece squares, shuffled and put together again."""
    rows, columns = image.shape[0] // piece, image.shape[1] // piece
    pieces = [image[r * piece:(r + 1) * piece, c * piece:(c + 1) * piece] for r in range(rows) for c in range(columns)]
    order = np.random.default_rng(seed).permutation(len(pieces))
    return np.concatenate([np.concatenate([pieces[i] for i in order[r * columns:(r + 1) * columns]], 1)
                           for r in range(rows)], 0)


@pytest.mark.parametrize('piece', [16, 32, 64])
def test_a_collage_of_the_source_is_a_copy(source, piece):
    """Pieces of the source shuffled line up nowhere, but most of their patches are the source's."""
    search = scores.copy_search(collage(source, piece), source)
    assert search['copy_layout'] < grading.COPY_LAYOUT  # what the layout alone missed
    assert search['copy_share'] >= grading.COPY_SHARE, search
    row = {'copy': True, **search}
    assert grading.verdict(row)[0] == 'COPY' and 'pieces of the source' in grading.verdict(row)[1]


def test_the_copied_share_counts_textured_patches_found_exactly():
    rng = np.random.default_rng(0)
    source = rng.uniform(0, 1, (64, 64, 3)).astype(np.float32)
    half = np.concatenate([source[:, :32], rng.uniform(0, 1, (64, 32, 3)).astype(np.float32)], 1)
    share = scores.copied_share(*scores.nearest_patch_distances(half, source, queries=4096))
    inside = (32 - scores.PATCH_SIZE + 1) / (64 - scores.PATCH_SIZE + 1)  # patches wholly in the copied half
    assert share == pytest.approx(inside, abs=0.05)
    assert scores.copied_share(*scores.nearest_patch_distances(rng.uniform(0, 1, (64, 64, 3)), source)) == 0
    flat = np.full((64, 64, 3), 0.5, np.float32)
    flat_source = flat.copy()
    flat_source[:8] = source[:8]
    assert scores.copied_share(*scores.nearest_patch_distances(flat, flat_source)) == 0  # plain patches do not count


@pytest.mark.skipif(real_weights_path() is None,
                    reason="real VGG16 weights absent: run 'python weights.py' to fetch them (CI does)")
@pytest.mark.parametrize('size', [128, 256])
def test_real_syntheses_at_other_scales_are_not_copies(size, tmp_path, capsys):
    import train
    code = train.cli(['--image', 'texture4.jpg', '--size', str(size), '--out', str(tmp_path), '--name', 'run',
                      '--save-every', '0'])
    assert code == 0, capsys.readouterr().err
    result = load_image(str(tmp_path / 'run' / 'result.png'))
    source = load_image(os.path.join(ROOT, 'images', 'texture4.jpg'), 256)
    search = scores.copy_search(result, source)
    assert search['copy_layout'] < grading.COPY_LAYOUT and search['copy_patch'] > grading.COPY_PATCH, search
    assert search['copy_share'] < grading.COPY_SHARE, search


# ---------------------------------------------------------------- a class on disk

@pytest.fixture
def classroom(tmp_path):
    """submissions/: alice/ (a run folder made at --size 128), bob.png (a copy of the source at half
    size), carol/ (two images), notes.txt, dave/ (nothing in it)."""
    source = load_image(os.path.join(ROOT, 'images', 'texture1.jpg'), 64)
    folder = tmp_path / 'submissions'
    (folder / 'alice').mkdir(parents=True)
    rng = np.random.default_rng(0)
    save_image(rng.uniform(0, 1, (32, 32, 3)), str(folder / 'alice' / 'result.png'))
    json.dump({'mode': 'texture', 'size': 32, 'image': 'texture1.jpg'}, open(folder / 'alice' / 'config.json', 'w'))
    save_image(resized(source, 0.5), str(folder / 'bob.png'))
    (folder / 'carol').mkdir()
    save_image(np.roll(source, 9, 0), str(folder / 'carol' / 'first.png'))
    save_image(rng.uniform(0, 1, (64, 64, 3)), str(folder / 'carol' / 'second.png'))
    (folder / 'notes.txt').write_text('not an image')
    (folder / 'dave').mkdir()
    return folder


def test_folders_of_submissions_are_found_and_named(classroom):
    found, skipped = grading.find_submissions([str(classroom)])
    assert [s['name'] for s in found] == ['alice', 'bob', 'carol/first', 'carol/second']
    assert found[0]['config']['size'] == 32 and found[1]['config'] is None
    assert sorted(os.path.basename(path) for path, _ in skipped) == ['dave', 'notes.txt']


def test_a_run_folder_given_is_one_submission_and_sample_sheets_are_skipped(classroom):
    """A run folder named on the command line is its result, not its loss.png and comparison.png
    too; sample.py's contact sheet holds the source, so as a result it would be a 'copy'."""
    alice = classroom / 'alice'
    save_image(np.zeros((32, 48, 3)), str(alice / 'loss.png'))
    found, skipped = grading.find_submissions([str(alice)])
    assert [(s['name'], os.path.basename(s['path'])) for s in found] == [('alice', 'result.png')] and not skipped
    samples = classroom / 'samples'
    samples.mkdir()
    for name in ('sample_64x64_seed0.png', 'sample_64x64_seed1.png', 'sheet_64x64_seed0-1.png'):
        save_image(np.zeros((64, 64, 3)), str(samples / name))
    found, skipped = grading.find_submissions([str(samples), str(samples / 'sheet_64x64_seed0-1.png')])
    assert [s['name'] for s in found] == ['sample_64x64_seed0', 'sample_64x64_seed1']
    assert [os.path.basename(path) for path, _ in skipped] == ['sheet_64x64_seed0-1.png'] * 2
    assert "sample.py's contact sheet" in skipped[0][1]


def test_a_class_is_graded_in_one_command(classroom, tiny_weights_path, tmp_path, capsys):
    out = str(tmp_path / 'reports')
    code = compare.cli(['--source', 'texture1.jpg', '--size', '64', str(classroom), '--weights', tiny_weights_path,
                        '--out', out, '--name', 'class'])
    err = capsys.readouterr().err
    assert code == 0, err
    assert 'skipped' in err and 'notes.txt' in err and 'Traceback' not in err
    assert 'scale? bob' not in err  # 32 px with no config.json, but a copy: the verdict says COPY, not scale?
    with open(os.path.join(out, 'class', 'scores.csv')) as handle:
        reader = csv.DictReader(handle)
        rows = {row['name']: row for row in reader}
        header = reader.fieldnames
    assert header[:4] == ['rank', 'name', 'verdict', 'reason'] and header[4] == 'swd'
    assert header.index('path') < header.index('gram_conv1_1')  # per-layer columns come last
    assert rows['alice']['scale'] == '32' and rows['alice']['scale_from'] == 'config.json'
    assert rows['carol/second']['scale'] == '64' and rows['carol/second']['scale_from'] == '--size'
    assert rows['bob']['verdict'] == 'COPY' and rows['carol/first']['verdict'] == 'COPY'
    assert rows['carol/second']['verdict'] in ('ok', 'look')
    page = open(os.path.join(out, 'class', 'report.html')).read()
    assert 'Rows in red' in page and 'carol/first' in page


def test_a_manifest_grades_an_assignment_of_several_sources(classroom, tiny_weights_path, tmp_path, capsys):
    """A manifest of submission,source rows: each submission against its own source, a report per
    source, and one class sheet; a missing submission and a non-image are skipped, not an abort."""
    erin = load_image(os.path.join(ROOT, 'images', 'texture2.jpg'), 64)
    save_image(np.flip(erin, 1), str(classroom / 'erin.png'))  # a mirrored copy of texture2
    save_image(np.random.default_rng(2).uniform(0, 1, (64, 64, 3)), str(classroom / 'frank.png'))
    (tmp_path / 'class.csv').write_text('\ufeffSubmission , Source,comment\n'
                                        'submissions/alice,texture1.jpg,made with --size 32\n'
                                        'submissions/bob.png,texture1.jpg\n'
                                        'submissions/carol,texture1.jpg\n\n'
                                        'submissions/erin.png,texture2.jpg\n'
                                        'submissions/frank.png,texture2.jpg\n'
                                        'submissions/gina,texture1.jpg\n'
                                        'submissions/notes.txt,texture1.jpg\n')
    out = str(tmp_path / 'reports')
    code = compare.cli(['--manifest', str(tmp_path / 'class.csv'), '--size', '64', '--weights', tiny_weights_path,
                        '--out', out, '--name', 'class'])
    err = capsys.readouterr().err
    assert code == 0, err
    assert 'Traceback' not in err and 'gina not found' in err and 'notes.txt' in err
    with open(os.path.join(out, 'class', 'scores.csv')) as handle:
        reader = csv.DictReader(handle)
        sheet = list(reader)
    assert reader.fieldnames[:4] == ['source', 'rank', 'name', 'verdict']
    by_name = {row['name']: row for row in sheet}
    assert sorted(by_name) == ['alice', 'bob', 'carol/first', 'carol/second', 'erin', 'frank']
    assert {row['source'] for row in sheet if row['name'] in ('erin', 'frank')} == {'texture2.jpg'}
    assert by_name['erin']['verdict'] == 'COPY' and by_name['bob']['verdict'] == 'COPY'
    assert by_name['frank']['verdict'] in ('ok', 'look') and by_name['frank']['rank'] == '1'  # ranked within its source
    assert by_name['alice']['scale'] == '32' and by_name['frank']['scale'] == '64'
    for stem, count in (('texture1', 4), ('texture2', 2)):
        with open(os.path.join(out, 'class', stem, 'scores.csv')) as handle:
            assert len(list(csv.DictReader(handle))) == count
        assert os.path.isfile(os.path.join(out, 'class', stem, 'report.html'))
    page = open(os.path.join(out, 'class', 'report.html')).read()
    assert 'href="texture2/report.html"' in page and 'href="../../submissions/erin.png"' in page
    assert 'submissions/erin.png' in page and 'gina not found' in page


@pytest.mark.parametrize('manifest, words', [
    ('name,file\nalice,a.png\n', 'needs a header row with the columns submission,source'),
    ('', 'needs a header row'),
    ('submission,source\nsubmissions/bob.png,no-such-texture.jpg\n', 'row 2: source image not found'),
    ('submission,source\nsubmissions/nobody.png,texture1.jpg\n', 'no image to score in the manifest'),
])
def test_a_bad_manifest_is_one_line(classroom, tiny_weights_path, tmp_path, capsys, manifest, words):
    (tmp_path / 'class.csv').write_text(manifest)
    out = tmp_path / 'reports'
    code = compare.cli(['--manifest', str(tmp_path / 'class.csv'), '--weights', tiny_weights_path, '--out', str(out)])
    err = capsys.readouterr().err
    assert code == 2 and words in err and 'Traceback' not in err, err
    assert not out.exists()


def test_a_missing_manifest_and_mixed_modes_are_refused(capsys):
    assert compare.cli(['--manifest', 'nowhere.csv']) == 2
    assert 'manifest not found: nowhere.csv' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        compare.parse_args(['--manifest', 'class.csv', '--source', 'texture1.jpg', 'a.png'])
    with pytest.raises(SystemExit):
        compare.parse_args(['--manifest', 'class.csv', 'a.png'])


def test_the_same_image_is_scored_at_the_scale_it_was_made_at(tiny_weights_path, tmp_path, capsys):
    """One image, in a run folder saying --size 32 and loose: the stated scale differs, and with
    the config the scores are those of the source at 32 px whatever --size says."""
    image = np.random.default_rng(1).uniform(0, 1, (32, 32, 3))
    with_config, loose = tmp_path / 'run', tmp_path / 'loose'
    with_config.mkdir()
    loose.mkdir()
    save_image(image, str(with_config / 'result.png'))
    save_image(image, str(loose / 'result.png'))
    json.dump({'size': 32}, open(with_config / 'config.json', 'w'))
    swd = {}
    for size in ('32', '256'):
        out = str(tmp_path / f'reports{size}')
        assert compare.cli(['--source', 'texture1.jpg', '--size', size, str(with_config / 'result.png'),
                            str(loose / 'result.png'), '--weights', tiny_weights_path, '--out', out,
                            '--name', 'r']) == 0
        with open(os.path.join(out, 'r', 'scores.csv')) as handle:
            rows = {row['name']: row for row in csv.DictReader(handle)}
        swd[size] = float(rows['run/result']['swd'])
        assert rows['run/result']['scale'] == '32' and rows['loose/result']['scale'] == size
    assert swd['32'] == pytest.approx(swd['256'])
    assert 'scale? loose/result' in capsys.readouterr().err  # at --size 256 a 32 px result does not fit


# ---------------------------------------------------------------- --reference

def test_a_position_runs_from_noise_to_the_reference_on_a_log_scale():
    import reference
    assert reference.position(1e4, 1e4, 10) == pytest.approx(0)
    assert reference.position(10, 1e4, 10) == pytest.approx(1)
    assert reference.position(100, 1e4, 10) == pytest.approx(2 / 3)
    assert reference.position(1, 1e4, 10) > 1                      # better than the reference
    assert reference.position(5, 10, 10) is None                   # a reference no better than noise


def test_the_reference_is_made_once_per_source_and_scale(tmp_path, monkeypatch):
    import types
    import reference
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'cache'))
    calls = []

    def make(argv):
        calls.append(argv)
        return types.SimpleNamespace(status='finished', image=np.full((32, 32, 3), 0.5, np.float32))
    source = os.path.join(ROOT, 'images', 'texture1.jpg')
    first = reference.reference_image(source, 32, make=make)
    again = reference.reference_image(source, 32, make=make)
    other = reference.reference_image(source, 64, make=make)
    assert len(calls) == 2 and calls[0][calls[0].index('--size') + 1] == '32'
    assert np.allclose(first, again) and other.shape == (32, 32, 3)
    assert os.path.isfile(reference.cache_path(source, 32))
    failed = lambda argv: types.SimpleNamespace(status='interrupted', image=None)  # noqa: E731
    with pytest.raises(utils.InputError, match='did not finish'):
        reference.reference_image(source, 16, make=failed)


def test_compare_with_a_reference_places_every_result(tiny_weights_path, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'cache'))
    folder = tmp_path / 'class'
    folder.mkdir()
    source = load_image(os.path.join(ROOT, 'images', 'texture1.jpg'), 64)
    save_image(np.random.default_rng(1).uniform(0, 1, source.shape), str(folder / 'noise.png'))
    save_image(np.roll(source, 20, 1)[:, ::-1], str(folder / 'copy.png'))
    args = ['--source', 'texture1.jpg', '--size', '64', str(folder), '--weights', tiny_weights_path,
            '--out', str(tmp_path / 'reports'), '--name', 'ref', '--reference']
    assert compare.cli(args) == 0
    err = capsys.readouterr().err
    assert "reference: train.py's defaults on texture1.jpg at 64 px" in err
    with open(tmp_path / 'reports' / 'ref' / 'scores.csv') as handle:
        rows = {row['name']: row for row in csv.DictReader(handle)}
    assert abs(float(rows['noise']['swd_vs_reference'])) < 0.2           # other noise: about 0
    assert float(rows['copy']['swd_vs_reference']) > 0.5
    page = open(tmp_path / 'reports' / 'ref' / 'report.html').read()
    assert 'swd vs ref.' in page and 'Between noise (0) and the reference (1)' in page
    assert compare.cli(args) == 0
    assert 'reference:' not in capsys.readouterr().err                  # cached the second time
