"""Texture synthesis and style transfer from the command line.

    python train.py --image texture1.jpg                            # a new texture like texture1
    python train.py --content photo.jpg --style painting.jpg        # the photo, painted

Texture synthesis optimises a noise image until its VGG16 Gram matrices match
the source texture's (Gatys et al. 2015). Style transfer adds a content loss
and total variation (Gatys et al. 2016). Either way everything about the run
goes to its own folder under --out (see runs.py).
"""
import sys

if __name__ == '__main__':  # Ctrl-C while Python and the modules load: a quiet exit, not a traceback
    import signal
    signal.signal(signal.SIGINT, lambda *_: sys.exit(130))

import argparse
import contextlib
import itertools
import math
import os
import time
import types

# Only modules without TensorFlow here: --help and a mistyped option answer at once. The rest
# is imported where it is used, quietly, once the options and the images' sizes are checked.
import commandline
import generator_design
import jobs
import layers
import utils
import weights as vgg_weights
from options import (COARSE_MIN_SIDE, GENERATOR_LEARNING_RATE, ITERATIONS, MAX_SEED, MAX_STAGES, OPTIMIZERS,
                     PRECISIONS, STYLE_LOSSES, SWD_WEIGHT, WEIGHTING, auto_precision, parse_blend, parse_layers,
                     parse_numbers, parse_size, per_scale)
from utils import InputError, find_image, load_image, quiet_stderr

SIZE = 256                 # texture: the source's shorter side; style transfer: the output's, at most
OPTIMIZER = 'lbfgs'
SCALES = 'auto'     # coarse to fine while the coarse stage keeps COARSE_MIN_SIDE px (docs/benchmarks.md)
PRECISION = 'auto'  # bfloat16 on CPUs with bfloat16 instructions (1.4x faster here), else float32
LOSS = 'gram'
# The course's 13 conv layers (`all-conv`) up to conv4_1: with mean weighting the deeper five
# give under 2% of the gradient (docs/benchmarks.md), the result looks the same, and each iteration
# is 1.4x cheaper without them. all-conv was cleaner than Gatys' five layers (docs/design.md).
LAYERS = 'conv1_1,conv1_2,conv2_1,conv2_2,conv3_1,conv3_2,conv3_3,conv4_1'
POOLING = 'avg'
INIT = {'texture': 'mean-noise',  # cleaner than uniform noise at the same cost (docs/design.md)
        'style': 'content'}       # fewer iterations than from noise, and the photo stays sharp
SEED = 0
OUT = 'runs'
SAVE_EVERY = {'optimise': 50, 'feed-forward': 250}   # iterations, or generator training steps
LOG_INTERVAL = 30.0          # seconds between progress lines when stderr is not a terminal
# Style transfer. Chosen by looking at results (docs/design.md): the style loss is a mean
# over the --layers' Gram losses and the content loss is Coursera's J_content.
CONTENT_LAYERS = ','.join(layers.CONTENT_LAYERS)
CONTENT_WEIGHT = 5e3
STYLE_WEIGHT = 1.0
TV_WEIGHT = 1e6
STYLE_SCALE = 1.0
# Feed-forward (--feed-forward): measured per minute of training on this project's CPU (docs/feedforward.md).
# One 256 px sample per step beat four 128 px ones per minute of training (docs/feedforward.md).
BATCH_SIZE = 1
# Training steps at one size: about 9 minutes on this project's 2-core CPU. Coarse to fine
# (--scales 0.5,1) tied with it over six textures at 10 minutes and made samples of different
# seeds share a motif on texture1, so one size stays the default (docs/feedforward.md).
FF_ITERATIONS = 2000


class NonFiniteLoss(InputError):
    """The loss became NaN or infinite: the run stops, keeping its last finite step."""


