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

# No TensorFlow here, so --help and option errors answer at once: vgg_features loads it.
import commandline
import grading
import jobs
import report
import runs
import train
import utils
import weights as vgg_weights
from utils import InputError, find_image, load_image

OUT = 'reports'
SIZE = train.SIZE   # the source is scaled as train.py scales it
DONE = ('finished', 'converged')


def parse_args(argv=None):
    parser = commandline.OneLineErrors(
        usage='%(prog)s --source SOURCE RESULT [RESULT ...] | --manifest CSV | --image IMAGE --sweep KEY=V1,V2 '
              '[train.py options]',
        description='Score textures against their source (--source, then the result images; or a class '
                    'from a --manifest of submission,source rows), or run '
                    'train.py over a grid of settings and score the results (--image with --sweep). '
                    'Other options are passed to train.py for every configuration of a sweep.')
    parser.add_argument('--source', help='the source texture the results were made from')
    parser.add_argument('--manifest', metavar='CSV',
                        help='grade a whole assignment: a CSV of submission,source rows (paths relative to '
                             'it); one report per source and a class sheet (report.html, scores.csv) over all')
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
    parser.add_argument('--reference', action='store_true',
                        help="also say where each result sits between uniform noise (0) and train.py's "
                             'defaults on the source (1); that texture is made once per source and scale '
                             '(about 20 s at 256 px) and cached')
    args, rest = parser.parse_known_args(argv)
    if args.name is not None:
        try:
            utils.check_folder_name(args.name)
        except InputError as error:
            parser.error(str(error))
    # Scoring: the rest are result images; a sweep: train.py options.
    args.results, passthrough = ([], rest) if args.image is not None else (rest, [])
    if sum(given is not None for given in (args.source, args.image, args.manifest)) != 1:
        parser.error('give --source with result images to score them, --manifest with a CSV of '
                     'submission,source to grade a class, or --image with --sweep to run a sweep')
    if args.image is None:  # scoring: --source and result images, or --manifest
        if args.sweep:
            parser.error("--sweep runs train.py from --image, not --source or --manifest")
        unknown = [item for item in args.results if item.startswith('-')]
        if unknown:
            parser.error(f"unrecognized arguments: {' '.join(unknown)}")
        if args.manifest is not None and args.results:
            parser.error('--manifest names every submission and its source: give no result images')
        if args.source is not None and not args.results:
            parser.error('give the result images to score after --source')
        args.size = SIZE if args.size is None else args.size
        if args.size < 0:
            parser.error('--size must be 0 or more')
    else:
        if args.reference:
            parser.error("--reference goes with --source or --manifest: a sweep's results are the tool's own textures")
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
                (jobs.feedforward_job if resolved.feed_forward else jobs.texture_job)(resolved)
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


TABLE = ('swd', 'gram', 'colour', 'spectral', 'patch', 'layout')  # the terminal's columns


def print_table(rows):
    width = max(len(row['name']) for row in rows)
    against = 'swd_vs_reference' in rows[0]  # --reference
    print(f"{'rank':>4}  {'name':<{width}}  " + '  '.join(f'{c:>9}' for c in TABLE) + '  limit'
          + ('  swd vs ref.' if against else '') + '  verdict')
    for rank, row in enumerate(rows, 1):
        values = '  '.join(f'{row[c]:9.3g}' for c in TABLE)
        position = ''
        if against:
            position = f"  {row['swd_vs_reference']:12.2f}" if row['swd_vs_reference'] is not None else f"  {'-':>12}"
        print(f"{rank:>4}  {row['name']:<{width}}  {values}  {row['layout_limit']:5.2f}{position}  {row['verdict']}")


# scores.csv: what a grader sorts and reads first, then where the row came from, then every layer.
LEADING_COLUMNS = ('rank', 'name', 'verdict', 'reason', 'swd', 'gram', 'colour', 'spectral', 'patch', 'layout',
                   'swd_vs_reference', 'gram_vs_reference', 'colour_vs_reference', 'spectral_vs_reference',
                   'layout_limit', 'copy_layout', 'copy_share', 'copy_scale', 'width', 'height', 'scale', 'scale_from',
                   'status', 'seconds', 'final_loss', 'path', 'run_dir')


