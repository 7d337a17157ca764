"""Compare and grade textures: score results against their source, or run a sweep and score it.

    python compare.py --source texture1.jpg runs/a/result.png runs/b/result.png
    python compare.py --image texture1.jpg --sweep weighting=mean,sum,geometric --iterations 100

Both write one folder under --out with scores.csv, contact_sheet.png (source
first, then the results, best first), report.html (self-contained) and, for a
sweep, loss_curves.png and runs/ (one train.py run folder per configuration).
Rerunning a sweep's command resumes it: finished configurations are kept.
"""
import sys

if __name__ == '__main__':  # Ctrl-C while Python and the modules load: a quiet exit, not a traceback
    import signal
    signal.signal(signal.SIGINT, lambda *_: sys.exit(130))

import contextlib
import csv
import hashlib
import itertools
import json
import math
import os
import shutil
import time

import numpy as np

# No TensorFlow here, so --help and option errors answer at once: vgg_features loads it.
import layers
import report
import scores
import train
import utils
import weights as vgg_weights
from utils import InputError, find_image, load_image, quiet_stderr

OUT = 'reports'
SIZE = train.SIZE   # the source is scaled as train.py scales it
GRAM_LAYERS = layers.GRAM_LAYERS                                  # the course's objective, mean
SWD_LAYERS = ('conv1_1', 'conv2_1', 'conv3_1', 'conv4_1', 'conv5_1')  # the first of each block
# A result is flagged as a copy of the source when its thumbnail lines up with the
# source's (new textures measured 0.11-0.30, copies 0.9-1.0), or when its patches are
# nearly all found in the source (a crop: new textures measured above 0.05).
COPY_LAYOUT = 0.6
COPY_PATCH = 0.02
SCORES = ('gram', 'swd', 'colour', 'spectral', 'patch', 'layout')
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
             'source variance; near 0 means copied pixels. Not a quality score: blurry copies score higher.',
    'layout': "best correlation of 32 px thumbnails over cyclic shifts, flips and transposes: about "
              '0.1-0.45 for a new texture (smooth textures score more by chance), 1.0 for the source '
              'itself; high means the layout was copied.',
    'layout_limit': 'what a new texture of this source should stay under: 0.25, or the 90th percentile '
                    'of random-phase samples (its spectrum, no arrangement) where that is higher. '
                    'Over it: "layout?", look at the result.',
    'copy': f'flagged as a copy of the source: layout >= {COPY_LAYOUT} or patch <= {COPY_PATCH}',
}
DONE = ('finished', 'converged')


