"""Speed benchmark: time to the same texture quality, train.py's settings against a plain baseline.

    python benchmark.py                                   # texture1-4 at 256 px, the defaults
    python benchmark.py --sizes 256 512 --images texture1.jpg
    python benchmark.py --variant "bf16=--precision bfloat16" --variant "ms=--scales 0.5,1 --iterations 100,60"

The baseline is plain full-resolution L-BFGS (float32, one scale, 200
iterations, all 13 conv layers with mean weighting). Every run's images are scored with the
baseline's objective at full resolution (an extra float32 evaluation, left
out of the timing), so "time to the baseline's final loss" compares like with
like. Each run is its own process, so its peak memory is its own. Printed as a
table, written to --out as benchmark.json with a side-by-side PNG per texture.
Machines are noisy: compare within one run and quote ratios. Not a test.
"""
import sys

if __name__ == '__main__':  # Ctrl-C while Python and the modules load: a quiet exit, not a traceback
    import signal
    signal.signal(signal.SIGINT, lambda *_: sys.exit(130))

import argparse
import contextlib
import io
import json
import os
import platform
import resource
import shlex
import subprocess
import time

import commandline
import utils

IMAGES = ('texture1.jpg', 'texture2.jpg', 'texture3.jpg', 'texture4.jpg')
SIZES = (256,)
BASELINE_LAYERS = 'all-conv'  # the course's objective: all 13 conv layers, mean weighting
BASELINE = (f'--scales 1 --precision float32 --loss gram --iterations 200 --optimizer lbfgs '
            f'--layers {BASELINE_LAYERS} --weighting mean')
OUT = 'bench_out'