def csv_rows(rows):
    """scores.csv's rows: ranked, LEADING_COLUMNS first, every other score after."""
    table = [{'rank': rank, **{key: value for key, value in row.items() if key not in ('image', 'copy')}}
             for rank, row in enumerate(rows, 1)]
    ordered = [{column: row[column] for column in LEADING_COLUMNS if column in row} for row in table]
    for row, full in zip(ordered, table):
        row.update({key: value for key, value in full.items() if key not in row})
    return ordered


def write_report(folder, title, source, rows, notes=(), histories=None, command=None):
    """scores.csv, contact_sheet.png, loss_curves.png (sweeps) and report.html in `folder`."""
    utils.save_csv(csv_rows(rows), os.path.join(folder, 'scores.csv'))
    entries = [(source, ['source'])] + [
        (row['image'], [f"{rank}. {row['name']}"[:40], f"swd {row['swd']:.3g}  gram {row['gram']:.3g}",
                        f"layout {row['layout']:.2f}  {row['verdict'] if row['verdict'] != 'ok' else ''}".rstrip(),
                        *([f"status {row['status']}"] if row.get('status') not in (None, *DONE) else [])])
        for rank, row in enumerate(rows, 1)]
    report.contact_sheet(entries, os.path.join(folder, 'contact_sheet.png'))
    curves = None
    if histories:
        curves = report.loss_curves(histories, os.path.join(folder, 'loss_curves.png'))
    report.write_html(os.path.join(folder, 'report.html'), title, source, rows, grading.EXPLANATIONS,
                      notes, curves, command or command_line())
    return folder


def command_line():
    import shlex
    return shlex.join(['python', os.path.basename(sys.argv[0])] + sys.argv[1:])


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
    """Grade result images and folders of them against --source (the scoring mode)."""
    source_path = find_image(args.source)
    grading.check_scoring_size(utils.image_shape(source_path, args.size or None), 'the source (after --size)')
    submissions, skipped = grading.find_submissions(args.results)
    if not submissions and len(skipped) == 1 and skipped[0][0] in args.results:
        raise InputError(skipped[0][1])  # one image named, and it cannot be read: say why
    for path, why in skipped:
        print(f"skipped {path}: {why}", file=sys.stderr)
    if not submissions:
        raise InputError(f"no image to score in {', '.join(args.results)}")
    rows, source, notes = graded(args, network_weights, source_path, submissions, stop)
    if skipped:
        notes.append(f"Skipped (not images): {', '.join(os.path.basename(path) for path, _ in skipped)}.")
    stem = os.path.splitext(os.path.basename(source_path))[0]
    paths = sorted(submission['path'] for submission in submissions)
    folder = folder_for(args, f'{stem}-scores-{digest(os.path.abspath(source_path), args.size, paths)}')
    print_table(rows)
    write_report(folder, f'{len(rows)} results against {os.path.basename(source_path)}', source, rows, notes)
    return folder


def grade_class(args, network_weights, stop=None):
    """Grade a whole assignment from --manifest: every source's submissions against it, all of them
    before anything is written; a report per source in a sub-folder, and the class sheet."""
    by_source, skipped = grading.read_manifest(args.manifest)
    for where, why in skipped:
        print(f"skipped {where}: {why}", file=sys.stderr)
    if not by_source:
        raise InputError(f"no image to score in the manifest {args.manifest}")
    for source_path in by_source:  # every source checked before the first is scored
        grading.check_scoring_size(utils.image_shape(source_path, args.size or None), f'the source {source_path}')
    groups, folders = [], set()
    for source_path, submissions in by_source.items():
        name = os.path.basename(source_path)
        print(f"{name}: {len(submissions)} submission{'s' * (len(submissions) != 1)}", file=sys.stderr)
        rows, source, notes = graded(args, network_weights, source_path, submissions, stop)
        print_table(rows)
        stem = os.path.splitext(name)[0]
        sub = stem if stem not in folders else f'{stem}-{digest(os.path.abspath(source_path))}'
        folders.add(sub)
        groups.append((name, source, sub, rows, notes))
    paths = sorted(s['path'] for submissions in by_source.values() for s in submissions)
    stem = os.path.splitext(os.path.basename(args.manifest))[0]
    folder = folder_for(args, f'{stem}-class-{digest(os.path.abspath(args.manifest), args.size, paths)}')
    for name, source, sub, rows, notes in groups:
        os.makedirs(os.path.join(folder, sub), exist_ok=True)
        write_report(os.path.join(folder, sub), f'{len(rows)} results against {name}', source, rows, notes)
    sheet = [{'source': name, **row} for name, _, _, rows, _ in groups for row in csv_rows(rows)]
    utils.save_csv(sheet, os.path.join(folder, 'scores.csv'))
    notes = [f"Skipped: {'; '.join(f'{where}: {why}' for where, why in skipped)}."] if skipped else []
    report.write_class_html(os.path.join(folder, 'report.html'), f'A class of {len(sheet)} against {len(groups)} sources',
                            [(name, source, os.path.join(folder, sub, 'report.html'), rows)
                             for name, source, sub, rows, _ in groups],
                            grading.EXPLANATIONS, notes, command_line())
    return folder


