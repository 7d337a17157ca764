"""Feed-forward benchmark: train a generator per texture and measure it against the pixel optimisation.

    python benchmark_feedforward.py                                    # texture1-4, 10 minutes each
    python benchmark_feedforward.py --images texture1.jpg ../shared/images/textures/pebbles.jpg --minutes 5

Per texture, in one process and one run (machines are noisy: compare within it):
  - the pixel optimisation's defaults (train.py --image X): seconds, and its result's SWD score;
  - the generator trained with train.py --feed-forward's defaults for --minutes of training
    (evaluations not counted), its samples' SWD every --evaluate-every seconds: the curve, and
    the training time to an SWD within TARGET_RATIO of the optimisation's;
  - its samples' layout scores against the source and against each other (each against the
    limit for its source), and a diversity figure: the mean pairwise VGG16 feature distance
    between samples over that between crops of the source;
  - seconds per sample at 256 and 1024 px, and 4096 px in a child process with its peak memory;
  - the ratio: one new texture by the generator (once trained) against one by the optimisation.
Scores are compare.py's (scores.py). Printed, and written to --out as feedforward.json with a
sheet of each texture's samples. Not a test.
"""
import sys

if __name__ == '__main__':  # Ctrl-C while Python and the modules load: a quiet exit, not a traceback
    import signal
    signal.signal(signal.SIGINT, lambda *_: sys.exit(130))

import os
import platform
import resource
import shlex
import subprocess
import time

import generator_design
import utils

IMAGES = ('texture1.jpg', 'texture2.jpg', 'texture3.jpg', 'texture4.jpg')
SIZE = 256
MINUTES = 10.0               # at most, per texture: the line (train.py's steps may end sooner)
EVALUATE_EVERY = 60.0        # seconds of training between two SWD measurements of the samples
TARGET_RATIO = 1.5           # the issue's line: samples' SWD within 1.5x of the optimisation's result
EVALUATION_SEEDS = tuple(range(100, 104))   # samples scored along the curve (not the training noise)
FINAL_SEEDS = tuple(range(100, 108))        # samples scored at the end
CROP = 128                   # diversity: samples and source crops compared at this size
OUT = 'bench_feedforward'


def log(message):
    print(message, flush=True)


def swd_scores(network_weights, images, source):
    """compare.py's SWD of each image against the source."""
    import grading
    import scores
    with utils.quiet_stderr():
        features = grading.vgg_features(network_weights, list(images) + [source], list(grading.SWD_LAYERS))
    source_features = features[-1]
    return [float(sum(scores.sliced_wasserstein(f[layer], source_features[layer]) for layer in grading.SWD_LAYERS)
                  / len(grading.SWD_LAYERS)) for f in features[:-1]]


def optimise(image, size, output_size=None):
    """train.py's defaults on one texture, in this process: (seconds, result)."""
    with utils.quiet_stderr():
        import synthesize
        import tensorflow as tf
        import jobs
        import train
        import weights as vgg_weights
    args = train.parse_args(['--image', image, '--size', str(size)]
                            + (['--output-size', str(output_size)] if output_size else []))
    job = jobs.texture_job(args)
    network_weights = vgg_weights.load_weights(vgg_weights.resolve_weights_path())
    tf.config.experimental.enable_op_determinism()
    started = time.perf_counter()
    with utils.quiet_stderr():
        for _, result, _ in synthesize.synthesize(network_weights, job.objective, job.output_shape, args.pooling,
                                                  args.optimizer, args.iterations, args.seed, args.init, None,
                                                  args.scales, args.precision, args.tileable):
            pass
    return time.perf_counter() - started, result


