"""Grading textures against their source: finding a class's submissions, the scale each was made
at, every score of each, copies at any scale, and a verdict a grader can act on.

    submissions, skipped = find_submissions(['submissions/', 'extra.png'])
    rows = grade(network_weights, submissions, source_path, size=256)   # best first

Every score compares statistics, not pixels at the same place, so results of any
size score against the source; but VGG16's features, and so the Gram and SWD
scores, depend on the scale the source is seen at. Each result is scored against
the source at the scale it was made at: its run's config.json when it has one,
else --size, and a result whose size does not fit that scale is marked.
"""
import csv
import json
import os
import re

import numpy as np

import layers
import scores
import utils
from utils import InputError, quiet_stderr

GRAM_LAYERS = layers.GRAM_LAYERS                                  # the course's objective, mean
SWD_LAYERS = ('conv1_1', 'conv2_1', 'conv3_1', 'conv4_1', 'conv5_1')  # the first of each block
# A result is a copy of the source when, at some scale from 0.25x to 4x, its thumbnail lines up
# with the source's (new textures and random-phase noise measured up to 0.61, copies 0.78-1.0:
# docs/benchmarks.md), or when its patches are nearly all found in the source (a crop).
COPY_LAYOUT = 0.75
COPY_PATCH = 0.02
# ...or when this share of its textured patches is in the source pixel for pixel: a collage of the
# source's pieces, which lines up nowhere (train.py's results: 0.00; collages of 16-64 px pieces
# 0.48-0.91: docs/benchmarks.md).
COPY_SHARE = 0.3
# A result without a config.json whose shorter side is under this share of the scaled source's
# was probably made at another --size: its scores would be ranked by size, not quality.
SCALE_FIT = 0.75
SCORES = ('gram', 'swd', 'colour', 'spectral', 'patch', 'layout')
VERDICTS = ('ok', 'look', 'scale?', 'COPY')
EXPLANATIONS = {
    'gram': 'Gram distance on VGG16 features, mean over the 13 conv layers; lower is better. It is the '
            'training objective, so it flatters the optimiser that minimised it; blind to arrangement.',
    'swd': 'sliced-Wasserstein distance between VGG16 feature distributions (Heitz et al. 2021), mean '
           'over conv1_1..conv5_1, fixed projections; lower is better; ranks the table. Blind to arrangement.',
    'colour': 'per-channel 1-D Wasserstein distance between pixel colours; lower is better. '
              'Blind to everything but the colour histogram.',
    'spectral': 'distance between log radially averaged power spectra; lower is better. Sees scale '
                'and periodic structure that Grams miss; blind to colour and orientation.',
    'patch': "mean distance of the result's 8x8 patches to the nearest source patch, relative to the "
             'source variance, at the scale and turn where the result lines up best with the source; '
             'near 0 means copied pixels. Not a quality score: blurry copies score higher.',
    'layout': "best correlation of 32 px thumbnails over cyclic shifts, flips and transposes, at the "
              'scale the result is scored at: about 0.1-0.45 for a new texture (smooth textures score '
              'more by chance), 1.0 for the source itself; high means the layout was copied.',
    'layout_limit': 'what a new texture of this source should stay under at this size: 0.25, or the '
                    '90th percentile of random-phase samples (its spectrum, no arrangement) where that is '
                    'higher, which it is for smooth textures and small results. Over it: "look".',
    'copy_layout': 'the best layout score over scales from 0.25x to 4x: a copy resized by any factor '
                   f'lines up at one of them; at {COPY_LAYOUT} or more: COPY.',
    'copy_share': "the share of the result's textured 8x8 patches found in the source pixel for pixel; "
                  f'about 0 for a new texture, the share inside the pieces for a collage of the source; '
                  f'at {COPY_SHARE} or more: COPY.',
    'verdict': 'ok; look (layout over its limit: open the image); scale? (the result does not fit the '
               'scale it is scored at); COPY (the source, resized, cropped, turned or recoloured, or a collage of its pieces: ranked last)',
    'scale': "the source's shorter side in px the result is scored at, and where that came from: the "
             "result's config.json (the size it was made at) or --size",
    'source': "with --manifest: the texture the submission was made from; ranks are within each source, "
              'since scores of different textures do not compare',
    'swd_vs_reference': "with --reference: where the result's swd (gram, colour, spectral) sits between uniform "
                    "noise (0) and train.py's defaults on this source at this scale (1), on a log scale; "
                    "over 1 is better than the tool's own texture",
}
IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.gif', '.tif', '.tiff', '.webp', '.ppm', '.pgm')
# sample.py's contact sheet beside the samples it writes: the source is in it, so scored as a
# result it would be flagged a copy. Skipped, with a line.
SAMPLE_SHEET = re.compile(r'sheet_\d+x\d+_seed\d+-\d+\.png')


