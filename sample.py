"""New textures from a trained generator: one forward pass each, any size.

    python sample.py runs/texture1-20261202-101500                       # 4 samples at 1024 px
    python sample.py RUN_DIR --output-size 2048x1024 --count 8 --seed 10 --out my_samples

RUN_DIR is a run folder made by `train.py --feed-forward`. Sample k is drawn
from seed --seed + k, so the same seed always gives the same image, at a
given size, on any machine (stateless noise, deterministic kernels); a larger
--count only adds samples. The PNGs and a contact sheet of the source and the
first 8 samples go to --out (default RUN_DIR/samples/), each written under a temporary
name and renamed, so none is ever half written.
"""
import sys

if __name__ == '__main__':  # Ctrl-C while Python and the modules load: a quiet exit, not a traceback
    import signal
    signal.signal(signal.SIGINT, lambda *_: sys.exit(130))

import os
import time

from utils import InputError, quiet_stderr

OUTPUT_SIZE = '1024'
COUNT = 4
SEED = 0
SHEET_HEIGHT = 256   # the contact sheet shows the source and the samples at one scale
# ...and the first SHEET_SAMPLES of them: a sheet of thousands is unreadable, and keeping every
# sample for it would hold --count images in memory (1000 at 1024 px: 12 GB).
SHEET_SAMPLES = 8


def build_parser():
    import commandline  # no TensorFlow: --help answers at once
    parser = commandline.OneLineErrors(description="New textures from a generator trained by train.py --feed-forward.")
    parser.add_argument('run_dir', metavar='RUN_DIR', help='the feed-forward run folder (holds generator.npz)')
    parser.add_argument('--output-size', default=OUTPUT_SIZE, metavar='WxH',
                        help='size of each sample, e.g. 1024 or 2048x1024 (default: %(default)s)')
    parser.add_argument('--count', type=int, default=COUNT, help='how many samples (default: %(default)s)')
    parser.add_argument('--seed', type=int, default=SEED,
                        help='sample k is drawn from seed SEED + k (default: %(default)s)')
    parser.add_argument('--out', default=None,
                        help='folder for the samples and their contact sheet (default: RUN_DIR/samples)')
    return parser


def parse_args(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    from options import MAX_SEED, parse_size  # no TensorFlow needed to check the options
    try:
        args.shape = parse_size(args.output_size)
    except ValueError as error:
        parser.error(str(error))
    if not 1 <= args.count <= MAX_SEED + 1:
        parser.error(f"--count must be 1 to {MAX_SEED + 1} (one seed each), not {args.count}")
    if not 0 <= args.seed <= MAX_SEED - args.count + 1:
        parser.error(f"--seed must be 0 to {MAX_SEED - args.count + 1} (the last sample's seed is --seed + "
                     f"--count - 1, at most {MAX_SEED}), not {args.seed}")
    args.out = args.out or os.path.join(args.run_dir, 'samples')
    return args


def main(argv=None, stop=None):
    args = parse_args(argv)
    # Every check before TensorFlow loads (3-5 s): a mistyped folder, a damaged checkpoint or a size
    # the generator cannot make is one line at once.
    import generator_design
    import options
    import runs
    import utils
    config = runs.read_generator_config(args.run_dir)
    state, meta = generator_design.load_checkpoint(os.path.join(args.run_dir, generator_design.CHECKPOINT_NAME))
    generator_design.check_sample_size(args.shape, meta.get('tileable', False))
    needed, available = generator_design.sample_memory_gb(args.shape), options.available_memory_gb()
    if available is not None and needed > available:
        raise InputError(f"a sample of {args.shape[1]}x{args.shape[0]} px needs about {needed:.1f} GB of memory "
                         f"and {available:.1f} GB is free: try a smaller --output-size")
    try:
        os.makedirs(args.out, exist_ok=True)
    except OSError as error:
        raise InputError(f"cannot write to --out {args.out}: {error.strerror or error}") from None
    with quiet_stderr():
        import feedforward
        sampler = feedforward.Sampler(state)
    height, width = args.shape
    written, images = [], []
    try:
        for index in range(args.count):
            seed = args.seed + index
            started = time.perf_counter()
            with quiet_stderr():  # the first run of the graph: TensorFlow's chatter
                image = sampler.sample(seed, args.shape)
            seconds = time.perf_counter() - started
            path = utils.save_image(image, os.path.join(args.out, f'sample_{width}x{height}_seed{seed}.png'))
            written.append(path)
            if len(images) < SHEET_SAMPLES:
                images.append(image)
            print(f"{path}: {seconds:.2f} s", file=sys.stderr)
            if stop is not None and stop.is_set():
                break
    finally:
        sampler.close()
    source = utils.load_image(config['image'], config['size']) if os.path.isfile(config.get('image', '')) else None
    shown = ([(source, 'source')] if source is not None else []) + [
        (image, f'seed {args.seed + index}') for index, image in enumerate(images)]
    sheet = os.path.join(args.out, f'sheet_{width}x{height}_seed{args.seed}-{args.seed + len(images) - 1}.png')
    utils.save_side_by_side(*zip(*shown), sheet, height=SHEET_HEIGHT)
    print(f"{len(written)} sample{'s' if len(written) != 1 else ''} in {args.out}, contact sheet {sheet}"
          f"{f' (the first {len(images)})' if len(images) < len(written) else ''}", file=sys.stderr)
    return 130 if len(written) < args.count else 0


def cli(argv=None):
    import commandline
    with quiet_stderr():
        import weights as vgg_weights
    return commandline.command_line(main, argv, after='this sample', errors=(vgg_weights.WeightsError,))


if __name__ == '__main__':
    sys.exit(cli())
