"""train.py --content/--style end to end: outputs, bad input; with real weights, what a user sees."""
import csv
import json
import os

import numpy as np
import pytest
from PIL import Image

import colour
import synthesize
import train
from conftest import ROOT, real_weights_path
from test_train import only_run_dir, run_script
from utils import load_image


@pytest.fixture
def pictures(tmp_path):
    """A 48x64 'photo' (the shipped cat) and two 40 px styles, in a temporary folder."""
    images = os.path.join(ROOT, 'images')
    paths = {}
    for name, source, size in [('content', 'chelsea.jpg', (64, 48)), ('style1', 'texture1.jpg', (40, 40)),
                               ('style2', 'texture4.jpg', (40, 40))]:
        paths[name] = str(tmp_path / f'{name}.png')
        Image.open(os.path.join(images, source)).convert('RGB').resize(size).save(paths[name])
    return paths


def test_style_transfer_writes_the_run_folder(pictures, tiny_weights_path, tmp_path, capsys):
    out = str(tmp_path / 'runs')
    code = train.cli(['--content', pictures['content'], '--style', f"{pictures['style1']},{pictures['style2']}",
                      '--style-blend', '0.7,0.3', '--size', '48', '--iterations', '6', '--save-every', '3',
                      '--layers', 'conv1_1,pool1,pool2', '--content-layers', 'conv2_2',
                      '--weights', tiny_weights_path, '--out', out])
    assert code == 0, capsys.readouterr().err
    run = only_run_dir(out)
    assert os.path.basename(run).startswith('content_style1_style2-')
    assert sorted(os.listdir(run)) == ['comparison.png', 'config.json', 'history.csv', 'loss.png',
                                       'result.png', 'steps']
    assert sorted(os.listdir(os.path.join(run, 'steps'))) == ['step_00003.png', 'step_00006.png']
    assert Image.open(os.path.join(run, 'result.png')).size == (64, 48)  # the content's shape
    with open(os.path.join(run, 'history.csv')) as handle:
        rows = list(csv.DictReader(handle))
    assert set(rows[0]) == {'step', 'seconds', 'total', 'style', 'content', 'tv', 'conv1_1', 'pool1', 'pool2'}
    assert float(rows[0]['content']) < 1e-5  # starts from the content image (bfloat16 rounding aside)
    assert float(rows[-1]['total']) < float(rows[0]['total'])
    config = json.load(open(os.path.join(run, 'config.json')))
    assert config['mode'] == 'style' and config['init'] == 'content' and config['status'] == 'finished'
    assert config['style_blend'] == [0.7, 0.3] and config['content_layer_weights'] == {'conv2_2': 1.0}
    assert config['output_shape'] == [48, 64] and config['style_shapes'] == [[48, 48], [48, 48]]
    # content | style1 | style2 | result
    assert Image.open(os.path.join(run, 'comparison.png')).width > 3 * 256


def test_preserve_colors_and_init_from_an_image(pictures, tiny_weights_path, tmp_path, capsys):
    out = str(tmp_path / 'runs')
    code = train.cli(['--content', pictures['content'], '--style', pictures['style1'], '--preserve-colors',
                      '--init', pictures['style2'], '--size', '48', '--iterations', '3', '--layers',
                      'conv1_1,pool1', '--style-scale', '0.5', '--weights', tiny_weights_path, '--out', out])
    assert code == 0, capsys.readouterr().err
    run = only_run_dir(out)
    config = json.load(open(os.path.join(run, 'config.json')))
    assert config['style_shapes'] == [[24, 24]] and config['preserve_colors']
    result = load_image(os.path.join(run, 'result.png'))
    content = load_image(pictures['content'])
    chroma = lambda image: colour.rgb_to_yiq(image)[..., 1:]  # noqa: E731
    # The result's colours are the content's (up to clipping and 8-bit rounding).
    assert np.abs(chroma(result) - chroma(content)).mean() < 0.01


def test_preserve_colors_coarse_to_fine(pictures, tiny_weights_path, tmp_path, capsys):
    """Coarse stages are smaller than the photo: their saved steps get the photo's colours too."""
    out = str(tmp_path / 'runs')
    code = train.cli(['--content', pictures['content'], '--style', pictures['style1'], '--preserve-colors',
                      '--size', '48', '--scales', '0.5,1', '--iterations', '2,2', '--save-every', '1',
                      '--layers', 'conv1_1,pool1', '--weights', tiny_weights_path, '--out', out])
    assert code == 0, capsys.readouterr().err
    run = only_run_dir(out)
    assert load_image(os.path.join(run, 'steps', 'step_00002.png')).shape == (24, 32, 3)  # the coarse stage
    assert load_image(os.path.join(run, 'result.png')).shape == (48, 64, 3)
    assert json.load(open(os.path.join(run, 'config.json')))['status'] == 'finished'