def parse_args(argv=None):
    parser = train.OneLineErrors(
        usage='%(prog)s --source SOURCE RESULT [RESULT ...] | --image IMAGE --sweep KEY=V1,V2 [train.py options]',
        description='Score textures against their source (--source, then the result images), or run '
                    'train.py over a grid of settings and score the results (--image with --sweep). '
                    'Other options are passed to train.py for every configuration of a sweep.')
    parser.add_argument('--source', help='the source texture the results were made from')
    parser.add_argument('--image', help="a sweep's source texture (as train.py --image)")
    parser.add_argument('--sweep', action='append', default=[], metavar='KEY=V1,V2',
                        help='a train.py option and its values, e.g. weighting=mean,sum,geometric; '
                             'separate values with | when they contain commas (layers=conv1_1,pool1|all-conv); '
                             'several --sweep give every combination')
    parser.add_argument('--size', type=int, default=None,
                        help="the source's shorter side, as train.py --size made it; 0 keeps it as it is "
                             f'(default: {SIZE}); in a sweep it is passed to train.py')
    parser.add_argument('--out', default=OUT, help='folder for the report folder (default: %(default)s)')
    parser.add_argument('--name', default=None,
                        help='report folder name (default: from the inputs, so the same command '
                             'finds the same folder and a sweep resumes)')
    parser.add_argument('--weights', default=None, help='VGG16 weights file (as train.py --weights)')
    args, rest = parser.parse_known_args(argv)
    if args.name is not None:
        try:
            utils.check_folder_name(args.name)
        except InputError as error:
            parser.error(str(error))
    # Scoring: the rest are result images; a sweep: train.py options.
    args.results, passthrough = ([], rest) if args.image is not None else (rest, [])
    if (args.source is None) == (args.image is None):
        parser.error('give --source with result images to score them, or --image with --sweep to run a sweep')
    if args.source is not None:
        if args.sweep:
            parser.error("--sweep runs train.py from --image, not --source")
        unknown = [item for item in args.results if item.startswith('-')]
        if unknown:
            parser.error(f"unrecognized arguments: {' '.join(unknown)}")
        if not args.results:
            parser.error('give the result images to score after --source')
        args.size = SIZE if args.size is None else args.size
        if args.size < 0:
            parser.error('--size must be 0 or more')
    else:
        if not args.sweep:
            parser.error('--image needs at least one --sweep KEY=V1,V2')
        if args.weights:
            passthrough += ['--weights', args.weights]
        if args.size is not None:
            passthrough += ['--size', str(args.size)]
        try:
            args.configurations = expand_sweeps(args.sweep, passthrough)
        except ValueError as error:
            parser.error(str(error))
        for name, extra in args.configurations:
            # Every configuration must parse, and its sizes suit its layers and the free memory,
            # before the first one runs (its errors are one line).
            resolved = train.parse_args(['--image', args.image] + passthrough + extra)
            if resolved.mode != 'texture':
                parser.error('sweeps compare textures: --content/--style runs cannot be scored against a source')
            try:
                (train.feedforward_job if resolved.feed_forward else train.texture_job)(resolved)
            except InputError as error:
                parser.error(f"{name}: {error}")
        args.passthrough = passthrough
    return args


def expand_sweeps(sweeps, passthrough):
    """['weighting=mean,sum', 'optimizer=lbfgs,adam'] -> [(name, train.py arguments)], every combination."""
    options = train.build_parser()._option_string_actions
    axes = []
    for sweep in sweeps:
        key, equals, values = sweep.partition('=')
        key = key.strip().lstrip('-')
        option = f'--{key}'
        if not equals or not values.strip():
            raise ValueError(f"--sweep must look like KEY=V1,V2, not {sweep!r}")
        if option not in options or key in ('image', 'out', 'name', 'help'):
            raise ValueError(f"--sweep {key}: not a train.py option that can be swept (see train.py --help)")
        if option in passthrough:
            raise ValueError(f"--{key} is both swept and given")
        separator = '|' if '|' in values else ','
        choices = [value.strip() for value in values.split(separator) if value.strip()]
        if not choices:
            raise ValueError(f"--sweep {key}: no values in {values!r}")
        if len(set(choices)) != len(choices):
            raise ValueError(f"--sweep {key}: a value is repeated")
        if options[option].nargs == 0 and not set(choices) <= set(SWITCH_VALUES):
            raise ValueError(f"--sweep {key}: a switch, swept as {key}=off,on")
        axes.append([(key, value) for value in choices])
    if len({axis[0][0] for axis in axes}) != len(axes):
        raise ValueError("--sweep: the same option is swept twice")
    configurations = []
    for combination in itertools.product(*axes):
        name = '_'.join(f'{key}={value}' for key, value in combination)
        safe = ''.join(c if c.isalnum() or c in '=,.-_+' else '-' for c in name)
        if len(safe) > 80 or safe != name:  # keep folder names short and unique
            safe = safe[:60] + '-' + hashlib.sha1(name.encode()).hexdigest()[:8]
        configurations.append((safe, [arg for key, value in combination for arg in switch_or_option(key, value)]))
    return configurations


SWITCH_VALUES = {'on': True, 'off': False}


def switch_or_option(key, value):
    """train.py arguments for one swept setting: a switch (--feed-forward, --tileable) is there
    or not, an option has its value."""
    if value in SWITCH_VALUES and train.build_parser()._option_string_actions[f'--{key}'].nargs == 0:
        return [f'--{key}'] if SWITCH_VALUES[value] else []
    return [f'--{key}', value]


