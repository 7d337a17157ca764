"""The run folder: one per run, holding everything about it.

    runs/<name>-<time>/
        result.png        the final image (feed-forward: the generator's sample of seed 0)
        steps/            step_00050.png, ... every --save-every iterations (feed-forward: sample sheets)
        history.csv       step, seconds, total and every loss term, per iteration
        config.json       the fully resolved settings, versions, machine, status
        loss.png          the loss curves
        comparison.png    the inputs and the result side by side, at one scale
        generator.npz     feed-forward: the checkpoint (weights, Adam's state, step), for --resume and sample.py
        savedmodel/       feed-forward: the generator as a TensorFlow SavedModel (README, Feed-forward)
        .lock             feed-forward: held while a train.py trains it, so a --resume meanwhile is refused
"""
import csv
import datetime
import json
import math
import os
import platform
import sys

import numpy as np

import generator_design
import layers
import utils

import weights as vgg_weights
from options import PRECISIONS, STYLE_LOSSES
from utils import InputError, quiet_stderr


def training_lock(run_dir):
    """folder_lock for a generator's run folder: the training holds it, a --resume meanwhile is
    refused (both would write the same checkpoint, history and sheets)."""
    return folder_lock(run_dir, f"{run_dir} is being trained by another train.py: let it finish (Ctrl-C there "
                                "saves a checkpoint), then --resume it")


def folder_lock(folder, busy):
    """An open file holding an exclusive lock on `folder`/.lock: one process at a time writes the
    folder (a sweep's report, a generator's run). Close it to release; the process's end does too,
    however it ends. InputError(busy) if another process holds it; the file itself stays (deleting
    it could let two processes lock two different files)."""
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
        raise InputError(busy) from None
    return handle


def make_run_dir(out, stem, name=None):
    """A new folder under `out`: `name`, or named after the inputs and the time. An existing
    folder (or a link to one) is never written into: its files are someone's earlier run."""
    stamp = datetime.datetime.now().strftime('%Y%m%d-%H%M%S')
    try:
        os.makedirs(out, exist_ok=True)
        if name:
            utils.check_folder_name(name)
            path = os.path.join(out, name)
            try:
                os.mkdir(path)  # fails on anything already there: a folder, a file, a symlink
            except FileExistsError:
                raise InputError(f"run folder {path} exists already: choose another --name or remove it") from None
            os.mkdir(os.path.join(path, 'steps'))
            return path
        for attempt in range(1000):
            path = os.path.join(out, f'{stem}-{stamp}' + (f'-{attempt}' if attempt else ''))
            try:
                os.mkdir(path)
            except FileExistsError:
                continue
            os.mkdir(os.path.join(path, 'steps'))
            return path
        raise InputError(f"cannot find a free run folder name in {out}")
    except PermissionError as error:
        raise InputError(f"cannot write to --out {out}: {error.strerror}") from None
    except OSError as error:
        raise InputError(f"cannot write to --out {out}: {error.strerror or error}") from None


def environment(weights_path):
    """What besides the options decides the output: weights, versions, machine."""
    import scipy
    with quiet_stderr():  # without a GPU, TensorFlow logs a CUDA error here (loaded by now anyway)
        import tensorflow as tf
        gpus = [device.name for device in tf.config.list_physical_devices('GPU')]
    commit, changed = utils.git_commit()
    return {
        'command': ' '.join([os.path.basename(sys.argv[0])] + sys.argv[1:]),
        'weights': os.path.abspath(weights_path),
        'weights_sha256': vgg_weights.file_digest(weights_path, 'sha256'),
        'version': utils.VERSION, 'commit': commit, 'commit_has_changes': changed,
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
          f"{history[-1]['total']:.3e}, result in {result_path}; beside it comparison.png (source and result), "
          "loss.png (the curves) and history.csv", file=sys.stderr)
    return status


def read_config(run_dir):
    """A run folder's config.json; InputError when there is none or it is damaged."""
    path = os.path.join(run_dir, 'config.json')
    if os.path.exists(run_dir) and not os.path.isdir(run_dir):  # an image given for its folder, say
        raise InputError(f"{run_dir} is a file, not a run folder (the folder train.py wrote)")
    try:
        with open(path) as handle:
            config = json.load(handle)
    except FileNotFoundError:
        raise InputError(f"{run_dir} is not a run folder: it has no config.json") from None
    except (OSError, ValueError) as error:
        raise InputError(f"cannot read {path}: {error}") from None
    if not isinstance(config, dict):
        raise InputError(f"cannot read {path}: not a run's configuration")
    return config