# ---------------------------------------------------------------- submissions

def find_submissions(paths):
    """(submissions, skipped) for result images and folders of them.

    A file is one submission, named by its stem. A folder holds one submission per sub-folder
    (named by it: its result.png, or its only image, or each image as 'folder/stem') and per
    image file in it (named by its stem); a folder with a result.png (a train.py run folder) is
    one submission itself. Files that are not images are skipped with a reason,
    not an abort: [(path, why)]. Submissions: [{'name', 'path', 'config'}], the config being the
    run's config.json beside the image, when there is one.
    """
    found, skipped = [], []
    for path in paths:
        if os.path.isdir(path) and os.path.isfile(os.path.join(path, 'result.png')):  # not its loss.png too
            found += folder_submission(path, os.path.basename(os.path.abspath(path)), skipped)
        elif os.path.isdir(path):
            for entry in sorted(os.listdir(path)):
                if entry.startswith('.'):
                    continue
                full = os.path.join(path, entry)
                if os.path.isdir(full):
                    found += folder_submission(full, entry, skipped)
                else:
                    found += image_submission(full, os.path.splitext(entry)[0], skipped)
        else:
            found += image_submission(utils.find_image(path), None, skipped)
    names = [submission['name'] for submission in found]
    if len(set(names)) < len(names):  # runs/*/result.png given one by one: name them by their folder
        for submission in found:
            folder = os.path.basename(os.path.dirname(os.path.abspath(submission['path'])))
            submission['name'] = f"{folder}/{submission['name']}"
    return found, skipped


MANIFEST_COLUMNS = ('submission', 'source')


def read_manifest(path):
    """A whole assignment from one CSV of `submission,source` rows (more columns are ignored):
    ({source path: [submission]}, skipped), sources in the order they first appear.

    Each submission is one student's: an image, or a folder (its result.png, or its only
    image, or each image as 'folder/stem'), named by its file's stem or the folder's name.
    Paths are relative to the manifest's folder; a source may also be a shipped texture's
    name. A submission that is missing or not an image is skipped with its row number, as
    find_submissions skips non-images; a source that cannot be found is an InputError (every
    result of that source would be scored against nothing).
    """
    base = os.path.dirname(os.path.abspath(path))
    try:
        with open(path, newline='', encoding='utf-8-sig') as handle:  # -sig: spreadsheets' byte-order mark
            table = list(csv.reader(handle))
    except FileNotFoundError:
        raise InputError(f"manifest not found: {path}") from None
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise InputError(f"cannot read the manifest {path}: {getattr(error, 'strerror', None) or error}") from None
    table = [row for row in table if any(cell.strip() for cell in row)]
    header = [cell.strip().lower() for cell in table[0]] if table else []
    if any(column not in header for column in MANIFEST_COLUMNS):
        raise InputError(f"the manifest {path} needs a header row with the columns submission,source "
                         f"(found: {','.join(header) or 'nothing'})")
    where = {column: header.index(column) for column in MANIFEST_COLUMNS}
    by_source, skipped, sources = {}, [], {}
    for number, row in enumerate(table[1:], 2):
        cells = {column: (row[index].strip() if index < len(row) else '') for column, index in where.items()}
        if not cells['submission'] or not cells['source']:
            skipped.append((f"{path} row {number}", 'it needs both a submission and a source'))
            continue
        if cells['source'] not in sources:
            given = os.path.join(base, cells['source'])
            try:
                sources[cells['source']] = given if os.path.isfile(given) else utils.find_image(cells['source'])
            except InputError as error:
                raise InputError(f"{path} row {number}: source {error}") from None
        submission = os.path.join(base, cells['submission'])
        name = os.path.splitext(os.path.basename(os.path.normpath(cells['submission'])))[0]
        if os.path.isdir(submission):
            found = folder_submission(submission, name, skipped)
        elif os.path.isfile(submission):
            found = image_submission(submission, name, skipped)
        else:
            skipped.append((f"{path} row {number}", f"{cells['submission']} not found"))
            continue
        by_source.setdefault(sources[cells['source']], []).extend(found)
    for submissions in by_source.values():
        names = [submission['name'] for submission in submissions]
        if len(set(names)) < len(names):  # two folders of the same name: name them by their paths
            for submission in submissions:
                submission['name'] = os.path.relpath(submission['path'], base)
    return by_source, skipped


