"""Images and files: reading, resizing, noise, and writing outputs safely.

Images are float32 numpy arrays [H, W, 3], RGB in [0, 1]. Every write goes to
a temporary name in the same folder and is then renamed, so a crash or Ctrl-C
never leaves a half-written file under the real name.
"""
import contextlib
import csv
import faulthandler
import json
import os
import signal
import sys
import threading

import numpy as np
from PIL import Image, ImageDraw, UnidentifiedImageError

IMAGES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'images')
# oneDNN's CPU kernels: TensorFlow turns them on by itself only on CPUs with AVX-512 VNNI/BF16
# or AMX. On an AVX2-only CPU, like most laptops', VGG16's forward and backward pass ran
# 1.3-1.5x faster with them (docs/benchmarks.md). TensorFlow reads this once, when it loads, so it
# is set here, and every module that loads TensorFlow imports utils first. A value the user set wins.
os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '1')


class InputError(Exception):
    """Bad user input; the message is shown as one line."""


def find_image(name):
    """A path as given, or a bare name looked up in the project's images/ folder."""
    if os.path.isfile(name):
        return name
    shipped = os.path.join(IMAGES_DIR, name)
    if os.path.dirname(name) == '' and os.path.isfile(shipped):
        return shipped
    available = ', '.join(sorted(f for f in os.listdir(IMAGES_DIR) if f.endswith(('.jpg', '.png'))))
    raise InputError(f"image not found: {name} (shipped textures in images/: {available})")


def load_image(path, size=None):
    """Read an image as float RGB in [0, 1]; with `size`, scale its shorter side to `size`."""
    with opened_image(path) as image:
        image = image.convert('RGB')
        if size:
            image = resize_shorter_side(image, size)
        return np.asarray(image, np.float32) / 255.0


def image_shape(path, size=None):
    """(height, width) of load_image(path, size), from the file's header alone: sizes can be
    checked before a huge `size` makes a huge image."""
    with opened_image(path) as image:
        width, height = shorter_side_to(image.size, size) if size else image.size
        return height, width


@contextlib.contextmanager
def opened_image(path):
    """Image.open(path), with any failure to read or decode it as one InputError line."""
    try:
        with Image.open(path) as image:
            yield image
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise InputError(f"cannot read {path} as an image ({error})") from None


