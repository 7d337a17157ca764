"""The toolkit from Python (a notebook, a script): the command line's runs, with its defaults.

    from api import synthesize_texture
    result = synthesize_texture('texture1.jpg')    # the same run as `python train.py --image texture1.jpg`
    result.image                                   # [256, 256, 3] float32 in [0, 1]
    result.history[-1]['total'], result.run_dir    # the losses per step; the run folder, as the CLI writes it

Every keyword is the train.py option of the same name (`output_size='512x384'`,
`layers='conv1_1,pool1'` or `layers={'conv1_1': 1, 'pool1': 2}`, `tileable=True`),
so the defaults are the command line's, defined once in train.py, and the weights
are found as it finds them. A bad value raises ValueError with the command line's
one-line message; Ctrl-C (a notebook's interrupt) stops after the current step and
returns what was made, with .status 'interrupted'.
"""
import numbers
import os

import commandline
import generator_design
import train
import utils
from options import MAX_SEED

__all__ = ['synthesize_texture', 'transfer_style', 'train_generator', 'sample']


def synthesize_texture(image, **options):
    """A new texture like `image` (a path, or a file name in images/): train.py --image."""
    return _run(['--image', str(image)], options)


def transfer_style(content, style, **options):
    """The `content` photo in the style of `style` (a path, or several as a list): train.py --content --style."""
    styles = ','.join(map(str, style)) if isinstance(style, (list, tuple)) else str(style)
    return _run(['--content', str(content), '--style', styles], options)


def train_generator(image, **options):
    """A feed-forward generator trained on `image`: train.py --feed-forward. Sample it with sample()."""
    return _run(['--image', str(image), '--feed-forward'], options)


def sample(run_dir, seed=0, size=1024):
    """One new texture from the generator in `run_dir`: [H, W, 3] float32 in [0, 1]. `size` is a
    side (1024) or (height, width); the same seed gives the same image, as sample.py's."""
    with utils.quiet_stderr():
        import feedforward
    shape = (size, size) if isinstance(size, int) else tuple(size)
    if not (isinstance(seed, numbers.Integral) and 0 <= seed <= MAX_SEED):  # numpy's integers too
        raise ValueError(f"seed must be an integer from 0 to {MAX_SEED}, not {seed!r}")
    state, meta = _checked(lambda: generator_design.load_checkpoint(os.path.join(run_dir, generator_design.CHECKPOINT_NAME)))
    _checked(lambda: generator_design.check_sample_size(shape, meta.get('tileable', False)))
    with utils.quiet_stderr():
        sampler = feedforward.Sampler(state)
    try:
        return sampler.sample(seed, shape)
    finally:
        sampler.close()


def arguments(options):
    """{'output_size': '512', 'tileable': True, 'layers': {'conv1_1': 1}} -> train.py's arguments."""
    argv = []
    for key, value in options.items():
        flag = '--' + key.replace('_', '-')
        if value is None or value is False:
            continue
        if value is True:
            argv.append(flag)
        elif isinstance(value, dict):
            argv += [flag, ','.join(f'{name}={weight}' for name, weight in value.items())]
        elif isinstance(value, (list, tuple)):
            argv += [flag, ','.join(map(str, value))]
        else:
            argv += [flag, str(value)]
    return argv


def _run(argv, options):
    argv = argv + arguments(options)
    return _checked(lambda: train.run(argv))


def _checked(call):
    """call(), with the command line's one-line errors raised as ValueError carrying that line."""
    import weights as vgg_weights
    try:
        return call()
    except commandline.OptionError as error:
        raise ValueError(error.line) from None
    except (utils.InputError, vgg_weights.WeightsError) as error:
        raise ValueError(str(error)) from None