STYLE_BAD_INPUTS = [
    (['--content', 'chelsea.jpg'], 'needs both --content and --style'),
    (['--style', 'texture1.jpg'], 'needs both --content and --style'),
    (['--image', 'texture1.jpg', '--content', 'chelsea.jpg', '--style', 'texture1.jpg'], 'do not mix'),
    (['--image', 'texture1.jpg', '--preserve-colors'], 'is for style transfer'),
    (['--image', 'texture1.jpg', '--init', 'content'], '--init content is for style transfer'),
    (['--image', 'texture1.jpg', '--init', 'noisy'], '--init must be'),
    (['--content', 'chelsea.jpg', '--style', 'nowhere.jpg'], 'image not found: nowhere.jpg'),
    (['--content', 'chelsea.jpg', '--style', 'texture1.jpg', '--content-weight', '-1'],
     '--content-weight must be a finite number >= 0'),
    (['--content', 'chelsea.jpg', '--style', 'texture1.jpg', '--tv-weight', 'inf'],
     '--tv-weight must be a finite number >= 0'),
    (['--content', 'chelsea.jpg', '--style', 'texture1.jpg', '--content-weight', '0', '--style-weight', '0'],
     'nothing to transfer'),
    (['--content', 'chelsea.jpg', '--style', 'texture1.jpg,texture2.jpg', '--style-blend', '1'],
     'has 1 weights for 2 style image(s)'),
    (['--content', 'chelsea.jpg', '--style', 'texture1.jpg,texture2.jpg', '--style-blend', '0,0'],
     'not all 0'),
    (['--content', 'chelsea.jpg', '--style', 'texture1.jpg', '--content-layers', 'conv4_9'],
     "unknown layer 'conv4_9'"),
    (['--content', 'chelsea.jpg', '--style', 'texture1.jpg', '--style-scale', '0.01'],
     'style texture1.jpg (after --style-scale) is 3x3 px, too small'),
    (['--content', 'chelsea.jpg', '--style', 'texture1.jpg', '--size', '6'], 'the content image'),
    (['--content', 'chelsea.jpg', '--style', 'texture1.jpg', '--output-size', '64'], 'use --size'),
]


@pytest.mark.parametrize('args, message', STYLE_BAD_INPUTS, ids=[m for _, m in STYLE_BAD_INPUTS])
def test_style_bad_input_is_one_line(tiny_weights_path, tmp_path, args, message):
    result = run_script(args + ['--weights', tiny_weights_path, '--out', str(tmp_path / 'runs'),
                                '--iterations', '1'])
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not os.path.exists(tmp_path / 'runs')


# ---------------------------------------------------------------- with the real weights

def vgg_statistics(weights, image, layers):
    """{layer: Gram} and {layer: features} of one image, from the real network."""
    graph = synthesize.Graph(weights, synthesize.Objective.texture(image, {layer: 1.0 for layer in layers}),
                             image.shape[:2])
    graph.set_image(image)
    features = {layer: value[0] for layer, value in graph.session.run(
        {layer: getattr(graph.noise_model, layer) for layer in layers}).items()}
    graph.close()
    grams = {layer: f.reshape(-1, f.shape[-1]).T @ f.reshape(-1, f.shape[-1]) / f.size
             for layer, f in features.items()}
    return grams, features


def test_real_weights_move_style_and_keep_content(real_weights, tmp_path, capsys):
    out = str(tmp_path / 'runs')
    code = train.cli(['--content', 'chelsea.jpg', '--style', 'texture1.jpg', '--size', '64',
                      '--iterations', '40', '--save-every', '0', '--weights', real_weights_path(), '--out', out])
    assert code == 0, capsys.readouterr().err
    run = only_run_dir(out)
    result = load_image(os.path.join(run, 'result.png'))
    content = load_image(os.path.join(ROOT, 'images', 'chelsea.jpg'), 64)
    style = np.asarray(Image.fromarray((load_image(os.path.join(ROOT, 'images', 'texture1.jpg')) * 255)
                                       .astype(np.uint8)).resize(content.shape[1::-1]), np.float32) / 255
    layers = ['conv1_1', 'conv2_1', 'conv3_1', 'conv4_2']
    stats = {name: vgg_statistics(real_weights, image, layers)
             for name, image in [('result', result), ('content', content), ('style', style)]}

    def gram_distance(a, b):
        return sum(np.sum((stats[a][0][layer] - stats[b][0][layer]) ** 2) for layer in layers[:3])

    def feature_distance(a, b):
        return np.mean((stats[a][1]['conv4_2'] - stats[b][1]['conv4_2']) ** 2)

    # The Grams moved most of the way from the photo's to the style's...
    assert gram_distance('result', 'style') < gram_distance('content', 'style') / 5
    # ...while the content features stayed nearer the photo than the style image is.
    assert feature_distance('result', 'content') < feature_distance('style', 'content') / 2
    assert feature_distance('result', 'content') < feature_distance('result', 'style')