def folder_submission(folder, name, skipped):
    images = [entry for entry in sorted(os.listdir(folder)) if entry.lower().endswith(IMAGE_EXTENSIONS)
              and os.path.isfile(os.path.join(folder, entry))]
    if 'result.png' in images:
        images = ['result.png']
    if not images:
        skipped.append((folder, 'no image in it'))
        return []
    if len(images) == 1:
        return image_submission(os.path.join(folder, images[0]), name, skipped)
    found = []
    for entry in images:
        found += image_submission(os.path.join(folder, entry), f'{name}/{os.path.splitext(entry)[0]}', skipped)
    return found


def image_submission(path, name, skipped):
    if SAMPLE_SHEET.fullmatch(os.path.basename(path)):
        skipped.append((path, "sample.py's contact sheet (the source beside the samples), not a result"))
        return []
    try:
        utils.image_shape(path)
    except InputError as error:
        skipped.append((path, str(error)))
        return []
    return [{'name': name or os.path.splitext(os.path.basename(path))[0], 'path': path,
             'config': run_config(os.path.dirname(os.path.abspath(path)))}]


def run_config(folder):
    """The train.py config.json in `folder`, if it is one (a dict with the source's 'size'), else None."""
    try:
        with open(os.path.join(folder, 'config.json')) as handle:
            config = json.load(handle)
    except (OSError, ValueError):
        return None
    return config if isinstance(config, dict) and isinstance(config.get('size'), int) else None


def scale_of(submission, size):
    """(the source's shorter side to score at, or 0 for its own size; where that came from)."""
    if submission['config'] is not None:
        return submission['config']['size'], 'config.json'
    return size, '--size' if size else 'own size'


def scale_problem(result_shape, source_shape, scale_from):
    """Why the result does not fit the scale it is scored at, or None."""
    if scale_from == 'config.json' or min(result_shape) >= SCALE_FIT * min(source_shape):
        return None
    return (f"the result is {result_shape[1]}x{result_shape[0]} px, smaller than the source at this scale "
            f"({source_shape[1]}x{source_shape[0]} px), and has no config.json: made at another --size? "
            "Score it with that --size, or put its run's config.json beside it")


# ---------------------------------------------------------------- scores

def vgg_features(network_weights, images, layer_names):
    """[{layer: [H, W, N] features}] for each image: one graph, images of any size."""
    with quiet_stderr():  # TensorFlow's start-up chatter
        import tensorflow as tf

        import synthesize
        import vgg16
    graph = tf.Graph()
    with graph.as_default():
        placeholder = tf.compat.v1.placeholder(tf.float32, [1, None, None, 3])
        model = vgg16.Vgg16(network_weights).build(placeholder, vgg16.deepest(layer_names))
        fetches = {layer: getattr(model, layer) for layer in layer_names}
        with quiet_stderr(), tf.compat.v1.Session(graph=graph, config=synthesize.session_config()) as session:
            return [{layer: value[0] for layer, value in session.run(fetches, {placeholder: image[None]}).items()}
                    for image in images]


def score(result, source, result_features, source_features):
    """Every score of one result against its source, per layer too; see EXPLANATIONS."""
    row = {}
    for layer in GRAM_LAYERS:
        row[f'gram_{layer}'] = scores.gram_distance(result_features[layer], source_features[layer])
    for layer in SWD_LAYERS:
        row[f'swd_{layer}'] = scores.sliced_wasserstein(result_features[layer], source_features[layer])
    row['gram'] = float(np.mean([row[f'gram_{layer}'] for layer in GRAM_LAYERS]))
    row['swd'] = float(np.mean([row[f'swd_{layer}'] for layer in SWD_LAYERS]))
    row['colour'] = scores.colour_distance(result, source)
    row['spectral'] = scores.spectral_distance(result, source)
    row['layout'] = scores.layout_score(result, source)
    row['layout_limit'] = scores.layout_limit(source, result.shape[:2])
    search = scores.copy_search(result, source)
    row.update(search, patch=search['copy_patch'])
    row['copy'] = bool(search['copy_layout'] >= COPY_LAYOUT or search['copy_patch'] <= COPY_PATCH
                       or search['copy_share'] >= COPY_SHARE)
    return row