def train_generator(image, size, minutes, evaluate_every, target, options=()):
    """train.py --feed-forward's defaults, its steps or `minutes` of training, whichever ends first:
    (trainer, curve, seconds to target, network weights, source, the run's settings, its config.json)."""
    with utils.quiet_stderr():
        import feedforward
        import jobs
        import train
        import weights as vgg_weights
    args = train.parse_args(['--image', image, '--size', str(size), '--feed-forward', *options])
    job = jobs.feedforward_job(args)
    network_weights = vgg_weights.load_weights(vgg_weights.resolve_weights_path())
    steps = feedforward.train(network_weights, job.objective, job.stages, args.batch_size, args.pooling,
                              args.precision, args.tileable, args.seed, args.learning_rate,
                              preview_shape=job.output_shape)
    source, total = job.objective.style_images[0], sum(args.iterations)
    curve, trained, next_evaluation, reached, trainer = [], 0.0, evaluate_every, None, None
    while trained < minutes * 60 and (trainer is None or trainer.steps_done < total):
        started = time.perf_counter()
        with utils.quiet_stderr():  # a new stage builds a new graph: TensorFlow's chatter
            _, trainer, _ = next(steps)  # a stage's new graph counts as training time
        trained += time.perf_counter() - started
        if trained >= next_evaluation or trained >= minutes * 60 or trainer.steps_done == total:
            next_evaluation += evaluate_every
            samples = samples_of(trainer.state(), EVALUATION_SEEDS, (size, size))
            swd = sum(swd_scores(network_weights, samples, source)) / len(samples)
            curve.append({'seconds': round(trained, 1), 'steps': trainer.steps_done, 'swd': round(swd, 2)})
            log(f"    {trained:6.0f} s, {trainer.steps_done:5d} steps: samples' SWD {swd:.1f} (target {target:.1f})")
            if reached is None and swd <= target:
                reached = trained
    steps.close()
    settings = {'batch_size': args.batch_size, 'training_shape': list(job.output_shape),
                'stages': [[scale, iterations, list(shape)] for scale, iterations, shape in job.stages],
                'learning_rate': args.learning_rate, 'precision': args.precision}
    config = {**train.settings(args), **job.config, 'status': 'finished', 'iterations_done': trainer.steps_done}
    return trainer, curve, reached, network_weights, source, settings, config


def samples_of(state, seeds, shape):
    import feedforward
    sampler = feedforward.Sampler(state)
    try:
        return [sampler.sample(seed, shape) for seed in seeds]
    finally:
        sampler.close()


def diversity(network_weights, samples, source, layer='conv3_1'):
    """Mean pairwise feature distance of sample corners over that of the source's four corner crops,
    CROP px, or half the source's shorter side where that is less (four crops of a 128 px source at
    128 px would be one crop four times); NaN for a source whose crops do not differ (a flat image)."""
    import grading
    import scores
    side = min(CROP, min(source.shape[:2]) // 2)
    crops = [source[top:top + side, left:left + side] for top in (0, source.shape[0] - side)
             for left in (0, source.shape[1] - side)]
    features = grading.vgg_features(network_weights, [s[:side, :side] for s in samples] + crops, [layer])
    among_samples = scores.pairwise_distance([f[layer] for f in features[:len(samples)]])
    among_crops = scores.pairwise_distance([f[layer] for f in features[len(samples):]])
    return among_samples / among_crops if among_crops > 0 else float('nan')


def sampling_speed(state, shape, count=3):
    """(first sample's seconds, including the graph's first run; the mean of the next ones)."""
    import feedforward
    sampler = feedforward.Sampler(state)
    try:
        times = []
        for seed in range(count + 1):
            started = time.perf_counter()
            sampler.sample(seed, shape)
            times.append(time.perf_counter() - started)
    finally:
        sampler.close()
    return times[0], sum(times[1:]) / count


def sample_in_child(run_dir, side, out):
    """sample.py at `side` px in a child process, as a user runs it: (wall seconds, peak RSS MB)."""
    started = time.perf_counter()
    result = subprocess.run([sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), 'sample.py'),
                             run_dir, '--output-size', str(side), '--count', '1', '--out', out],
                            capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        return None, (result.stderr.strip().splitlines() or ['failed'])[-1]
    return seconds, round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)