def _whole(value, least):
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def _positive(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def _layer_weights(value):
    try:
        return isinstance(value, dict) and layers.check_layer_weights(value) is None
    except (TypeError, ValueError):
        return False


# What a generator's run folder must record for sample.py and train.py --resume, as written by
# train.py: a config.json edited by hand or from another version fails here, with its key named,
# not as a KeyError or a wrong image later.
GENERATOR_SETTINGS = {
    'image': lambda v: isinstance(v, str),
    'size': lambda v: _whole(v, 1),
    'output_shape': lambda v: isinstance(v, list) and len(v) == 2 and all(_whole(side, 1) for side in v),
    'layer_weights': _layer_weights,
    'weighting': lambda v: isinstance(v, str),
    'loss': lambda v: v in STYLE_LOSSES,
    'swd_weight': lambda v: v is None or _positive(v),
    'pooling': lambda v: v in layers.POOLINGS,
    'precision': lambda v: v in PRECISIONS,
    'tileable': lambda v: isinstance(v, bool),
    'seed': lambda v: _whole(v, 0),
    'batch_size': lambda v: _whole(v, 1),
    'learning_rate': _positive,
    'iterations': lambda v: _whole(v, 1) or (isinstance(v, list) and v and all(_whole(n, 1) for n in v)),
    'save_every': lambda v: _whole(v, 0),
}


def read_generator_config(run_dir):
    """A feed-forward run's config.json, every setting a generator needs checked; InputError otherwise."""
    config = read_config(run_dir)
    if config.get('mode') != 'feed-forward':
        raise InputError(f"{run_dir} is a {config.get('mode')} run, not a generator: "
                         "train one with train.py --feed-forward")
    for key, valid in GENERATOR_SETTINGS.items():
        if key not in config or not valid(config[key]):
            found = 'has none' if key not in config else f'has {json.dumps(config[key])[:40]}'
            raise InputError(f"{os.path.join(run_dir, 'config.json')} is damaged: its {key!r} {found} "
                             "(train.py writes it; rerun train.py --feed-forward)")
    scales = config.get('scales', [1.0])  # runs made before coarse to fine trained at one scale
    if not (isinstance(scales, list) and scales and all(_positive(scale) and scale <= 1 for scale in scales)):
        raise InputError(f"{os.path.join(run_dir, 'config.json')} is damaged: its 'scales' has {scales}")
    return {**config, 'scales': scales}


def read_history(run_dir):
    """history.csv's rows as numbers ('' where a step has no value: NaN); InputError if damaged."""
    path = os.path.join(run_dir, 'history.csv')
    try:
        with open(path, newline='') as handle:
            rows = [{key: (int(value) if key == 'step' else float(value) if value != '' else math.nan)
                     for key, value in row.items()} for row in csv.DictReader(handle)]
    except FileNotFoundError:
        return []
    except (OSError, ValueError, TypeError) as error:
        raise InputError(f"cannot read {path}: {error}") from None
    return rows


def save_generator_step(run_dir, step, trainer, history, source, checkpoint_settings):
    """A feed-forward run's checkpoint, a sheet of its preview samples, and the history so far."""
    import feedforward  # TensorFlow: loaded by now, not at import (train.py --help)
    state = trainer.state()
    generator_design.save_checkpoint(state, os.path.join(run_dir, generator_design.CHECKPOINT_NAME), checkpoint_settings)
    images, labels = zip(*feedforward.preview_sheet(source, trainer.samples()))
    steps = os.path.join(run_dir, 'steps')  # a resumed folder may have none (benchmark_feedforward's, or deleted)
    try:
        os.makedirs(steps, exist_ok=True)
    except OSError as error:
        raise InputError(f"cannot write {steps}: {error.strerror or error}") from None
    utils.save_side_by_side(images, labels, os.path.join(steps, f'step_{step:05d}.png'))
    utils.save_csv(history, os.path.join(run_dir, 'history.csv'))


def finish_generator(run_dir, trainer, source, history, config, status, iterations, checkpoint_settings):
    """Write a feed-forward run's outputs, whatever ended it; returns the final status.

    The checkpoint first (what --resume and sample.py need), then the SavedModel, then
    result.png (seed 0 at the training size), comparison.png, history, config and loss curves.
    """
    import feedforward  # TensorFlow: loaded by now, not at import (train.py --help)
    if trainer is None or not history:
        config.update(status=status, iterations_done=history[-1]['step'] if history else 0)
        utils.save_json(config, os.path.join(run_dir, 'config.json'))
        print(f"{status} before the first step; nothing to save in {run_dir}", file=sys.stderr)
        return status
    state, done = trainer.state(), trainer.steps_done
    if not all(np.all(np.isfinite(value)) for value in state.values() if np.issubdtype(value.dtype, np.floating)):
        # A step that made the loss NaN has already spoilt the weights: keep the last checkpoint instead.
        trainer.close()
        config.update(status=status, iterations_done=history[-1]['step'])
        utils.save_json(config, os.path.join(run_dir, 'config.json'))
        kept = os.path.isfile(os.path.join(run_dir, generator_design.CHECKPOINT_NAME))
        print(f"{status}; {'the last checkpoint is kept' if kept else 'no checkpoint was saved'} in {run_dir}",
              file=sys.stderr)
        return status
    checkpoint = generator_design.save_checkpoint(state, os.path.join(run_dir, generator_design.CHECKPOINT_NAME),
                                             checkpoint_settings)
    sampler = feedforward.Sampler(state)
    try:
        sampler.export(os.path.join(run_dir, generator_design.SAVEDMODEL_NAME))
        result = sampler.sample(0, tuple(config['output_shape']))
        parameters = sampler.parameters
    finally:
        sampler.close()
    previews = trainer.samples()
    trainer.close()
    config.update(status=status, iterations_done=done, seconds=round(history[-1]['seconds'], 2),
                  final_loss=history[-1]['total'],
                  generator_parameters=parameters)
    result_path = utils.save_image(result, os.path.join(run_dir, 'result.png'))
    utils.save_csv(history, os.path.join(run_dir, 'history.csv'))
    utils.save_json(config, os.path.join(run_dir, 'config.json'))
    images, labels = zip(*feedforward.preview_sheet(source, previews))
    utils.save_side_by_side(images, labels, os.path.join(run_dir, 'comparison.png'))
    if len(history) > 1:
        columns = [c for c in history[-1] if c not in ('step', 'seconds', 'total', 'scale')]
        utils.save_loss_plot(history, columns, os.path.join(run_dir, 'loss.png'), x_label='training step')
    print(f"{status}: {done} training steps, loss {history[0]['total']:.3e} -> {history[-1]['total']:.3e}; "
          f"generator in {checkpoint}, a sample in {result_path}; new samples: python sample.py {run_dir}",
          file=sys.stderr)
    return status