def build_parser():
    parser = commandline.OneLineErrors(
        description='Texture synthesis (--image) or style transfer (--content and --style) '
                    'with VGG16 Gram matrices.')
    mode = parser.add_argument_group('what to make (one of)')
    mode.add_argument('--image', help='texture synthesis: the source texture, a path or a file name in '
                                      'images/ (e.g. texture1.jpg)')
    mode.add_argument('--content', help='style transfer: the content photo')
    parser.add_argument('--size', type=int, default=SIZE,
                        help="texture: the source's shorter side in pixels; style transfer: the output's "
                             "shorter side at most (the content image's own size if smaller) "
                             "(default: %(default)s)")
    parser.add_argument('--output-size', default=None, metavar='WxH',
                        help='texture: size of the generated texture, e.g. 512 or 512x384 (default: the '
                             'source size); feed-forward: the training samples\' size (default: the source size)')
    parser.add_argument('--optimizer', choices=OPTIMIZERS, default=OPTIMIZER,
                        help='lbfgs: L-BFGS (lbfgs.py; unbounded, images clipped to [0, 1]); adam: the course recipe '
                             '(default: %(default)s)')
    parser.add_argument('--iterations', default=None,
                        help='iterations per scale: one number for every scale, or one per scale '
                             f'(100,60); default: {ITERATIONS["lbfgs"]} for lbfgs, {ITERATIONS["adam"]} for adam '
                             'at one scale, see --scales')
    parser.add_argument('--scales', default=SCALES,
                        help='coarse to fine: optimise at these fractions of the output size in turn, '
                             'e.g. 0.5,1; auto: halve while the coarse stage and the source at that '
                             f'scale keep {COARSE_MIN_SIDE} px per side, up to {MAX_STAGES} stages '
                             '(default: %(default)s)')
    parser.add_argument('--precision', choices=('auto',) + PRECISIONS, default=PRECISION,
                        help="the optimised image's network: bfloat16 is faster on CPUs with AVX512-BF16 "
                             'or AMX; auto: bfloat16 on such a CPU without a GPU, else float32 '
                             '(default: %(default)s)')
    parser.add_argument('--loss', choices=STYLE_LOSSES, default=LOSS,
                        help='match Gram matrices, sliced-Wasserstein feature distributions (Heitz et al. '
                             '2021), or both (default: %(default)s)')
    parser.add_argument('--swd-weight', type=float, default=None,
                        help='with --loss gram+swd: the weight of the SWD against the Gram loss '
                             f'(default: {SWD_WEIGHT:g})')
    parser.add_argument('--tileable', action='store_true',
                        help='make an image that tiles without seams (circular padding in VGG16)')
    parser.add_argument('--match-colors', action='store_true',
                        help="at the end, map the result's colour histogram onto the source's (style transfer: "
                             "the first style image's)")
    parser.add_argument('--layers', default=LAYERS,
                        help='Gram (style) layers, "conv1_1,pool1,..." weighted by --weighting, or explicit '
                             'weights "conv1_1=1,pool1=0.5,..."; "all-conv" = the 13 conv layers '
                             '(default: %(default)s; Gatys et al. 2015 used conv1_1,pool1,pool2,pool3,pool4)')
    parser.add_argument('--weighting', choices=layers.WEIGHTINGS, default=None,
                        help=f'how layer losses add up (default: {WEIGHTING}); '
                             'not with explicit weights in --layers')
    parser.add_argument('--pooling', choices=layers.POOLINGS, default=POOLING,
                        help='pooling in VGG16; avg gives smoother gradients (default: %(default)s)')
    parser.add_argument('--init', default=None,
                        help=f"starting image: {', '.join(utils.INITS)} (noise around the source's mean colour, "
                             "or Gatys' uniform noise), content (style transfer), or an image path "
                             f"(default: {INIT['texture']} for textures, {INIT['style']} for style transfer)")
    parser.add_argument('--seed', type=int, default=SEED,
                        help='seed of the starting noise (default: %(default)s)')
    parser.add_argument('--out', default=OUT,
                        help='folder that receives one sub-folder per run (default: %(default)s)')
    parser.add_argument('--name', default=None,
                        help="the run's folder name under --out; an existing folder is not overwritten "
                             '(default: the input names, date and time)')
    parser.add_argument('--save-every', type=int, default=None,
                        help='save an intermediate image every N iterations (feed-forward: a sheet of samples '
                             f"and the checkpoint every N steps), 0: only the final one (default: "
                             f"{SAVE_EVERY['optimise']}; feed-forward {SAVE_EVERY['feed-forward']})")
    parser.add_argument('--weights', default=None,
                        help='VGG16 weights file (.h5, .npz, .npy, .onnx, .whl); '
                             f'default: ${vgg_weights.ENV_VAR}, '
                             'then the cache, then a download')
    parser.add_argument('--allow-pickle', action='store_true',
                        help="allow a pickled vgg16.npy (loading a pickle runs the file's code)")
    ff = parser.add_argument_group('feed-forward: train a generator once, then sample.py makes new textures '
                                   'of any size in a fraction of a second')
    ff.add_argument('--feed-forward', action='store_true',
                    help='train a generator network on --image instead of optimising one image '
                         '(Ulyanov et al. 2016); --scales are then the training samples\' sizes, against '
                         'the same source (default: one size), and --iterations counts training steps per '
                         f'scale (default: {FF_ITERATIONS})')
    ff.add_argument('--batch-size', type=int, default=BATCH_SIZE,
                    help='noise samples per training step (default: %(default)s)')
    ff.add_argument('--learning-rate', type=float, default=GENERATOR_LEARNING_RATE,
                    help="Adam's learning rate (default: %(default)s)")
    ff.add_argument('--resume', metavar='RUN_DIR',
                    help="continue training the generator of RUN_DIR from its checkpoint, with its settings, "
                         'up to --iterations steps in all')
    style = parser.add_argument_group('style transfer')
    style.add_argument('--style', help='style image(s), comma-separated: a.jpg or a.jpg,b.jpg')
    style.add_argument('--style-blend', default=None,
                       help='one weight per style image, e.g. 0.7,0.3 (default: equal)')
    style.add_argument('--style-scale', type=float, default=STYLE_SCALE,
                       help="style image's shorter side relative to the output's: below 1 gives finer "
                            "brush strokes, above 1 coarser (default: %(default)s)")
    style.add_argument('--content-layers', default=CONTENT_LAYERS,
                       help='content layers, "conv4_2" or "conv3_1=1,conv4_2=2" (several: their mean '
                            'unless weighted) (default: %(default)s)')
    style.add_argument('--content-weight', type=float, default=CONTENT_WEIGHT,
                       help="weight of the content loss, Coursera's alpha (default: %(default)g)")
    style.add_argument('--style-weight', type=float, default=STYLE_WEIGHT,
                       help="weight of the style (Gram) loss, Coursera's beta (default: %(default)g)")
    style.add_argument('--tv-weight', type=float, default=TV_WEIGHT,
                       help='weight of the total-variation loss, against noise and '
                            'checkerboard artefacts (default: %(default)g)')
    style.add_argument('--preserve-colors', action='store_true',
                       help="keep the content photo's colours: transfer on luminance only "
                            '(Gatys et al. 2017)')
    return parser