def shorter_side_to(image_size, size):
    """(width, height) scaled so that the shorter side is `size`."""
    width, height = image_size
    scale = size / min(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def resize_shorter_side(image, size):
    new_size = shorter_side_to(image.size, size)
    return image.resize(new_size, Image.LANCZOS) if new_size != image.size else image


WRAP_MARGIN = 4  # input pixels wrapped around before a tileable resize: more than bicubic's reach


def resize(image, shape, wrap=False):
    """[H, W, 3] float image -> shape (height, width), bicubic per channel, clipped to [0, 1].

    wrap: the image is a tile (a torus); each edge is resized with the opposite edge as its
    neighbour, so a tileable image stays seamless (otherwise the edges are clamped).
    """
    height, width = shape
    margins = (0, 0)
    if wrap:
        # Margins in output pixels, whole so the crop is exact when the scale is a whole ratio.
        margins = tuple(round(WRAP_MARGIN * out / side) for out, side in zip(shape, image.shape[:2]))
        image = np.pad(image, ((WRAP_MARGIN, WRAP_MARGIN), (WRAP_MARGIN, WRAP_MARGIN), (0, 0)), mode='wrap')
    size = (width + 2 * margins[1], height + 2 * margins[0])
    channels = [np.asarray(Image.fromarray(np.ascontiguousarray(image[..., c], np.float32))
                           .resize(size, Image.BICUBIC)) for c in range(image.shape[-1])]
    resized = np.stack(channels, axis=-1)[margins[0]:margins[0] + height, margins[1]:margins[1] + width]
    return np.clip(resized, 0.0, 1.0).astype(np.float32)


def to_uint8(image):
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


INITS = ('mean-noise', 'uniform')
# Amplitude of the Gaussian noise around the source's mean colour ('mean-noise').
# Small on purpose: pixel noise that VGG barely sees is never optimised away,
# so whatever the start has of it stays in the result (uniform noise leaves
# visible colour speckle after 200 L-BFGS iterations; see docs/design.md).
MEAN_NOISE_STD = 0.02


def initial_image(source, shape, seed, kind='mean-noise'):
    """The starting image [H, W, 3] in [0, 1], reproducible from `seed`.

    'mean-noise': the source's mean colour plus small Gaussian noise, i.i.d. per
                  pixel, so it carries nothing of the source's layout.
    'uniform':    uniform noise in [0, 1], Gatys et al.'s start.
    """
    rng = np.random.default_rng(seed)
    if kind == 'uniform':
        return rng.uniform(0.0, 1.0, shape).astype(np.float32)
    if kind == 'mean-noise':
        mean_colour = source.reshape(-1, 3).mean(axis=0)
        return np.clip(mean_colour + rng.normal(0.0, MEAN_NOISE_STD, shape), 0.0, 1.0).astype(np.float32)
    raise ValueError(f"init must be one of {INITS}, not {kind!r}")


# ---------------------------------------------------------------- atomic writes

def atomic_write(path, write):
    temporary = f'{path}.{os.getpid()}.tmp'
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return path


def save_image(image, path):
    return atomic_write(path, lambda tmp: Image.fromarray(to_uint8(image)).save(tmp, format='PNG'))


def save_json(data, path):
    def write(tmp):
        with open(tmp, 'w') as handle:
            json.dump(data, handle, indent=2, sort_keys=False)
            handle.write('\n')
    return atomic_write(path, write)


def save_csv(rows, path):
    """Rows are dicts; the header is every key in order of first appearance, a missing value
    is left empty (a coarse stage has no loss for the layers it leaves out)."""
    fields = list(dict.fromkeys(key for row in rows for key in row))

    def write(tmp):
        with open(tmp, 'w', newline='') as handle:
            writer = csv.DictWriter(handle, fieldnames=fields, restval='')
            writer.writeheader()
            writer.writerows(rows)
    return atomic_write(path, write)


def save_side_by_side(images, labels, path, height=256, gap=8):
    """A strip of images, each labelled underneath, all at one scale (the tallest is `height`).

    One scale for all, so a texture's features compare at their true size even
    when the result is larger than the source.
    """
    scale = height / max(image.shape[0] for image in images)
    tiles = []
    for image in images:
        tile = Image.fromarray(to_uint8(image))
        size = (max(1, round(tile.width * scale)), max(1, round(tile.height * scale)))
        tiles.append(tile.resize(size, Image.LANCZOS))
    label_height = 16
    strip = Image.new('RGB', (sum(t.width for t in tiles) + gap * (len(tiles) - 1),
                              height + label_height), 'white')
    draw = ImageDraw.Draw(strip)
    x = 0
    for tile, label in zip(tiles, labels):
        strip.paste(tile, (x, 0))
        draw.text((x + 2, height + 2), label, fill='black')
        x += tile.width + gap
    return atomic_write(path, lambda tmp: strip.save(tmp, format='PNG'))


def save_loss_plot(history, columns, path, x_label='iteration'):
    """The total and the given history columns against step, log scale, as a PNG."""
    import matplotlib
    matplotlib.use('Agg')  # no display needed
    import matplotlib.pyplot as plt
    steps = [row['step'] for row in history]
    figure, axis = plt.subplots(figsize=(7, 4.5), dpi=100)
    axis.plot(steps, [row['total'] for row in history], color='black', linewidth=2, label='total')
    for column in columns:
        axis.plot(steps, [row.get(column, float('nan')) for row in history], linewidth=1, label=column)  # gaps
    axis.set_yscale('log')
    axis.set_xlabel(x_label)
    axis.set_ylabel('loss (terms before their weights)')
    axis.legend(fontsize=7, ncol=2)
    axis.grid(True, which='both', alpha=0.3)
    figure.tight_layout()
    atomic_write(path, lambda tmp: figure.savefig(tmp, format='png'))
    plt.close(figure)
    return path


def report_crashes():
    """A crash inside TensorFlow's C++ code then still prints the Python lines it came from."""
    if not faulthandler.is_enabled() and sys.__stderr__ is not None:  # pytest and -X faulthandler have it on
        faulthandler.enable(file=sys.__stderr__)


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)  # Ctrl-C; `kill`, or a batch scheduler's time limit


@contextlib.contextmanager
def stop_requests(after='this step'):
    """Within this block Ctrl-C and SIGTERM ask the run to stop; yields a threading.Event they set.

    The run checks the event between steps and then stops as if interrupted, saving its work.
    Python's default Ctrl-C raises KeyboardInterrupt at whatever bytecode is running, inside
    TensorFlow's own Python code too; a run stopped that way in CI once died of a segmentation
    fault before saving anything. A second signal still raises at once, for a step that takes
    too long. SIGTERM is what SLURM sends at its time limit. Outside the main thread (where
    handlers cannot be set) the event is never set.
    """
    requested = threading.Event()
    message = f"stopping after {after} and saving (Ctrl-C again to stop now)\n".encode()
    terminal = os.dup(2)  # fd 2 itself may be in quiet_stderr's capture file when the signal comes

    def stop(signum, frame):
        if requested.is_set():
            raise KeyboardInterrupt
        requested.set()
        # os.write, not print: a print here, while the loop is inside sys.stderr.write (the
        # progress bar), would raise "reentrant call" at that point in the loop.
        with contextlib.suppress(OSError):
            os.write(terminal, message)

    try:
        previous = {number: signal.signal(number, stop) for number in STOP_SIGNALS}
    except ValueError:  # not the main thread
        previous = {}
    try:
        yield requested
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        os.close(terminal)


class quiet_stderr:
    """Send file descriptor 2 to a temporary file for a while (TensorFlow's C++ logs).

    On an exception the captured text is written back, so nothing needed to
    understand a failure is lost.
    """

    def __enter__(self):
        import tempfile
        self.capture = tempfile.TemporaryFile(mode='w+b')
        sys.stderr.flush()
        self.saved = os.dup(2)
        os.dup2(self.capture.fileno(), 2)
        return self

    def __exit__(self, kind, value, traceback):
        sys.stderr.flush()
        os.dup2(self.saved, 2)
        os.close(self.saved)
        if kind is not None and not issubclass(kind, KeyboardInterrupt):
            self.capture.seek(0)
            sys.stderr.write(self.capture.read().decode(errors='replace'))
        self.capture.close()
        return False
