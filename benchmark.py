"""Speed benchmark: seconds per iteration and time to a given loss, per size and optimiser.

    python benchmark.py                      # 128 and 256 px, lbfgs and adam, texture1.jpg
    python benchmark.py --sizes 256 512 --optimizers lbfgs --image pebbles.jpg

Each configuration runs in its own process, so its peak memory is its own.
Figures are printed as a table and written to --out as benchmark.json with the
result images; compare variants within one run (machines are noisy) and quote
ratios. Nothing here is a test: it only measures.
"""
import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

from utils import quiet_stderr

SIZES = (128, 256)
OPTIMIZERS = ('lbfgs', 'adam')
ITERATIONS = {'lbfgs': 200, 'adam': 600}
TARGET_RATIO = 1e-3   # "time to loss": loss <= this fraction of the starting noise's loss
IMAGE = 'texture1.jpg'
OUT = 'bench_out'


def measure(image, size, optimizer, iterations, layers, weighting, seed, out):
    """One configuration, in this process; returns its figures."""
    with quiet_stderr():
        import numpy as np
        import tensorflow as tf
        import synthesize
        import train
        import utils
        import weights as vgg_weights
    layer_weights = train.parse_layers(layers or train.LAYERS, weighting)
    source = utils.load_image(utils.find_image(image), size)
    network_weights = vgg_weights.load_weights(vgg_weights.resolve_weights_path())
    tf.config.experimental.enable_op_determinism()
    started = time.perf_counter()
    times, totals = [], []
    with quiet_stderr():
        steps = synthesize.synthesize(network_weights, synthesize.Objective.texture(source, layer_weights),
                                      source.shape[:2], optimizer=optimizer, iterations=iterations, seed=seed)
        step, image_out, losses = next(steps)  # builds the graph and the source statistics
    setup = time.perf_counter() - started
    times.append(0.0)
    totals.append(losses['total'])
    for step, image_out, losses in steps:
        times.append(time.perf_counter() - started - setup)
        totals.append(losses['total'])
    name = f'{size}px-{optimizer}'
    utils.save_image(image_out, os.path.join(out, f'{name}.png'))
    per_iteration = np.diff(times)
    target = totals[0] * TARGET_RATIO
    reached = next((t for t, loss in zip(times, totals) if loss <= target), None)
    return {'name': name, 'size': size, 'optimizer': optimizer, 'iterations': len(totals) - 1,
            'setup_s': round(setup, 2), 'median_s_per_iteration': round(float(np.median(per_iteration)), 4),
            'total_s': round(times[-1], 2), 'start_loss': totals[0], 'final_loss': totals[-1],
            'target_loss': target, 'seconds_to_target': None if reached is None else round(reached, 2),
            'peak_rss_mb': round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            'times': [round(t, 3) for t in times], 'totals': totals}


def seconds_to(row, loss):
    """First time a run's loss reached `loss`, or None."""
    return next((t for t, total in zip(row['times'], row['totals']) if total <= loss), None)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--image', default=IMAGE, help='texture (default: %(default)s)')
    parser.add_argument('--sizes', type=int, nargs='+', default=list(SIZES), help='(default: %(default)s)')
    parser.add_argument('--optimizers', nargs='+', choices=OPTIMIZERS, default=list(OPTIMIZERS),
                        help='(default: %(default)s)')
    parser.add_argument('--lbfgs-iterations', type=int, default=ITERATIONS['lbfgs'],
                        help='(default: %(default)s)')
    parser.add_argument('--adam-iterations', type=int, default=ITERATIONS['adam'],
                        help='(default: %(default)s)')
    parser.add_argument('--layers', default=None, help='(default: the train.py default)')
    parser.add_argument('--weighting', default=None, help='(default: the train.py default)')
    parser.add_argument('--seed', type=int, default=0, help='(default: %(default)s)')
    parser.add_argument('--out', default=OUT, help='(default: %(default)s)')
    parser.add_argument('--one', action='store_true', help=argparse.SUPPRESS)  # child process mode
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    iterations = {'lbfgs': args.lbfgs_iterations, 'adam': args.adam_iterations}

    if args.one:
        row = measure(args.image, args.sizes[0], args.optimizers[0], iterations[args.optimizers[0]],
                      args.layers, args.weighting, args.seed, args.out)
        print(json.dumps(row))
        return

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"python {platform.python_version()}; image {args.image}, "
          f"layers {args.layers or 'train.py default'}", flush=True)
    rows = []
    for size in args.sizes:
        for optimizer in args.optimizers:
            command = [sys.executable, __file__, '--one', '--image', args.image, '--sizes', str(size),
                       '--optimizers', optimizer, f'--{optimizer}-iterations', str(iterations[optimizer]),
                       '--seed', str(args.seed), '--out', args.out]
            for option in ('layers', 'weighting'):
                if getattr(args, option):
                    command += [f'--{option}', getattr(args, option)]
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode != 0:
                sys.exit(f"error: {size}px {optimizer} failed: {result.stderr.strip().splitlines()[-1:]}")
            rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
            print(f"  done {size}px {optimizer}", flush=True)

    header = (f"{'config':<14}{'iters':>6}{'setup s':>9}{'s/iter':>8}{'total s':>9}{'start loss':>12}"
              f"{'final loss':>12}{'s to 1e-3x':>11}{'s to lbfgs final':>17}{'peak MB':>9}")
    print(header)
    for row in rows:
        lbfgs = next((r for r in rows if r['size'] == row['size'] and r['optimizer'] == 'lbfgs'), None)
        to_lbfgs = seconds_to(row, lbfgs['final_loss']) if lbfgs else None
        fmt = lambda value: '-' if value is None else f'{value:.1f}'  # noqa: E731
        print(f"{row['name']:<14}{row['iterations']:>6}{row['setup_s']:>9.1f}{row['median_s_per_iteration']:>8.3f}"
              f"{row['total_s']:>9.1f}{row['start_loss']:>12.3e}{row['final_loss']:>12.3e}"
              f"{fmt(row['seconds_to_target']):>11}{fmt(to_lbfgs):>17}{row['peak_rss_mb']:>9}")
    with open(os.path.join(args.out, 'benchmark.json'), 'w') as handle:
        json.dump({'machine': {'cpus': os.cpu_count(), 'platform': platform.platform()},
                   'args': vars(args), 'rows': rows}, handle, indent=1)
    print(f"figures and images in {args.out}/")


if __name__ == '__main__':
    main()