def measure(image, args, optimise_large=False):
    import scores
    name = os.path.splitext(os.path.basename(image))[0]
    log(f"{name}: the optimisation's defaults")
    optimise_seconds, optimised = optimise(image, args.size)
    source = utils.load_image(utils.find_image(image), args.size)
    with utils.quiet_stderr():
        import weights as vgg_weights
        network_weights = vgg_weights.load_weights(vgg_weights.resolve_weights_path())
    optimised_swd = swd_scores(network_weights, [optimised], source)[0]
    target = TARGET_RATIO * optimised_swd
    log(f"  {optimise_seconds:.1f} s, SWD {optimised_swd:.1f}; training the generator for {args.minutes:g} min")
    trainer, curve, reached, network_weights, source, settings, config = train_generator(
        image, args.size, args.minutes, args.evaluate_every, target, shlex.split(args.train_options))
    state = trainer.state()
    run_dir = os.path.join(args.out, f'{name}-generator')
    os.makedirs(run_dir, exist_ok=True)
    generator_design.save_checkpoint(state, os.path.join(run_dir, generator_design.CHECKPOINT_NAME), {'tileable': False})
    utils.save_json(config, os.path.join(run_dir, 'config.json'))  # what sample.py reads, as train.py writes it
    trainer.close()

    samples = samples_of(state, FINAL_SEEDS, (args.size, args.size))
    final_swd = swd_scores(network_weights, samples, source)
    limit = scores.layout_limit(source, samples[0].shape[:2])
    layouts = [scores.layout_score(sample, source) for sample in samples]
    # Samples against each other: each pair scored with the first as the source, against its own limit.
    pairs = [(samples[i], samples[i + 1]) for i in range(0, len(samples), 2)]
    mutual = [(scores.layout_score(b, a), scores.layout_limit(a, b.shape[:2])) for a, b in pairs]
    spread = diversity(network_weights, samples, source)
    speeds = {side: sampling_speed(state, (side, side)) for side in (256, 1024)}
    big_seconds, big_memory = (None, None) if args.no_large else \
        sample_in_child(run_dir, 4096, os.path.join(run_dir, 'samples'))
    utils.save_side_by_side([source, optimised] + samples[:4],
                            ['source', f'optimised, SWD {optimised_swd:.0f}'] +
                            [f'seed {seed}, SWD {swd:.0f}' for seed, swd in zip(FINAL_SEEDS, final_swd[:4])],
                            os.path.join(args.out, f'{name}.png'))
    row = {'texture': name, 'optimise_seconds': round(optimise_seconds, 1), 'optimised_swd': round(optimised_swd, 2),
           'target_swd': round(target, 2), 'curve': curve,
           'seconds_to_target': None if reached is None else round(reached, 1),
           'steps': curve[-1]['steps'], 'final_swd': [round(v, 2) for v in final_swd],
           'layout_limit': round(limit, 3), 'layouts': [round(v, 3) for v in layouts],
           'mutual_layouts': [[round(s, 3), round(lim, 3)] for s, lim in mutual], 'diversity': round(spread, 3),
           'sample_seconds': {str(side): [round(first, 3), round(steady, 3)] for side, (first, steady) in speeds.items()},
           'sample_4096': {'seconds': big_seconds, 'peak_rss_mb': big_memory},
           'ratio_256': round(optimise_seconds / speeds[256][1]),
           'optimise_1024_seconds': None, 'ratio_1024': None,
           **settings}
    if optimise_large:
        log("  the optimisation's defaults at --output-size 1024")
        row['optimise_1024_seconds'] = round(optimise(image, args.size, 1024)[0], 1)
        row['ratio_1024'] = round(row['optimise_1024_seconds'] / speeds[1024][1])
    log(f"  samples' SWD {sum(final_swd) / len(final_swd):.1f} (optimisation {optimised_swd:.1f}); layouts "
        f"{max(layouts):.2f} at most (limit {limit:.2f}); between samples {max(s for s, _ in mutual):.2f} "
        f"(limits {min(lim for _, lim in mutual):.2f}-{max(lim for _, lim in mutual):.2f}); diversity {spread:.2f}; "
        f"256 px {speeds[256][1]:.3f} s, 1024 px {speeds[1024][1]:.2f} s, 4096 px {big_seconds} s "
        f"({big_memory} MB); {row['ratio_256']}x faster than optimising at 256 px"
        + (f", {row['ratio_1024']}x at 1024 px ({row['optimise_1024_seconds']} s)" if optimise_large else ''))
    return row