# Pixel-optimisation options that mean nothing to a generator's training, with the reason.
NOT_FEED_FORWARD = {'optimizer': 'a generator trains with Adam',
                    'init': 'a generator starts from noise', 'match_colors': 'a generator has no final image',
                    'content': 'feed-forward trains a texture generator', 'style': 'feed-forward trains a texture generator'}
# What a resumed run may change: everything else is the run's own (its config.json).
RESUME_MAY_SET = ('resume', 'iterations', 'save_every', 'weights', 'allow_pickle', 'out')


def given_options(parser, args, names):
    """Those of `names` whose value differs from the parser's default: the options the user gave."""
    return [name for name in names if getattr(args, name) != parser.get_default(name)]


def parse_args(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.resume is not None:
        return resumed_args(parser, args)
    if args.feed_forward:
        wrong = given_options(parser, args, NOT_FEED_FORWARD)
        if wrong:
            parser.error(f"--{wrong[0].replace('_', '-')} does not go with --feed-forward: {NOT_FEED_FORWARD[wrong[0]]}")
    else:
        wrong = given_options(parser, args, ('batch_size', 'learning_rate'))
        if wrong:
            parser.error(f"--{wrong[0].replace('_', '-')} is for --feed-forward")

    args.mode = 'style' if args.content is not None or args.style is not None else 'texture'
    if args.mode == 'texture':
        if args.image is None:
            parser.error("give --image (texture synthesis) or --content and --style (style transfer)")
        style_only = [option for option in ('style_blend', 'preserve_colors') if getattr(args, option)]
        if style_only:
            parser.error(f"--{style_only[0].replace('_', '-')} is for style transfer (--content and --style)")
    else:
        if args.image is not None:
            parser.error("--image (texture) and --content/--style (style transfer) do not mix")
        if args.content is None or args.style is None:
            parser.error("style transfer needs both --content and --style")
        if args.output_size:
            parser.error("--output-size is for textures: style transfer keeps the content's shape "
                         "(use --size)")
    try:
        if args.scales != 'auto':
            args.scales = parse_numbers(args.scales, '--scales', float)
            if not all(0 < scale <= 1 for scale in args.scales) or args.scales[-1] != 1 \
                    or any(a >= b for a, b in zip(args.scales, args.scales[1:])):
                raise ValueError("--scales must rise to 1, each in (0, 1], like 0.5,1; "
                                 f"not {','.join(map(str, args.scales))}")
        if args.iterations is not None:
            args.iterations = parse_numbers(args.iterations, '--iterations', int)
            if min(args.iterations) < 1:
                raise ValueError("--iterations must be at least 1")
    except ValueError as error:
        parser.error(str(error))
    if args.feed_forward:
        check_feed_forward(parser, args)
        try:
            feed_forward_schedule(args)
        except InputError as error:
            parser.error(str(error))
    args.save_every = SAVE_EVERY[method(args)] if args.save_every is None else args.save_every
    if args.size < 1:
        parser.error("--size must be at least 1")
    if not 0 <= args.seed <= MAX_SEED:
        parser.error(f"--seed must be 0 to {MAX_SEED}, not {args.seed}")
    if args.weights is not None and not os.path.isfile(args.weights):
        parser.error(f"--weights {args.weights}: no such file")
    if args.save_every < 0:
        parser.error("--save-every must be 0 or more")
    for option in ('content_weight', 'style_weight', 'tv_weight', 'style_scale'):
        value = getattr(args, option)
        if not math.isfinite(value) or value < 0 or (option == 'style_scale' and value == 0):
            parser.error(f"--{option.replace('_', '-')} must be a finite number "
                         f"{'> 0' if option == 'style_scale' else '>= 0'}, not {value}")
    if args.swd_weight is None:
        args.swd_weight = SWD_WEIGHT if args.loss == 'gram+swd' else None
    elif args.loss != 'gram+swd':
        parser.error("--swd-weight needs --loss gram+swd: it weighs the SWD against the Gram loss")
    elif not math.isfinite(args.swd_weight) or args.swd_weight <= 0:
        parser.error(f"--swd-weight must be a finite number > 0, not {args.swd_weight}")
    if args.mode == 'style' and args.content_weight == 0 and args.style_weight == 0:
        parser.error("--content-weight and --style-weight are both 0: nothing to transfer")
    try:
        args.layer_weights = parse_layers(args.layers, args.weighting)
        args.output_shape = parse_size(args.output_size) if args.output_size else None
        if args.mode == 'style':
            args.styles = [name.strip() for name in args.style.split(',') if name.strip()]
            if not args.styles:
                raise ValueError(f"--style names no image: {args.style!r}")
            args.blend = parse_blend(args.style_blend, len(args.styles))
            args.content_layer_weights = parse_layers(args.content_layers, None)
    except ValueError as error:
        parser.error(str(error))
    args.weighting = args.weighting or (WEIGHTING if '=' not in args.layers else 'explicit')
    args.init = args.init or INIT[args.mode]
    if args.init == 'content' and args.mode == 'texture':
        parser.error("--init content is for style transfer; textures start from noise or an image path")
    if args.init not in utils.INITS + ('content',):
        try:
            find_image(args.init)
        except InputError:
            parser.error(f"--init must be {', '.join(utils.INITS)}, content or an image: {args.init} is none of these")
    if args.precision == 'auto':  # last: asking whether a GPU is there loads TensorFlow
        args.precision = auto_precision()
    return args


def method(args):
    return 'feed-forward' if args.feed_forward else 'optimise'


def check_feed_forward(parser, args):
    """The generator's own options: a batch and a learning rate."""
    if args.batch_size < 1:
        parser.error(f"--batch-size must be at least 1, not {args.batch_size}")
    if not math.isfinite(args.learning_rate) or args.learning_rate <= 0:
        parser.error(f"--learning-rate must be a finite number > 0, not {args.learning_rate}")


def feed_forward_schedule(args):
    """args.scales (auto: one size) and args.iterations, one count per stage."""
    if args.scales == 'auto':
        args.scales = [1.0]
    args.iterations = per_scale(args.iterations or [FF_ITERATIONS], args.scales)


def resumed_args(parser, args):
    """The options of the feed-forward run in args.resume, as its config.json records them, with
    the few a resumed run may change (RESUME_MAY_SET)."""
    wrong = given_options(parser, args, [name for name in vars(args) if name not in RESUME_MAY_SET])
    if wrong:
        parser.error(f"--resume continues a run with its own settings: --{wrong[0].replace('_', '-')} "
                     "cannot be changed (only --iterations, --save-every, --weights)")
    config = read_generator_config(args.resume)
    try:
        iterations = parse_numbers(args.iterations, '--iterations', int) if args.iterations else None
    except ValueError as error:
        parser.error(str(error))
    resumed = argparse.Namespace(**{**vars(args), **{key: config[key] for key in RESUMED_SETTINGS}})
    resumed.feed_forward, resumed.mode, resumed.run_dir = True, 'texture', args.resume
    resumed.output_shape = tuple(config['output_shape'])
    # Runs made before coarse to fine trained at one scale and recorded one step count.
    resumed.scales = config['scales']
    recorded = config['iterations'] if isinstance(config['iterations'], list) else [config['iterations']]
    try:
        resumed.iterations = per_scale(iterations or recorded, resumed.scales, whose="the run's ")
    except InputError as error:
        parser.error(str(error))
    if min(resumed.iterations) < 1:
        parser.error("--iterations must be at least 1")
    resumed.save_every = config['save_every'] if args.save_every is None else args.save_every
    if resumed.save_every < 0:
        parser.error("--save-every must be 0 or more")
    resumed.style_blend, resumed.preserve_colors = None, False
    return resumed


# What a feed-forward run's config.json holds of its options, under the options' own names.
RESUMED_SETTINGS = ('image', 'size', 'layer_weights', 'weighting', 'loss', 'swd_weight', 'pooling', 'precision',
                    'tileable', 'seed', 'batch_size', 'learning_rate')


def settings(args):
    """The options as resolved for config.json (no defaults left implicit)."""
    import feedforward
    import lbfgs
    import synthesize
    if args.feed_forward:
        return {'mode': 'feed-forward', 'size': args.size, 'scales': args.scales, 'iterations': args.iterations,
                'batch_size': args.batch_size, 'learning_rate': args.learning_rate, 'precision': args.precision,
                'loss': args.loss, 'swd_weight': args.swd_weight, 'tileable': args.tileable,
                'layer_weights': args.layer_weights, 'weighting': args.weighting, 'pooling': args.pooling,
                'seed': args.seed, 'save_every': args.save_every,
                'generator': {'design': 'multi-scale (Ulyanov et al. 2016), instance normalisation',
                              'scales': generator_design.SCALES, 'channels': generator_design.CHANNELS,
                              'padding': 'circular', 'optimizer': 'adam',
                              'learning_rate_drop': {'after': f'{feedforward.FINE_TUNE_FROM:g} of the last scale',
                                                     'factor': feedforward.FINE_TUNE_FACTOR},
                              'training_scales': "--scales: the training samples' sizes, against the same source",
                              'gradients': 'normalised per style layer (losses.with_unit_gradient)'},
                'loss_normalisation': 'G = F^T F / (N M); layer loss = sum((G_s - G_n)^2) / 4; mean over the batch'}
    config = {'mode': args.mode, 'size': args.size, 'optimizer': args.optimizer,
              'iterations': args.iterations, 'scales': args.scales, 'precision': args.precision,
              'loss': args.loss, 'swd_weight': args.swd_weight, 'tileable': args.tileable,
              'match_colors': args.match_colors,
              'layer_weights': args.layer_weights,
              'weighting': args.weighting, 'pooling': args.pooling, 'init': args.init, 'seed': args.seed,
              'save_every': args.save_every,
              'loss_normalisation': 'G = F^T F / (N M); layer loss = sum((G_s - G_n)^2) / 4'}
    if args.mode == 'style':
        config.update(content_layer_weights=args.content_layer_weights, content_weight=args.content_weight,
                      style_weight=args.style_weight, tv_weight=args.tv_weight, style_blend=args.blend,
                      style_scale=args.style_scale, preserve_colors=args.preserve_colors,
                      content_normalisation='sum((F - P)^2) / (4 N M)',
                      tv_normalisation='mean squared difference of neighbouring pixels, down + right')
    optimiser = ({'adam_schedule': {'boundaries': synthesize.ADAM_BOUNDARIES,
                                    'learning_rates': synthesize.ADAM_LEARNING_RATES}}
                 if args.optimizer == 'adam' else {'lbfgs_memory': lbfgs.MEMORY})
    return {**config, **optimiser}


def load_tensorflow():
    """Import TensorFlow with its start-up chatter, which says nothing a user can act on, hidden."""
    with quiet_stderr():
        import tensorflow as tf
    return tf


def read_generator_config(run_dir):
    import runs
    return runs.read_generator_config(run_dir)


def main(argv=None, stop=None):
    """One run, as the command line makes it: its exit code."""
    return 130 if run(argv, stop).status == 'interrupted' else 0


def run(argv=None, stop=None):
    """One run; `stop` (a threading.Event, commandline.stop_requests) ends it after the current step.

    Returns what it made: .status, .run_dir, .image (result.png as saved, [H, W, 3] in [0, 1],
    or None), .history (the rows of history.csv) and .config (config.json's contents).
    """
    args = parse_args(argv)
    import runs
    if args.feed_forward:
        job = jobs.feedforward_job(args)
        jobs.attach_feedforward(job, args)
    else:
        job = jobs.texture_job(args) if args.mode == 'texture' else jobs.style_job(args)
        jobs.attach_optimisation(job, args)
    tf = load_tensorflow()  # loaded by the job (after its checks) or here, quietly either way
    weights_path = vgg_weights.resolve_weights_path(args.weights, log=lambda m: print(m, file=sys.stderr))
    network_weights = vgg_weights.load_weights(weights_path, args.allow_pickle)
    if stop is not None and stop.is_set():  # Ctrl-C while TensorFlow and the images loaded: no run folder yet
        raise KeyboardInterrupt
    if getattr(args, 'run_dir', None):  # --resume: the same folder, its config brought up to date
        run_dir = args.run_dir
        config = {**runs.read_config(run_dir), **runs.environment(weights_path), 'status': 'running',
                  'scales': args.scales, 'iterations': args.iterations, 'save_every': args.save_every}
        config['resumed_at'] = config.get('resumed_at', []) + [job.history[-1]['step'] if job.history else 0]
    else:
        run_dir = runs.make_run_dir(args.out, job.stem, args.name)
        config = {**job.config, **settings(args), **runs.environment(weights_path),
                  'status': 'running', 'run_dir': os.path.abspath(run_dir)}
    # A generator's folder is locked while it trains: a --resume of it meanwhile is refused.
    with contextlib.closing(runs.training_lock(run_dir)) if args.feed_forward else contextlib.nullcontext():
        return run_in(run_dir, job, args, config, network_weights, tf, stop)


def run_in(run_dir, job, args, config, network_weights, tf, stop):
    """run()'s steps, saves and outputs, in `run_dir`, from its config.json on."""
    from tqdm.auto import tqdm  # a widget in Jupyter, the text bar in a terminal
    utils.save_json(config, os.path.join(run_dir, 'config.json'))
    print(f"writing to {run_dir}", file=sys.stderr)

    # Same seed, same machine, same output: no nondeterministic kernels.
    tf.config.experimental.enable_op_determinism()
    history, item, status, steps = list(job.history), None, 'finished', None
    # A resumed run's clock goes on from where it stopped.
    started = time.time() - (history[-1]['seconds'] if history else 0.0)
    # Piped or logged (not a terminal), every redraw of the bar would stay in the log: redraw rarely.
    interval = 0.1 if sys.stderr.isatty() else LOG_INTERVAL
    progress = Progress(job.stem, job.stages)
    bar = tqdm(total=progress.total, initial=progress.done(history[-1]['step'] if history else 0),
               desc=progress.label(job.stages[0][0]), dynamic_ncols=True,
               mininterval=interval, bar_format='{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}{postfix}]')
    try:
        with quiet_stderr():  # the first step builds the session: more TensorFlow chatter
            steps = job.start(network_weights)
            first = next(steps)
        for step, current, step_losses in itertools.chain([first], steps):
            if not math.isfinite(step_losses['total']):
                raise NonFiniteLoss(f"the loss became {step_losses['total']} at step {step}: a weight is too large "
                                    "(--style-weight, --layers' weights, --content-weight) or the options do not fit; "
                                    f"{'the last finite step is kept' if item is not None else 'nothing was made'}")
            item = current
            history.append({'step': step, 'seconds': round(time.time() - started, 3), **step_losses})
            scale = step_losses.get('scale', 1.0)
            bar.update(progress.cost[scale] if step else 0)
            bar.set_description_str(progress.label(scale), refresh=False)
            bar.set_postfix_str(f"step {step}/{sum(args.iterations)}, loss {step_losses['total']:.3e}", refresh=False)
            if args.save_every and step and step % args.save_every == 0:
                job.save_step(run_dir, step, item, history)
            if stop is not None and stop.is_set():
                raise KeyboardInterrupt  # between steps, where stopping is safe
    except KeyboardInterrupt:
        status = 'interrupted'
    except NonFiniteLoss:
        status = 'failed: the loss became NaN or infinite'
        raise
    except Exception as error:  # keep what was made, then let cli() report the error
        status = f'failed: {error}' if isinstance(error, InputError) else f'failed: {type(error).__name__}'
        raise
    finally:
        bar.close()
        if steps is not None:
            steps.close()
        try:
            status = job.finish(run_dir, item, history, config, status, sum(args.iterations), time.time() - started)
        except InputError as error:  # a write failed (a full or read-only disk): say so in config.json if it can
            config['status'] = f'failed: {error}'
            with contextlib.suppress(InputError):
                utils.save_json(config, os.path.join(run_dir, 'config.json'))
            raise InputError(f"{error}; {run_dir} keeps what was written before") from None
    result_path = os.path.join(run_dir, 'result.png')
    return types.SimpleNamespace(status=status, run_dir=run_dir, history=history, config=config,
                                 image=load_image(result_path) if os.path.isfile(result_path) else None)


class Progress:
    """What the progress bar counts: work, each step weighted by its stage's pixels (a full-size
    step costs 4x a half-size one), so its ETA holds for the stages to come; and its label names
    the stage: 'texture1, scale 1/2 (128x128 px)'."""

    def __init__(self, stem, stages):
        self.stem, self.stages = stem, stages          # [(scale, iterations, (height, width))]
        full = stages[-1][2][0] * stages[-1][2][1]
        self.cost = {scale: shape[0] * shape[1] / full for scale, _, shape in stages}
        self.total = sum(iterations * self.cost[scale] for scale, iterations, _ in stages)

    def done(self, steps):
        """Work done after `steps` steps (a resumed run's start)."""
        work = 0.0
        for scale, iterations, _ in self.stages:
            work += min(steps, iterations) * self.cost[scale]
            steps -= min(steps, iterations)
        return work

    def label(self, scale):
        if len(self.stages) == 1:
            return self.stem
        index = next(i for i, (s, _, _) in enumerate(self.stages) if s == scale)
        height, width = self.stages[index][2]
        return f"{self.stem}, scale {index + 1}/{len(self.stages)} ({width}x{height} px)"


def cli(argv=None):
    """main() with every expected failure turned into one line and an exit code."""
    return commandline.command_line(main, argv, errors=(vgg_weights.WeightsError,), by_name={
        'ResourceExhaustedError': "out of memory at this size: try a smaller --output-size or --size"})


if __name__ == '__main__':
    sys.exit(cli())
