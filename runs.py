"""The run folder: one per run, holding everything about it.

    runs/<name>-<time>/
        result.png        the final image
        steps/            step_00050.png, ... every --save-every iterations
        history.csv       step, seconds, total and every loss term, per iteration
        config.json       the fully resolved settings, versions, machine, status
        loss.png          the loss curves
        comparison.png    the inputs and the result side by side, at one scale
"""
import datetime
import os
import platform
import sys

import numpy as np
import scipy

import utils  # before TensorFlow: it turns oneDNN on where TensorFlow would not
import tensorflow as tf
import weights as vgg_weights
from utils import InputError, quiet_stderr


def make_run_dir(out, stem, name=None):
    """A fresh folder under `out`: `name`, or named after the inputs and the time."""
    stamp = datetime.datetime.now().strftime('%Y%m%d-%H%M%S')
    try:
        os.makedirs(out, exist_ok=True)
        if name:
            if os.path.basename(os.path.normpath(name)) != name or name in ('.', '..'):
                raise InputError(f"--name must be a plain folder name, not {name!r}")
            try:
                os.makedirs(os.path.join(out, name, 'steps'))
            except FileExistsError:
                raise InputError(f"run folder {os.path.join(out, name)} exists already: "
                                 "choose another --name or remove it") from None
            return os.path.join(out, name)
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


def environment(weights_path):
    """What besides the options decides the output: weights, versions, machine."""
    with quiet_stderr():  # without a GPU, TensorFlow logs a CUDA error here
        gpus = [device.name for device in tf.config.list_physical_devices('GPU')]
    return {
        'command': ' '.join([os.path.basename(sys.argv[0])] + sys.argv[1:]),
        'weights': os.path.abspath(weights_path),
        'weights_sha256': vgg_weights.file_digest(weights_path, 'sha256'),
        'versions': {'python': platform.python_version(), 'tensorflow': tf.__version__,
                     'numpy': np.__version__, 'scipy': scipy.__version__},
        'machine': {'platform': platform.platform(), 'processor': platform.machine(),
                    'cpus': os.cpu_count(), 'gpus': gpus},
    }


def save_step(run_dir, step, image, history):
    utils.save_image(image, os.path.join(run_dir, 'steps', f'step_{step:05d}.png'))
    utils.save_csv(history, os.path.join(run_dir, 'history.csv'))


def finish(run_dir, image, history, config, shown, plotted, status, iterations, seconds):
    """Write the run's outputs, whatever ended it; returns the final status.

    shown: [(image, label)] for comparison.png, the result is added last;
    plotted: the history columns drawn in loss.png besides the total (those present;
    None: every loss column).
    """
    if image is None:
        config.update(status=status, iterations_done=0)
        utils.save_json(config, os.path.join(run_dir, 'config.json'))
        print(f"{status} before the first step; nothing to save in {run_dir}", file=sys.stderr)
        return status
    if status == 'finished' and history[-1]['step'] < iterations:
        status = 'converged'  # L-BFGS stops when its line search finds no step that lowers the loss
    config.update(status=status, iterations_done=history[-1]['step'], seconds=round(seconds, 2),
                  final_loss=history[-1]['total'])
    result_path = utils.save_image(image, os.path.join(run_dir, 'result.png'))
    utils.save_csv(history, os.path.join(run_dir, 'history.csv'))
    utils.save_json(config, os.path.join(run_dir, 'config.json'))
    images, labels = zip(*shown, (image, f"result, loss {history[-1]['total']:.3g}"))
    utils.save_side_by_side(images, labels, os.path.join(run_dir, 'comparison.png'))
    if len(history) > 1:
        columns = [c for c in history[-1] if c not in ('step', 'seconds', 'total', 'scale')]
        utils.save_loss_plot(history, columns if plotted is None else [c for c in plotted if c in columns],
                             os.path.join(run_dir, 'loss.png'))
    print(f"{status}: {history[-1]['step']} iterations, loss {history[0]['total']:.3e} -> "
          f"{history[-1]['total']:.3e}, result in {result_path}", file=sys.stderr)
    return status