# ---------------------------------------------------------------- scoring

def vgg_features(network_weights, images, layers):
    """[{layer: [H, W, N] features}] for each image: one graph, images of any size."""
    with quiet_stderr():  # TensorFlow's start-up chatter
        import tensorflow as tf

        import synthesize
        import vgg16
    graph = tf.Graph()
    with graph.as_default():
        placeholder = tf.compat.v1.placeholder(tf.float32, [1, None, None, 3])
        model = vgg16.Vgg16(network_weights).build(placeholder, vgg16.deepest(layers))
        fetches = {layer: getattr(model, layer) for layer in layers}
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
    row['patch'] = scores.nearest_patch_distance(result, source)
    row['layout'] = scores.layout_score(result, source)
    row['layout_limit'] = scores.layout_limit(source, result.shape[:2])
    row['copy'] = bool(row['layout'] >= COPY_LAYOUT or row['patch'] <= COPY_PATCH)
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


def ranked(rows):
    """Best first: copies last whatever their scores, then by sliced-Wasserstein distance."""
    return sorted(rows, key=lambda row: (row.get('copy', True), row.get('swd', np.inf)))


def flag(row):
    """COPY (ranked last), 'layout?' (over its texture's chance level: look at it), or ''."""
    if row['copy']:
        return 'COPY'
    return 'layout?' if row['layout'] > row['layout_limit'] else ''


def print_table(rows):
    width = max(len(row['name']) for row in rows)
    print(f"{'rank':>4}  {'name':<{width}}  " + '  '.join(f'{c:>9}' for c in SCORES) + '  limit  copy?')
    for rank, row in enumerate(rows, 1):
        values = '  '.join(f'{row[c]:9.3g}' for c in SCORES)
        print(f"{rank:>4}  {row['name']:<{width}}  {values}  {row['layout_limit']:5.2f}  {flag(row)}")


def write_report(folder, title, source, rows, notes=(), histories=None):
    """scores.csv, contact_sheet.png, loss_curves.png (sweeps) and report.html in `folder`."""
    columns = ['name'] + list(SCORES) + ['layout_limit', 'copy']
    table = [{key: value for key, value in row.items() if key != 'image'} for row in rows]
    utils.save_csv(table, os.path.join(folder, 'scores.csv'))
    entries = [(source, ['source'])] + [
        (row['image'], [f"{rank}. {row['name']}"[:40], f"swd {row['swd']:.3g}  gram {row['gram']:.3g}",
                        f"layout {row['layout']:.2f}  {flag(row)}".rstrip(),
                        *([f"status {row['status']}"] if row.get('status') not in (None, *DONE) else [])])
        for rank, row in enumerate(rows, 1)]
    report.contact_sheet(entries, os.path.join(folder, 'contact_sheet.png'))
    curves = None
    if histories:
        curves = report.loss_curves(histories, os.path.join(folder, 'loss_curves.png'))
    report.write_html(os.path.join(folder, 'report.html'), title, source, rows, columns,
                      {c: EXPLANATIONS[c] for c in SCORES + ('layout_limit', 'copy')}, notes, curves)
    return folder


def folder_for(args, key):
    name = args.name or key
    folder = os.path.join(args.out, name)
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as error:
        raise InputError(f"cannot write to {folder}: {error.strerror or error}") from None
    return folder


def digest(*parts):
    return hashlib.sha1(json.dumps(parts).encode()).hexdigest()[:8]


# ---------------------------------------------------------------- the two modes