def check_scoring_size(shape, what):
    """InputError for an image too small for the scores' deepest layer, or too large for the free
    memory (its VGG16 features are computed whole), before it is loaded."""
    import options
    needed = layers.min_input_size(layers.deepest(GRAM_LAYERS))
    if min(shape) < needed:
        raise InputError(f"{what} is {shape[1]}x{shape[0]} px: scores need at least {needed} px per side")
    options.check_memory(shape, 'gram', 'float32', GRAM_LAYERS, '--size')


def score_all(network_weights, pairs, stop=None):
    """pairs: [(result, source)] -> [score row]; each distinct source goes through VGG16 once.
    A stop request (Ctrl-C) ends it between two results, as KeyboardInterrupt."""
    sources = {id(source): source for _, source in pairs}
    for result, _ in pairs:
        check_scoring_size(result.shape[:2], 'a result')
    features = vgg_features(network_weights, [r for r, _ in pairs] + list(sources.values()),
                            sorted(set(GRAM_LAYERS + SWD_LAYERS), key=layers.LAYER_NAMES.index))
    source_features = dict(zip(sources, features[len(pairs):]))
    rows = []
    for (result, source), result_features in zip(pairs, features):
        if stop is not None and stop.is_set():
            raise KeyboardInterrupt
        rows.append(score(result, source, result_features, source_features[id(source)]))
    return rows


def verdict(row):
    """(verdict, reason): COPY, 'scale?', 'look' or 'ok', and why, in words a grader can check."""
    if row['copy']:
        if row['copy_patch'] <= COPY_PATCH:
            return 'COPY', f"its patches are the source's (patch {row['copy_patch']:.3f} at {row['copy_scale']:.2g}x)"
        if row['copy_layout'] < COPY_LAYOUT:
            return 'COPY', (f"{row['copy_share']:.0%} of its textured patches are the source's, pixel for pixel: "
                            "pieces of the source put together")
        return 'COPY', (f"it lines up with the source resized {row['copy_scale']:.2g}x "
                        f"(layout {row['copy_layout']:.2f}, a copy at {COPY_LAYOUT} or more)")
    if row.get('scale_problem'):
        return 'scale?', row['scale_problem']
    if row['layout'] > row['layout_limit']:
        return 'look', f"layout {row['layout']:.2f} is over this texture's limit {row['layout_limit']:.2f}: open it"
    return 'ok', ''


def ranked(rows):
    """Best first: copies last whatever their scores, then by sliced-Wasserstein distance."""
    return sorted(rows, key=lambda row: (row.get('copy', True), row.get('swd', np.inf)))


def grade(network_weights, submissions, source_path, size, stop=None, reference=None):
    """Score every submission against the source at its scale: rows, best first, each with its
    name, path, image, size, scale, verdict and reason. With `reference` (a function of the
    source's shorter side giving train.py's texture at that scale: reference.reference_image),
    each row also says where it sits between uniform noise and that texture (reference.py);
    returns (rows, {scale: (noise row, reference row)})."""
    import reference as references
    sources, pairs = {}, []
    for submission in submissions:
        check_scoring_size(utils.image_shape(submission['path']), f"result {submission['path']}")
    for submission in submissions:
        scale, scale_from = scale_of(submission, size)
        if scale not in sources:
            check_scoring_size(utils.image_shape(source_path, scale or None), f'the source at {scale} px')
            sources[scale] = utils.load_image(source_path, scale or None)
        result = utils.load_image(submission['path'])
        pairs.append((result, sources[scale]))
        submission.update(image=result, scale=scale, scale_from=scale_from,
                          scale_problem=scale_problem(result.shape[:2], sources[scale].shape[:2], scale_from))
    anchor_pairs = []
    if reference is not None:
        for source in sources.values():
            side = min(source.shape[:2])
            anchor_pairs += [(side, references.noise_image(source.shape[:2]), source),
                             (side, reference(side), source)]
    rows = score_all(network_weights, pairs + [(image, source) for _, image, source in anchor_pairs], stop)
    rows, anchor_rows = rows[:len(pairs)], rows[len(pairs):]
    anchors = {}
    for (side, _, _), row in zip(anchor_pairs, anchor_rows):
        anchors.setdefault(side, []).append(row)
    for row, submission, (result, source) in zip(rows, submissions, pairs):
        row.update(name=submission['name'], path=os.path.abspath(submission['path']), image=result,
                   width=result.shape[1], height=result.shape[0], scale=min(source.shape[:2]),
                   scale_from=submission['scale_from'], scale_problem=submission['scale_problem'])
        row['verdict'], row['reason'] = verdict(row)
    if reference is None:
        return ranked(rows)
    references.add_positions(rows, anchors)
    return ranked(rows), anchors
