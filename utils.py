"""Images and files: reading, resizing, noise, and writing outputs safely.

Images are float32 numpy arrays [H, W, 3], RGB in [0, 1]. Every write goes to
a temporary name in the same folder and is then renamed, so a crash or Ctrl-C
never leaves a half-written file under the real name.
"""
import contextlib
import csv
import json
import os
import sys

import numpy as np
from PIL import Image, ImageDraw, UnidentifiedImageError

PROJECT_DIR = os.path.dirname(os.path.abspath(__file__))
IMAGES_DIR = os.path.join(PROJECT_DIR, 'images')
VERSION = '0.6.0'  # the toolkit's release; config.json also records the git commit where there is one
# oneDNN's CPU kernels: TensorFlow turns them on by itself only on CPUs with AVX-512 VNNI/BF16
# or AMX. On an AVX2-only CPU, like most laptops', VGG16's forward and backward pass ran
# 1.3-1.5x faster with them (docs/benchmarks.md). TensorFlow reads this once, when it loads, so it
# is set here, and every module that loads TensorFlow imports utils first. A value the user set wins.
os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '1')


def git_commit():
    """(commit, changed) of the project's git checkout, or (None, None) outside one or without git."""
    import subprocess
    try:
        commit = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=PROJECT_DIR, capture_output=True, text=True,
                                timeout=5)
        status = subprocess.run(['git', 'status', '--porcelain', '--untracked-files=no'], cwd=PROJECT_DIR,
                                capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None, None
    if commit.returncode != 0:
        return None, None
    return commit.stdout.strip(), bool(status.stdout.strip())


def project_version():
    """'0.6.0', with the commit where the project is a git checkout: '0.6.0 (git 1a2b3c4d, changed)'."""
    commit, changed = git_commit()
    if commit is None:
        return VERSION
    return f"{VERSION} (git {commit[:8]}{', changed' if changed else ''})"


class InputError(Exception):
    """Bad user input; the message is shown as one line."""


def check_folder_name(name, option='--name'):
    """InputError unless `name` is one plain folder name: no path, so nothing is written outside --out."""
    if not name or os.path.basename(os.path.normpath(name)) != name or name in ('.', '..') \
            or os.path.isabs(name) or os.sep in name or (os.altsep and os.altsep in name):
        raise InputError(f"{option} must be a plain folder name, not {name!r}")
    return name


def find_image(name):
    """A path as given, or a bare name looked up in the project's images/ folder."""
    if os.path.isfile(name):
        return name
    shipped = os.path.join(IMAGES_DIR, name)
    if os.path.dirname(name) == '' and os.path.isfile(shipped):
        return shipped
    available = ', '.join(sorted(f for f in os.listdir(IMAGES_DIR) if f.endswith(('.jpg', '.png'))))
    raise InputError(f"image not found: {name} (shipped textures in images/: {available})")


# Transparent pixels are composited on this background (white, as image viewers show them).
TRANSPARENT_BACKGROUND = (1.0, 1.0, 1.0)
EXIF_ORIENTATION = 0x0112      # the tag phone cameras set instead of turning the pixels
ORIENTATIONS_TURNED = (5, 6, 7, 8)  # EXIF orientations that swap width and height


def load_image(path, size=None):
    """Read an image as float RGB in [0, 1]; with `size`, scale its shorter side to `size`.

    Every mode Pillow opens is read at its real range: 8-bit, 16-bit (PNG, TIFF), 32-bit
    integer and float images alike (rgb_array). The image is turned upright as its EXIF
    orientation says, and transparent pixels are composited on TRANSPARENT_BACKGROUND.
    """
    with opened_image(path) as image:
        image = upright(image)
        if size:
            return resize_array(rgb_array(image), shorter_side_to(image.size, size)[::-1])
        return rgb_array(image)


def image_shape(path, size=None):
    """(height, width) of load_image(path, size), from the file's header alone: sizes can be
    checked before a huge `size` makes a huge image."""
    with opened_image(path) as image:
        width, height = image.size
        if image.getexif().get(EXIF_ORIENTATION) in ORIENTATIONS_TURNED:
            width, height = height, width
        width, height = shorter_side_to((width, height), size) if size else (width, height)
        return height, width


def upright(image):
    """The image as it should be seen: phone photos store their pixels sideways and an EXIF tag."""
    from PIL import ImageOps
    return ImageOps.exif_transpose(image) if image.getexif().get(EXIF_ORIENTATION, 1) != 1 else image


def rgb_array(image):
    """A Pillow image of any mode -> float32 [H, W, 3] in [0, 1].

    16-bit modes are divided by 65535, not clipped to 255 (which made them all white); 32-bit
    integer ('I') and float ('F') images carry no range of their own, so theirs is read off
    their values: [0, 1] as it is, else 8-bit or 16-bit if the values fit, else their own
    minimum to maximum.
    """
    if image.mode.startswith('I;16'):
        grey = np.asarray(image, np.float32) / 65535.0
    elif image.mode in ('I', 'F'):
        grey = np.asarray(image, np.float64)
        low, high = float(grey.min()), float(grey.max())
        if low >= 0 and high <= 1 and image.mode == 'F':
            pass
        elif low >= 0 and high <= 255:
            grey = grey / 255.0
        elif low >= 0 and high <= 65535:
            grey = grey / 65535.0
        else:
            grey = (grey - low) / max(high - low, 1e-12)
        grey = grey.astype(np.float32)
    elif image.mode in ('RGBA', 'LA', 'PA', 'RGBa', 'La') or 'transparency' in image.info:
        rgba = np.asarray(image.convert('RGBA'), np.float32) / 255.0
        alpha = rgba[..., 3:]
        return (rgba[..., :3] * alpha + np.float32(TRANSPARENT_BACKGROUND) * (1 - alpha)).astype(np.float32)
    else:
        return np.asarray(image.convert('RGB'), np.float32) / 255.0
    return np.repeat(np.clip(grey, 0.0, 1.0)[..., None], 3, axis=2)


def resize_array(image, shape):
    """[H, W, 3] in [0, 1] -> shape (height, width) with Lanczos, as Pillow resizes 8-bit images;
    8-bit content goes through Pillow's 8-bit path, so those results are exactly as before."""
    height, width = shape
    if image.shape[:2] == (height, width):
        return image
    as_bytes = np.round(image * 255.0)
    if np.allclose(as_bytes / 255.0, image, atol=1e-7):
        resized = Image.fromarray(as_bytes.astype(np.uint8)).resize((width, height), Image.LANCZOS)
        return np.asarray(resized, np.float32) / 255.0
    channels = [np.asarray(Image.fromarray(np.ascontiguousarray(image[..., c], np.float32), 'F')
                           .resize((width, height), Image.LANCZOS)) for c in range(3)]
    return np.clip(np.stack(channels, axis=-1), 0.0, 1.0).astype(np.float32)


@contextlib.contextmanager
def opened_image(path):
    """Image.open(path), with any failure to read or decode it as one InputError line."""
    try:
        with Image.open(path) as image:
            yield image
    except Image.DecompressionBombError as error:
        raise InputError(f"cannot read {path}: {error} (an image this large is refused as a possible "
                         "decompression bomb)") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise InputError(f"cannot read {path} as an image ({error})") from None


def shorter_side_to(image_size, size):
    """(width, height) scaled so that the shorter side is `size`."""
    width, height = image_size
    scale = size / min(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


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
    """write(temporary) then rename it to `path`: a failure leaves the old file, never half a new
    one. A disk that is full or read-only is an InputError naming the file and the reason."""
    temporary = f'{path}.{os.getpid()}.tmp'
    try:
        write(temporary)
        os.replace(temporary, path)
    except OSError as error:
        raise InputError(f"cannot write {path}: {error.strerror or error}") from None
    finally:
        if os.path.exists(temporary):
            with contextlib.suppress(OSError):
                os.remove(temporary)
    return path


def save_image(image, path):
    return atomic_write(path, lambda tmp: Image.fromarray(to_uint8(image)).save(tmp, format='PNG'))


def save_json(data, path):
    """Strict JSON: a NaN or infinite number (which json.dump would write as NaN, and strict
    parsers reject) is written as null."""
    def write(tmp):
        with open(tmp, 'w') as handle:
            json.dump(finite_or_none(data), handle, indent=2, sort_keys=False, allow_nan=False)
            handle.write('\n')
    return atomic_write(path, write)


def finite_or_none(data):
    if isinstance(data, float):
        return data if np.isfinite(data) else None
    if isinstance(data, dict):
        return {key: finite_or_none(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [finite_or_none(value) for value in data]
    return data


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
    # A Figure of its own, not pyplot's: the caller's backend (a notebook's) and figures stay as they were.
    from matplotlib.figure import Figure
    steps = [row['step'] for row in history]
    figure = Figure(figsize=(7, 4.5), dpi=100)
    axis = figure.subplots()
    axis.plot(steps, [row['total'] for row in history], color='black', linewidth=2, label='total')
    for column in columns:
        axis.plot(steps, [row.get(column, float('nan')) for row in history], linewidth=1, label=column)  # gaps
    axis.set_yscale('log')
    # Coarse to fine: each stage's losses are at its own size, so the curve jumps where one starts.
    for previous, row in zip(history, history[1:]):
        if row.get('scale', 1.0) != previous.get('scale', 1.0):
            axis.axvline(previous['step'], color='grey', linestyle='--', linewidth=1)
            # At the foot of the line: the legend takes the top corners.
            axis.annotate(f"scale {row['scale']:g} from here", (previous['step'], 0), xycoords=('data', 'axes fraction'),
                          xytext=(3, 4), textcoords='offset points', fontsize=8, color='grey')
    axis.set_xlabel(x_label)
    axis.set_ylabel('loss (the total; each term before its weight)')
    axis.legend(fontsize=7, ncol=2)
    axis.grid(True, which='both', alpha=0.3)
    figure.tight_layout()
    atomic_write(path, lambda tmp: figure.savefig(tmp, format='png'))
    return path


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