def score_images(args, network_weights, stop=None):
    source_path = find_image(args.source)
    check_scoring_size(utils.image_shape(source_path, args.size or None), 'the source (after --size)')
    source = load_image(source_path, args.size or None)
    paths = [find_image(path) for path in args.results]
    for path in paths:
        check_scoring_size(utils.image_shape(path), f'result {path}')
    results = [load_image(path) for path in paths]
    names = [os.path.splitext(os.path.basename(path))[0] for path in paths]
    if len(set(names)) < len(names):  # runs/*/result.png: name them by their folder
        names = [os.path.join(os.path.basename(os.path.dirname(os.path.abspath(p))), n) for p, n in zip(paths, names)]
    rows = score_all(network_weights, [(result, source) for result in results], stop)
    for row, name, path, result in zip(rows, names, paths, results):
        row.update(name=name, path=os.path.abspath(path), image=result)
    rows = ranked(rows)
    stem = os.path.splitext(os.path.basename(source_path))[0]
    folder = folder_for(args, f'{stem}-scores-{digest(os.path.abspath(source_path), args.size, sorted(paths))}')
    print_table(rows)
    write_report(folder, f'{len(rows)} results against {os.path.basename(source_path)}', source, rows,
                 [f'source {os.path.abspath(source_path)}, shorter side scaled to {args.size} px'
                  if args.size else f'source {os.path.abspath(source_path)} at its own size'])
    return folder


def run_status(run_dir):
    try:
        with open(os.path.join(run_dir, 'config.json')) as handle:
            return json.load(handle).get('status')
    except (OSError, ValueError, AttributeError):
        return None


def finished_run(run_dir):
    """(config, history) of a configuration that finished and whose files all read back, else None:
    a run folder damaged by hand (or by a full disk) counts as unfinished work, to be run again."""
    if run_status(run_dir) not in DONE or not os.path.isfile(os.path.join(run_dir, 'result.png')):
        return None
    try:
        with open(os.path.join(run_dir, 'config.json')) as handle:
            config = json.load(handle)
        with open(os.path.join(run_dir, 'history.csv'), newline='') as handle:
            history = [{k: float(v) if v != '' else math.nan for k, v in row.items()}  # '': not computed
                       for row in csv.DictReader(handle)]
        load_image(os.path.join(run_dir, 'result.png'))
    except (OSError, ValueError, TypeError, InputError):
        return None
    return (config, history) if history and {'image', 'size'} <= set(config) else None


@contextlib.contextmanager
def sweep_lock(folder):
    """One sweep per report folder at a time: a second identical command would delete the first's
    running configuration and write into its report. The lock goes with the process."""
    path = os.path.join(folder, '.lock')
    try:
        handle = open(path, 'a+')
    except OSError as error:
        raise InputError(f"cannot write to {folder}: {error.strerror or error}") from None
    try:
        try:
            import fcntl
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # Windows
            import msvcrt
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
    except OSError:
        handle.close()
        raise InputError(f"another compare.py is running this sweep in {folder}: wait for it to finish, "
                         "or give this one another --name") from None
    try:
        yield
    finally:
        handle.close()


def run_sweep(args, network_weights, stop=None):
    base = ['--image', args.image] + args.passthrough
    stem = os.path.splitext(os.path.basename(args.image))[0]
    folder = folder_for(args, f'{stem}-sweep-{digest(base, args.sweep)}')
    with sweep_lock(folder):
        return sweep_in(folder, args, network_weights, base, stop)


