"""Texture synthesis from the command line: python train.py --image texture1.jpg

Optimises a noise image until its VGG16 Gram matrices match the source
texture's (Gatys et al. 2015) and writes everything about the run to its own
folder under --out: result.png, steps/, history.csv, config.json, loss.png and
comparison.png (source | result).
"""
import argparse
import datetime
import itertools
import os
import platform
import sys
import time

from utils import InputError, find_image, load_image, quiet_stderr

with quiet_stderr():  # TensorFlow's start-up chatter says nothing a user can act on
    import numpy as np
    import scipy
    import tensorflow as tf
    from tqdm import tqdm

    import losses
    import synthesize
    import utils
    import vgg16
    import weights as vgg_weights

SIZE = 256                 # source texture's shorter side, pixels
OPTIMIZER = 'lbfgs'
ITERATIONS = {'lbfgs': 200, 'adam': 2000}
LAYERS = 'all-conv'         # losses.GRAM_LAYERS, the course default: cleaner than Gatys' five (README)
WEIGHTING = 'mean'
POOLING = 'avg'
INIT = 'mean-noise'       # cleaner than uniform noise at the same cost (README)
SEED = 0
OUT = 'runs'
SAVE_EVERY = 50


class OneLineErrors(argparse.ArgumentParser):
    """argparse, but a bad option is one line (with a pointer to --help), not usage + error."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def parse_args(argv=None):
    parser = OneLineErrors(
        description="Synthesise a new texture that matches a source image's VGG16 Gram matrices.")
    parser.add_argument('--image', required=True,
                        help='source texture: a path, or a file name in images/ (e.g. texture1.jpg)')
    parser.add_argument('--size', type=int, default=SIZE,
                        help="source texture's shorter side in pixels (default: %(default)s)")
    parser.add_argument('--output-size', default=None, metavar='WxH',
                        help='size of the generated texture, e.g. 512 or 512x384; default: the source size')
    parser.add_argument('--optimizer', choices=synthesize.OPTIMIZERS, default=OPTIMIZER,
                        help='lbfgs: scipy L-BFGS-B with pixel bounds; adam: the course recipe '
                             '(default: %(default)s)')
    parser.add_argument('--iterations', type=int, default=None,
                        help=f'default: {ITERATIONS["lbfgs"]} for lbfgs, {ITERATIONS["adam"]} for adam')
    parser.add_argument('--layers', default=LAYERS,
                        help='Gram layers, "conv1_1,pool1,..." weighted by --weighting, or explicit '
                             'weights "conv1_1=1,pool1=0.5,..."; "all-conv" = the 13 conv layers '
                             '(default: %(default)s; Gatys et al. 2015 used conv1_1,pool1,pool2,pool3,pool4)')
    parser.add_argument('--weighting', choices=losses.WEIGHTINGS, default=None,
                        help=f'how layer losses add up (default: {WEIGHTING}); '
                             'not with explicit weights in --layers')
    parser.add_argument('--pooling', choices=vgg16.POOLINGS, default=POOLING,
                        help='pooling in VGG16; avg gives smoother gradients (default: %(default)s)')
    parser.add_argument('--init', choices=utils.INITS, default=INIT,
                        help="starting image: the source's mean colour plus faint noise, or Gatys' "
                             'uniform noise (default: %(default)s)')
    parser.add_argument('--seed', type=int, default=SEED,
                        help='seed of the starting noise (default: %(default)s)')
    parser.add_argument('--out', default=OUT,
                        help='folder that receives one sub-folder per run (default: %(default)s)')
    parser.add_argument('--save-every', type=int, default=SAVE_EVERY,
                        help='save an intermediate image every N iterations, 0: only the final one '
                             '(default: %(default)s)')
    parser.add_argument('--weights', default=None,
                        help='VGG16 weights file (.h5, .npz, .npy, .onnx, .whl); '
                             f'default: ${vgg_weights.ENV_VAR}, '
                             'then the cache, then a download')
    parser.add_argument('--allow-pickle', action='store_true',
                        help="allow a pickled vgg16.npy (loading a pickle runs the file's code)")
    args = parser.parse_args(argv)

    if args.iterations is None:
        args.iterations = ITERATIONS[args.optimizer]
    for option in ('size', 'iterations'):
        if getattr(args, option) < 1:
            parser.error(f"--{option.replace('_', '-')} must be at least 1")
    if args.save_every < 0:
        parser.error("--save-every must be 0 or more")
    try:
        args.layer_weights = parse_layers(args.layers, args.weighting)
        args.output_shape = parse_size(args.output_size) if args.output_size else None
    except ValueError as error:
        parser.error(str(error))
    args.weighting = args.weighting or (WEIGHTING if '=' not in args.layers else 'explicit')
    return args


def parse_layers(text, weighting):
    """'conv1_1,pool1' -> weights by `weighting`; 'conv1_1=1,pool1=2' -> those weights."""
    if text == 'all-conv':
        text = ','.join(losses.GRAM_LAYERS)
    items = [item.strip() for item in text.split(',') if item.strip()]
    explicit = [item for item in items if '=' in item]
    if explicit and len(explicit) != len(items):
        raise ValueError("--layers: give a weight to every layer or to none")
    if not explicit:
        return losses.layer_weights(items, weighting or WEIGHTING)
    if weighting:
        raise ValueError("--weighting cannot be combined with explicit weights in --layers")
    mapping = {}
    for item in explicit:
        layer, _, value = item.partition('=')
        try:
            mapping[layer.strip()] = float(value)
        except ValueError:
            raise ValueError(f"--layers: weight of {layer.strip()} is not a number: {value!r}") from None
    return losses.layer_weights(weighting=mapping)


def parse_size(text):
    """'512' -> (512, 512); '512x384' (width x height) -> (384, 512) as (height, width)."""
    parts = text.lower().split('x')
    try:
        numbers = [int(part) for part in parts]
    except ValueError:
        raise ValueError(f"--output-size must look like 512 or 512x384, not {text!r}") from None
    if len(numbers) not in (1, 2) or min(numbers) < 1:
        raise ValueError(f"--output-size must look like 512 or 512x384, not {text!r}")
    width, height = numbers if len(numbers) == 2 else numbers * 2
    return height, width


def check_size(shape, layers, what):
    deepest = vgg16.deepest(layers)
    needed = vgg16.min_input_size(deepest)
    if min(shape) < needed:
        raise InputError(f"{what} is {shape[1]}x{shape[0]} px, too small for layer {deepest}: "
                         f"it needs at least {needed} px per side")


def make_run_dir(out, stem):
    """A fresh folder under `out` named after the source and the time."""
    stamp = datetime.datetime.now().strftime('%Y%m%d-%H%M%S')
    try:
        os.makedirs(out, exist_ok=True)
        for attempt in range(1000):
            path = os.path.join(out, f'{stem}-{stamp}' + (f'-{attempt}' if attempt else ''))
            try:
                os.makedirs(os.path.join(path, 'steps'))
                return path
            except FileExistsError:
                continue
        raise InputError(f"cannot find a free run folder name in {out}")
    except PermissionError as error:
        raise InputError(f"cannot write to --out {out}: {error.strerror}") from None
    except OSError as error:
        raise InputError(f"cannot write to --out {out}: {error.strerror or error}") from None


def run_config(args, image_path, weights_path, source, output_shape):
    """Everything needed to reproduce the run, resolved (no defaults left implicit)."""
    with quiet_stderr():  # without a GPU, TensorFlow logs a CUDA error here
        gpus = [device.name for device in tf.config.list_physical_devices('GPU')]
    return {
        'command': ' '.join([os.path.basename(sys.argv[0])] + sys.argv[1:]),
        'image': os.path.abspath(image_path),
        'size': args.size,
        'source_shape': list(source.shape[:2]),
        'output_shape': list(output_shape),
        'optimizer': args.optimizer,
        'iterations': args.iterations,
        'layer_weights': args.layer_weights,
        'weighting': args.weighting,
        'pooling': args.pooling,
        'init': args.init,
        'seed': args.seed,
        'save_every': args.save_every,
        'weights': os.path.abspath(weights_path),
        'weights_sha256': vgg_weights.file_digest(weights_path, 'sha256'),
        'loss_normalisation': 'G = F^T F / (N M); layer loss = sum((G_s - G_n)^2) / 4',
        'adam_schedule': {'boundaries': synthesize.ADAM_BOUNDARIES,
                          'learning_rates': synthesize.ADAM_LEARNING_RATES},
        'lbfgs_options': synthesize.LBFGS_OPTIONS,
        'versions': {'python': platform.python_version(), 'tensorflow': tf.__version__,
                     'numpy': np.__version__, 'scipy': scipy.__version__},
        'machine': {'platform': platform.platform(), 'processor': platform.machine(),
                    'cpus': os.cpu_count(), 'gpus': gpus},
    }


def save_outputs(run_dir, source, image, history, config, layers):
    utils.save_image(image, os.path.join(run_dir, 'result.png'))
    utils.save_csv(history, os.path.join(run_dir, 'history.csv'))
    utils.save_json(config, os.path.join(run_dir, 'config.json'))
    utils.save_side_by_side([source, image], ['source', f"result, loss {history[-1]['total']:.3g}"],
                            os.path.join(run_dir, 'comparison.png'))
    if len(history) > 1:
        utils.save_loss_plot(history, layers, os.path.join(run_dir, 'loss.png'))


def main(argv=None):
    args = parse_args(argv)

    image_path = find_image(args.image)
    source = load_image(image_path, args.size)
    output_shape = tuple(args.output_shape or source.shape[:2])
    layers = list(args.layer_weights)
    check_size(source.shape[:2], layers, 'the source (after --size)')
    check_size(output_shape, layers, '--output-size')
    weights_path = vgg_weights.resolve_weights_path(args.weights, log=lambda m: print(m, file=sys.stderr))
    network_weights = vgg_weights.load_weights(weights_path, args.allow_pickle)
    stem = os.path.splitext(os.path.basename(image_path))[0]
    run_dir = make_run_dir(args.out, stem)
    config = run_config(args, image_path, weights_path, source, output_shape)
    config.update(status='running', run_dir=os.path.abspath(run_dir))
    utils.save_json(config, os.path.join(run_dir, 'config.json'))
    print(f"writing to {run_dir}", file=sys.stderr)

    # Same seed, same machine, same output: no nondeterministic kernels.
    tf.config.experimental.enable_op_determinism()
    steps = synthesize.synthesize(network_weights, source, output_shape, args.layer_weights,
                                  args.pooling, args.optimizer, args.iterations, args.seed, args.init)
    history, image, status, started = [], None, 'finished', time.time()
    bar = tqdm(total=args.iterations, unit='it', desc=stem, dynamic_ncols=True)
    try:
        with quiet_stderr():  # the first step builds the session: more TensorFlow chatter
            first = next(steps)
        for step, image, step_losses in itertools.chain([first], steps):
            history.append({'step': step, 'seconds': round(time.time() - started, 3), **step_losses})
            bar.update(1 if step else 0)
            bar.set_postfix(loss=f"{step_losses['total']:.3e}", refresh=False)
            if args.save_every and step and step % args.save_every == 0:
                utils.save_image(image, os.path.join(run_dir, 'steps', f'step_{step:05d}.png'))
                utils.save_csv(history, os.path.join(run_dir, 'history.csv'))
    except KeyboardInterrupt:
        status = 'interrupted'
    except Exception as error:  # keep what was made, then let cli() report the error
        status = f'failed: {type(error).__name__}'
        raise
    finally:
        bar.close()
        steps.close()
        finish_run(run_dir, source, image, history, config, layers, status, args.iterations, started)
    return 130 if status == 'interrupted' else 0


def finish_run(run_dir, source, image, history, config, layers, status, iterations, started):
    """Write the run's outputs, whatever ended it."""
    if image is None:
        config.update(status=status, iterations_done=0)
        utils.save_json(config, os.path.join(run_dir, 'config.json'))
        print(f"{status} before the first step; nothing to save in {run_dir}", file=sys.stderr)
        return
    if status == 'finished' and history[-1]['step'] < iterations:
        status = 'converged'  # L-BFGS-B stops when no step lowers the loss any more
    config.update(status=status, iterations_done=history[-1]['step'],
                  seconds=round(time.time() - started, 2), final_loss=history[-1]['total'])
    save_outputs(run_dir, source, image, history, config, layers)
    print(f"{status}: {history[-1]['step']} iterations, loss {history[0]['total']:.3e} -> "
          f"{history[-1]['total']:.3e}, result in {os.path.join(run_dir, 'result.png')}", file=sys.stderr)


def cli(argv=None):
    """main() with every expected failure turned into one line and an exit code."""
    try:
        return main(argv)
    except (InputError, vgg_weights.WeightsError) as error:
        print(f"error: {error}", file=sys.stderr)
    except tf.errors.ResourceExhaustedError:
        print("error: out of memory at this size: try a smaller --output-size or --size", file=sys.stderr)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 2


if __name__ == '__main__':
    sys.exit(cli())