def report(rows):
    log(f"\n{'texture':<14}{'opt s':>7}{'opt SWD':>9}{'gen SWD':>9}{'ratio':>7}{'s to 1.5x':>10}{'steps':>7}"
        f"{'layout max':>11}{'limit':>7}{'mutual':>8}{'divers.':>8}{'256 s':>7}{'1024 s':>8}{'4096 s':>8}{'4096 MB':>9}")
    for row in rows:
        swd = sum(row['final_swd']) / len(row['final_swd'])
        to_target = '-' if row['seconds_to_target'] is None else f"{row['seconds_to_target']:.0f}"
        log(f"{row['texture']:<14}{row['optimise_seconds']:>7.1f}{row['optimised_swd']:>9.1f}{swd:>9.1f}"
            f"{swd / row['optimised_swd']:>7.2f}{to_target:>10}{row['steps']:>7}{max(row['layouts']):>11.2f}"
            f"{row['layout_limit']:>7.2f}{max(s for s, _ in row['mutual_layouts']):>8.2f}{row['diversity']:>8.2f}"
            f"{row['sample_seconds']['256'][1]:>7.3f}{row['sample_seconds']['1024'][1]:>8.2f}"
            f"{row['sample_4096']['seconds'] or float('nan'):>8.1f}{row['sample_4096']['peak_rss_mb'] or 0:>9}")


def main(argv=None):
    import commandline
    parser = commandline.OneLineErrors(description=__doc__.split('\n')[0])
    parser.add_argument('--images', nargs='+', default=list(IMAGES), help='textures (default: %(default)s)')
    parser.add_argument('--size', type=int, default=SIZE, help="the source's shorter side (default: %(default)s)")
    parser.add_argument('--minutes', type=float, default=MINUTES,
                        help='training time per texture, evaluations not counted (default: %(default)s)')
    parser.add_argument('--evaluate-every', type=float, default=EVALUATE_EVERY,
                        help='seconds of training between SWD measurements (default: %(default)s)')
    parser.add_argument('--no-large', action='store_true',
                        help="skip the large measurements: the optimisation at 1024 px (on the first texture) "
                             "for the 1024 px ratio, and the 4096 px sample")
    parser.add_argument('--train-options', default='',
                        help='train.py options for the generator, to compare variants, e.g. "--scales 0.5,1 '
                             '--iterations 3500,1000" (default: train.py --feed-forward\'s defaults)')
    parser.add_argument('--out', default=OUT, help='folder for feedforward.json and sheets (default: %(default)s)')
    args = parser.parse_args(argv)
    import jobs
    import train
    try:  # a mistyped --train-options or image fails now, in one line, not after an optimisation
        train_options = shlex.split(args.train_options)
        for image in args.images:
            jobs.feedforward_job(train.parse_args(['--image', image, '--size', str(args.size), '--feed-forward',
                                                    *train_options]))
    except ValueError as error:
        parser.error(f'--train-options: {error}')
    except utils.InputError as error:
        parser.error(str(error))
    os.makedirs(args.out, exist_ok=True)
    log(f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}; "
        f"train.py --feed-forward {args.train_options}")
    rows = []
    for index, image in enumerate(args.images):
        rows.append(measure(image, args, optimise_large=index == 0 and not args.no_large))
        utils.save_json({'machine': {'cpus': os.cpu_count(), 'platform': platform.platform()},
                         'minutes': args.minutes, 'train_options': args.train_options, 'rows': rows},
                        os.path.join(args.out, 'feedforward.json'))
    report(rows)
    return 0


if __name__ == '__main__':
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