def measure(image, size, options, out, name):
    """One run in this process: [(seconds, baseline-objective loss)] for its full-size steps, and more."""
    with utils.quiet_stderr():
        import synthesize
        import tensorflow as tf
        import jobs
        import train
        import weights as vgg_weights
    args = train.parse_args(['--image', image, '--size', str(size)] + shlex.split(options))
    job = jobs.texture_job(args)
    network_weights = vgg_weights.load_weights(vgg_weights.resolve_weights_path())
    tf.config.experimental.enable_op_determinism()
    baseline_layers = train.parse_layers(BASELINE_LAYERS, 'mean')
    source = job.objective.style_images[0]
    same_objective = (args.scales == [1.0] and args.precision == 'float32' and args.loss == 'gram'
                      and args.layer_weights == baseline_layers and not args.tileable
                      and job.output_shape == source.shape[:2])
    # Built for every run, so every run starts with TensorFlow equally warm (its first session
    # in a process pays about 1 s once); used only where the run's own loss is not the baseline's.
    evaluator = synthesize.Graph(network_weights, synthesize.Objective.texture(source, baseline_layers),
                                 source.shape[:2])
    started, evaluating = time.perf_counter(), 0.0
    curve, setup = [], None
    with utils.quiet_stderr():
        steps = synthesize.synthesize(network_weights, job.objective, job.output_shape, args.pooling,
                                      args.optimizer, args.iterations, args.seed, args.init, None,
                                      args.scales, args.precision, args.tileable)
        for step, result, losses in steps:
            now = time.perf_counter() - started - evaluating
            if setup is None:
                setup = now
            if losses.get('scale', 1.0) != 1.0:
                continue  # coarse stages: a smaller image, not comparable
            if same_objective:
                loss = losses['total']
            else:
                before = time.perf_counter()
                evaluator.set_image(result if result.shape[:2] == source.shape[:2]
                                    else utils.resize(result, source.shape[:2]))
                loss = evaluator.evaluate()[0]['total']
                evaluating += time.perf_counter() - before
            curve.append((round(now, 3), loss))
    total = time.perf_counter() - started - evaluating
    utils.save_image(result, os.path.join(out, f'{name}.png'))
    return {'name': name, 'image': image, 'size': size, 'options': options, 'setup_s': round(setup, 2),
            'total_s': round(total, 2), 'final_loss': curve[-1][1], 'curve': curve,
            'result': os.path.join(out, f'{name}.png'),
            'peak_rss_mb': round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def parse_variant(parser, text):
    """'bf16=--precision bfloat16' -> ('bf16', '--precision bfloat16'); the name becomes a file name
    inside --out, so it must be a plain one."""
    name, equals, options = text.partition('=')
    if not equals:
        parser.error(f"--variant must look like NAME=OPTIONS (e.g. \"bf16=--precision bfloat16\"), not {text!r}")
    try:
        utils.check_folder_name(name.strip(), '--variant NAME')
    except utils.InputError as error:
        parser.error(str(error))
    return name.strip(), options


def texture_name(image):
    """'../x/pebbles.jpg' or 'pebbles.jpg' -> 'pebbles': names files inside --out, so an image
    given as a path never puts results beside the source."""
    return os.path.splitext(os.path.basename(image))[0]


def seconds_to(row, loss):
    """First time (setup included) a run's full-size loss reached `loss`, or None."""
    return next((seconds for seconds, value in row['curve'] if value <= loss), None)


def median_speedup(values):
    """Median of speedups, None (never reached the baseline's loss) ranking below every number."""
    ranked = sorted(values, key=lambda v: -1.0 if v is None else v)
    middle = ranked[(len(ranked) - 1) // 2:len(ranked) // 2 + 1]  # one value, or two for an even count
    return None if None in middle else sum(middle) / len(middle)


def score_rows(rows):
    """Sliced-Wasserstein and layout scores of every result against its source, and the layout
    score's limit for that texture (scores.layout_limit: chance level for arrangement-free samples)."""
    with utils.quiet_stderr():
        import grading
        import weights as vgg_weights
    network_weights = vgg_weights.load_weights(vgg_weights.resolve_weights_path())
    sources = {}
    pairs = []
    for row in rows:
        key = (row['image'], row['size'])
        if key not in sources:
            sources[key] = utils.load_image(utils.find_image(row['image']), row['size'])
        pairs.append((utils.load_image(row['result']), sources[key]))
    for row, row_scores in zip(rows, grading.score_all(network_weights, pairs)):
        row.update(swd=row_scores['swd'], layout=row_scores['layout'], layout_limit=row_scores['layout_limit'])
    return sources


def run_one(image, size, options, name, out):
    """measure() in a child process (its peak memory is its own); the row, or exits with its error.

    The child has its own session, so a Ctrl-C at the terminal reaches only this process,
    which lets the child finish its run (run_all); a second Ctrl-C kills it.
    """
    result = subprocess.run([sys.executable, __file__, '--out', out, '--one', image, str(size), options, name],
                            capture_output=True, text=True, start_new_session=True)
    if result.returncode != 0:
        last_line = (result.stderr.strip().splitlines() or ['no error message'])[-1]
        sys.exit(f"error: {name} failed: {last_line}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def run_all(images, sizes, variants, out):
    """Every (size, image, variant) run in turn: (rows, interrupted).

    The first Ctrl-C (or SIGTERM) lets the current run finish and reports the finished ones,
    so a long benchmark stopped halfway keeps what it measured; a second one also drops the
    current run.
    """
    rows = []
    try:
        with commandline.stop_requests(after='this run') as stop:
            for size in sizes:
                for image in images:
                    for variant, options in variants:
                        if stop.is_set():
                            raise KeyboardInterrupt
                        name = f"{texture_name(image)}-{size}-{variant}"
                        row = {**run_one(image, size, options, name, out), 'variant': variant}
                        rows.append(row)
                        print(f"  {name}: {row['total_s']:.1f} s, loss {row['final_loss']:.3e}", flush=True)
    except KeyboardInterrupt:
        return rows, True
    return rows, False


def report(rows, variants, out):
    """Print the table, write benchmark.json and one side-by-side PNG per texture and size."""
    sources = score_rows(rows)
    print(f"\n{'texture':<14}{'size':>5} {'variant':<10}{'total s':>8}{'final loss':>12}{'s to base':>10}"
          f"{'speedup':>9}{'base s to its':>14}{'swd':>8}{'layout':>8}{'limit':>7}{'peak MB':>8}")
    ratios = {}
    for row in rows:
        base = next(r for r in rows if r['image'] == row['image'] and r['size'] == row['size']
                    and r['variant'] == 'baseline')
        reached = seconds_to(row, base['final_loss'])
        # Baseline's time to this run's final loss: the speedup at equal loss when this run stops short.
        base_to_row = seconds_to(base, row['final_loss'])
        row['seconds_to_baseline_loss'] = reached
        row['speedup'] = base['total_s'] / reached if reached else None
        row['baseline_seconds_to_this_loss'] = base_to_row
        if row['variant'] != 'baseline':
            ratios.setdefault((row['variant'], row['size']), []).append(row['speedup'])
        fmt = lambda value, spec: '-' if value is None else format(value, spec)  # noqa: E731
        print(f"{texture_name(row['image']):<14}{row['size']:>5} {row['variant']:<10}{row['total_s']:>8.1f}"
              f"{row['final_loss']:>12.3e}{fmt(reached, '.1f'):>10}{fmt(row['speedup'], '.2f'):>9}"
              f"{fmt(base_to_row, '.1f'):>14}{row['swd']:>8.3g}{row['layout']:>8.3f}"
              f"{row['layout_limit']:>7.3f}{row['peak_rss_mb']:>8}")
    over = [row['name'] for row in rows if row['layout'] > row['layout_limit']]
    print(f"layout over its limit (the source's arrangement redrawn?): {', '.join(over) or 'none'}")
    for (variant, size), values in ratios.items():
        median = median_speedup(values)
        print(f"{variant} at {size} px: speedup to the baseline's final loss "
              f"{', '.join('-' if v is None else f'{v:.2f}x' for v in values)}; median "
              f"{'-' if median is None else f'{median:.2f}x'} (a texture that never gets there counts as slowest)")

    for (image, size), source in sources.items():
        group = [r for r in rows if r['image'] == image and r['size'] == size]
        utils.save_side_by_side([source] + [utils.load_image(r['result']) for r in group],
                                ['source'] + [f"{r['variant']}: {r['total_s']:.0f} s, loss {r['final_loss']:.2e}"
                                              for r in group],
                                os.path.join(out, f"{texture_name(image)}-{size}.png"))
    utils.save_json({'machine': {'cpus': os.cpu_count(), 'platform': platform.platform()},
                     'variants': dict(variants), 'rows': rows}, os.path.join(out, 'benchmark.json'))
    print(f"figures and images in {out}/")


def main(argv=None):
    parser = commandline.OneLineErrors(description=__doc__.split('\n')[0])
    parser.add_argument('--images', nargs='+', default=list(IMAGES),
                        help='textures: file names in images/ or paths (default: %(default)s)')
    parser.add_argument('--sizes', type=int, nargs='+', default=list(SIZES),
                        help="the sources' shorter sides in pixels (default: %(default)s)")
    parser.add_argument('--variant', action='append', default=None, metavar='NAME=OPTIONS',
                        help='train.py options to compare with the baseline, e.g. "bf16=--precision bfloat16"; '
                             "repeat for more (default: \"default=\", train.py's defaults)")
    parser.add_argument('--out', default=OUT,
                        help='folder for benchmark.json, the results and the side-by-side PNGs (default: %(default)s)')
    parser.add_argument('--one', nargs=4, help=argparse.SUPPRESS)  # child: image size options name
    args = parser.parse_args(argv)
    try:
        os.makedirs(args.out, exist_ok=True)
    except OSError as error:
        parser.error(f"cannot write to --out {args.out}: {error.strerror or error}")
    if args.one:
        image, size, options, name = args.one
        print(json.dumps(measure(image, int(size), options, args.out, name)))
        return 0
    variants = [('baseline', BASELINE)] + [parse_variant(parser, v) for v in (args.variant or ['default='])]
    if len({name for name, _ in variants}) < len(variants):
        parser.error("--variant names must differ from each other and from 'baseline'")
    # Every variant's options, and every image and size, are checked before the first run starts.
    import train
    for size in args.sizes:
        if size < 1:
            parser.error(f"--sizes must be at least 1, not {size}")
        for image in args.images:
            for name, options in variants:
                try:
                    with contextlib.redirect_stderr(io.StringIO()):  # said below, in one line
                        train.parse_args(['--image', image, '--size', str(size)] + shlex.split(options))
                    utils.image_shape(utils.find_image(image))
                except commandline.OptionError as error:
                    parser.error(f"--variant {name}: {error.message}")
                except utils.InputError as error:
                    parser.error(str(error))

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}", flush=True)
    rows, interrupted = run_all(args.images, args.sizes, variants, args.out)
    # A texture whose baseline never finished has nothing to be compared with.
    rows = [row for row in rows if any(r['variant'] == 'baseline' and (r['image'], r['size']) == (row['image'], row['size'])
                                       for r in rows)]
    if interrupted:
        print(f"interrupted: reporting the {len(rows)} finished runs", file=sys.stderr)
    if rows:
        report(rows, variants, args.out)
    return 130 if interrupted else 0


if __name__ == '__main__':
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # while scoring, after the runs: nothing is written
        print("interrupted", file=sys.stderr)
        sys.exit(130)