def sweep_in(folder, args, network_weights, base, stop):
    runs_dir = os.path.join(folder, 'runs')
    total, started, ran, interrupted = len(args.configurations), time.time(), 0, False
    print(f"sweep of {total} configurations in {folder}", file=sys.stderr)
    for index, (name, extra) in enumerate(args.configurations, 1):
        if stop is not None and stop.is_set():  # between two runs: the next one would stop after a step
            interrupted = True
            break
        run_dir = os.path.join(runs_dir, name)
        prefix = f"[{index}/{total}] {name}"
        if finished_run(run_dir) is not None:
            print(f"{prefix}: finished earlier, kept", file=sys.stderr)
            continue
        if os.path.exists(run_dir):
            shutil.rmtree(run_dir)  # interrupted or failed before: run it again from the start
        elapsed = time.time() - started
        remaining = (f", about {elapsed / ran * (total - index + 1) / 60:.1f} min left" if ran else '')
        print(f"{prefix}: running ({elapsed / 60:.1f} min into the sweep{remaining})", file=sys.stderr)
        try:
            code = train.main(base + extra + ['--out', runs_dir, '--name', name], stop)
        except InputError as error:
            print(f"{prefix}: error: {error}", file=sys.stderr)
            continue
        ran += 1
        if code == 130:
            interrupted = True
            break

    sources, pairs, rows, histories = {}, [], [], {}
    for name, _ in args.configurations:
        run_dir = os.path.join(runs_dir, name)
        status = run_status(run_dir)
        kept = finished_run(run_dir) if status in DONE else None
        if kept is None:
            continue
        config, histories[name] = kept
        key = (config['image'], config['size'])
        if key not in sources:
            sources[key] = load_image(config['image'], config['size'])
        pairs.append((load_image(os.path.join(run_dir, 'result.png')), sources[key]))
        rows.append({'name': name, 'status': status, 'seconds': config.get('seconds'),
                     'final_loss': config.get('final_loss'), 'run_dir': os.path.abspath(run_dir)})
    if not rows:
        print("no configuration finished: nothing to score", file=sys.stderr)
        return folder, interrupted
    for row, cached, (result, _) in zip(rows, cached_scores(network_weights, rows, pairs), pairs):
        row.update(cached, image=result)
    rows = ranked(rows)
    print_table(rows)
    notes = [f"train.py {' '.join(base)} with, per row, the swept options: "
             f"{'; '.join(args.sweep)}. Seed {train.SEED} unless swept."]
    if interrupted or len(rows) < total:
        notes.append(f"{len(rows)} of {total} configurations have results; rerun the same command to finish.")
    source = next(iter(sources.values()))
    write_report(folder, f"sweep on {os.path.basename(args.image)}", source, rows, notes, histories)
    return folder, interrupted


def cached_scores(network_weights, rows, pairs):
    """Each run's scores, from its scores.json when it is newer than its result."""
    cached, missing = [], []
    for index, row in enumerate(rows):
        path = os.path.join(row['run_dir'], 'scores.json')
        result_path = os.path.join(row['run_dir'], 'result.png')
        scores_found = None
        if os.path.isfile(path) and os.path.getmtime(path) >= os.path.getmtime(result_path):
            try:
                with open(path) as handle:
                    scores_found = json.load(handle)
            except (OSError, ValueError):  # damaged: scored again
                scores_found = None
            if not isinstance(scores_found, dict):
                scores_found = None
        if scores_found is None or 'layout_limit' not in scores_found:  # none yet, or from before the limit
            missing.append(index)
        cached.append(scores_found)
    if missing:
        for index, fresh in zip(missing, score_all(network_weights, [pairs[i] for i in missing])):
            utils.save_json(fresh, os.path.join(rows[index]['run_dir'], 'scores.json'))
            cached[index] = fresh
    return cached


def main(argv=None, stop=None):
    args = parse_args(argv)
    weights_path = vgg_weights.resolve_weights_path(args.weights, log=lambda m: print(m, file=sys.stderr))
    network_weights = vgg_weights.load_weights(weights_path)
    if args.source is not None:
        folder, interrupted = score_images(args, network_weights, stop), False
    else:
        folder, interrupted = run_sweep(args, network_weights, stop)
    print(f"report: {os.path.join(folder, 'report.html')}", file=sys.stderr)
    return 130 if interrupted else 0


def cli(argv=None):
    utils.report_crashes()
    try:
        with utils.stop_requests(after='this result') as stop:
            return main(argv, stop)
    except (InputError, vgg_weights.WeightsError) as error:
        print(f"error: {error}", file=sys.stderr)
    except KeyboardInterrupt:
        print("interrupted: finished results are kept; rerun the same command to resume"
              if '--sweep' in ' '.join(argv if argv is not None else sys.argv) else
              "interrupted: nothing written", file=sys.stderr)
        return 130
    return 2


if __name__ == '__main__':
    sys.exit(cli())
