"""The memory check: its estimate against measured peaks, the free memory (psutil), and the size it suggests."""
import pytest

import losses
import options
from utils import InputError

# train.py's default layers when the peaks below were measured
DEFAULT = ['conv1_1', 'conv1_2', 'conv2_1', 'conv2_2', 'conv3_1', 'conv3_2', 'conv3_3', 'conv4_1']
ALL_CONV = list(losses.GRAM_LAYERS)
# Peak memory measured with /usr/bin/time (docs/benchmarks.md, peak memory): texture1 from a 256 px source.
MEASURED_GB = [
    ((1024, 1024), 'gram', 'bfloat16', DEFAULT, 2.63), ((1536, 1536), 'gram', 'bfloat16', DEFAULT, 4.49),
    ((2048, 2048), 'gram', 'bfloat16', DEFAULT, 7.12), ((1024, 1024), 'gram', 'float32', DEFAULT, 3.61),
    ((2048, 2048), 'gram', 'float32', DEFAULT, 11.47), ((1024, 1024), 'swd', 'bfloat16', DEFAULT, 6.81),
    ((1024, 1024), 'gram+swd', 'bfloat16', DEFAULT, 7.22), ((2048, 2048), 'gram+swd', 'bfloat16', DEFAULT, 24.07),
    ((1024, 1024), 'gram+swd', 'float32', DEFAULT, 7.83), ((2048, 2048), 'gram', 'bfloat16', ALL_CONV, 8.30),
    ((1024, 1024), 'gram', 'float32', ALL_CONV, 4.76), ((1024, 1024), 'gram+swd', 'bfloat16', ALL_CONV, 7.89)]


@pytest.mark.parametrize('shape, loss, precision, layers, measured', MEASURED_GB)
def test_estimate_covers_measured_peaks_closely(shape, loss, precision, layers, measured):
    estimate = options.estimated_memory_gb(shape, loss, precision, layers)
    assert measured <= estimate <= 1.3 * measured


def test_available_memory_is_the_free_ram_and_swap(monkeypatch):
    import types
    import psutil
    monkeypatch.setattr(psutil, 'virtual_memory', lambda: types.SimpleNamespace(available=8 * 2**30))
    monkeypatch.setattr(psutil, 'swap_memory', lambda: types.SimpleNamespace(free=2**30))
    assert options.available_memory_gb() == pytest.approx(9.0)

    def unreadable():
        raise RuntimeError('not on this platform')
    monkeypatch.setattr(psutil, 'virtual_memory', unreadable)
    assert options.available_memory_gb() is None


@pytest.mark.parametrize('loss', ['gram', 'swd'])
def test_too_large_is_refused_and_the_suggested_size_fits(monkeypatch, loss):
    monkeypatch.setattr(options, 'available_memory_gb', lambda: 6.0)
    options.check_memory((1024, 1024), 'gram', 'bfloat16', DEFAULT, '--output-size')  # 2.9 GB: fine
    with pytest.raises(InputError, match=r'needs about [\d.]+ GB of memory and 6.0 GB is free') as refused:
        options.check_memory((3000, 2000), loss, 'bfloat16', DEFAULT, '--output-size')
    suggested = str(refused.value).split('--output-size ')[1].split()[0]
    width, height = map(int, suggested.split('x'))
    assert width / height == pytest.approx(2000 / 3000, rel=0.02)  # the same shape, smaller
    options.check_memory((height, width), loss, 'bfloat16', DEFAULT, '--output-size')
    assert options.estimated_memory_gb((height + 16, width + 16), loss, 'bfloat16', DEFAULT) > 6.0  # not far too small


def test_unknown_free_memory_checks_nothing(monkeypatch):
    monkeypatch.setattr(options, 'available_memory_gb', lambda: None)
    options.check_memory((100000, 100000), 'gram', 'float32', DEFAULT, '--size')


def test_on_a_gpu_tensorflow_reports_its_own_out_of_memory(monkeypatch):
    # Host memory says nothing about the GPU's; cli() reports TensorFlow's ResourceExhaustedError.
    monkeypatch.setattr(options, 'available_memory_gb', lambda: 6.0)
    monkeypatch.setattr(options, 'gpu_visible', lambda: True)
    options.check_memory((4096, 4096), 'gram', 'float32', DEFAULT, '--output-size')


@pytest.mark.parametrize('devices, visible, expected', [
    ([], '0', False),                                      # no GPU driver: TensorFlow cannot see one
    (['/proc/driver/nvidia/gpus/0000:01:00.0'], '0', None),  # a driver: only TensorFlow can tell
    (['/dev/dxg'], None, None),                            # WSL2's GPU
    (['/dev/kfd'], None, None),                            # ROCm
    (['/proc/driver/nvidia/gpus/0000:01:00.0'], '', False),  # hidden by CUDA_VISIBLE_DEVICES
    (['/proc/driver/nvidia/gpus/0000:01:00.0'], '-1', False),
])
def test_no_gpu_is_known_without_loading_tensorflow(monkeypatch, devices, visible, expected):
    # Loading TensorFlow to ask costs seconds before an option error could be shown.
    monkeypatch.setattr(options.sys, 'platform', 'linux')
    monkeypatch.setattr(options, 'gpu_device_paths', lambda: devices)
    if visible is None:
        monkeypatch.delenv('CUDA_VISIBLE_DEVICES', raising=False)
    else:
        monkeypatch.setenv('CUDA_VISIBLE_DEVICES', visible)
    assert options.gpu_unavailable_for_sure() is (expected is False)