def graded(args, network_weights, source_path, submissions, stop=None):
    """One source's submissions graded: (rows best first, the source at --size, the report's notes)."""
    anchors = None
    if args.reference:
        import reference
        rows, anchors = grading.grade(network_weights, submissions, source_path, args.size, stop,
                                      lambda side: reference.reference_image(source_path, side, args.weights))
    else:
        rows = grading.grade(network_weights, submissions, source_path, args.size, stop)
    for row in rows:
        if row['scale_problem'] and row['verdict'] != 'COPY':
            print(f"scale? {row['name']}: {row['scale_problem']}", file=sys.stderr)
    source = load_image(source_path, args.size or None)
    origins = {'config.json': "its config.json", '--size': '--size', 'own size': 'its own size, --size 0'}
    by_scale = {}
    for row in rows:
        by_scale.setdefault(row['scale'], {}).setdefault(row['scale_from'], []).append(row['name'])
    seen = []
    for scale, sources in sorted(by_scale.items()):
        told = [f"{origins[origin]} for {len(names)} result{'s' * (len(names) > 1)}" for origin, names in sources.items()]
        seen.append(f"{scale} px ({', '.join(told)})")
    notes = [f"Source {os.path.abspath(source_path)}, its shorter side seen at " + '; '.join(seen) +
             ": each result at the size it was made at (the scale column says which)."]
    if anchors:
        notes.append('Between noise (0) and the reference (1): ' + '; '.join(
            f"at {side} px, train.py's defaults score swd {made['swd']:.3g}, gram {made['gram']:.3g}; "
            f"uniform noise swd {noise['swd']:.3g}, gram {noise['gram']:.3g}"
            for side, (noise, made) in sorted(anchors.items())) + '. Over 1: better than the tool\'s own texture.')
    return rows, source, notes


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


def sweep_lock(folder):
    """One sweep per report folder at a time: a second identical command would delete the first's
    running configuration and write into its report."""
    return contextlib.closing(runs.folder_lock(folder, f"another compare.py is running this sweep in {folder}: "
                                               "wait for it to finish, or give this one another --name"))


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
    for row, cached, (result, source) in zip(rows, cached_scores(network_weights, rows, pairs), pairs):
        row.update(cached, image=result, width=result.shape[1], height=result.shape[0], scale=min(source.shape[:2]),
                   scale_from='config.json', scale_problem=None)
        row['verdict'], row['reason'] = grading.verdict(row)
    rows = grading.ranked(rows)
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
        if scores_found is None or 'copy_share' not in scores_found:  # none yet, or from before the copy search
            missing.append(index)
        cached.append(scores_found)
    if missing:
        for index, fresh in zip(missing, grading.score_all(network_weights, [pairs[i] for i in missing])):
            utils.save_json(fresh, os.path.join(rows[index]['run_dir'], 'scores.json'))
            cached[index] = fresh
    return cached


def main(argv=None, stop=None):
    args = parse_args(argv)
    weights_path = vgg_weights.resolve_weights_path(args.weights, log=lambda m: print(m, file=sys.stderr))
    network_weights = vgg_weights.load_weights(weights_path)
    if args.manifest is not None:
        folder, interrupted = grade_class(args, network_weights, stop), False
    elif args.source is not None:
        folder, interrupted = score_images(args, network_weights, stop), False
    else:
        folder, interrupted = run_sweep(args, network_weights, stop)
    print(f"report: {os.path.join(folder, 'report.html')}", file=sys.stderr)
    return 130 if interrupted else 0


def cli(argv=None):
    sweep = '--sweep' in ' '.join(argv if argv is not None else sys.argv)  # --sweep=... too
    return commandline.command_line(
        main, argv, after='this result', errors=(vgg_weights.WeightsError,),
        interrupted="interrupted: finished results are kept; rerun the same command to resume" if sweep
        else "interrupted: nothing written")


if __name__ == '__main__':
    sys.exit(cli())
