"""The network: layer names, shapes, preprocessing, shared weights."""
import numpy as np
import pytest
import tensorflow as tf

import vgg16
from conftest import TINY_WIDTHS


def build(weights, size=(64, 48), pooling='avg', up_to='pool5'):
    graph = tf.Graph()
    with graph.as_default():
        rgb = tf.compat.v1.placeholder(tf.float32, [1, *size, 3])
        model = vgg16.Vgg16(weights, pooling).build(rgb, up_to)
    return graph, rgb, model


def test_every_layer_is_an_attribute_with_the_right_shape(tiny_weights):
    _, _, model = build(tiny_weights, (64, 48))
    for name in vgg16.LAYER_NAMES:
        tensor = getattr(model, name)
        scale = 2 ** vgg16.downsampling(name)
        width = TINY_WIDTHS[name[4]]  # pool layers keep their block's width
        assert tensor.shape.as_list() == [1, 64 // scale, 48 // scale, width], name


def test_layer_order_and_count():
    assert len(vgg16.CONV_LAYERS) == 13
    assert vgg16.LAYER_NAMES[:3] == ('conv1_1', 'conv1_2', 'pool1')
    assert vgg16.LAYER_NAMES[-1] == 'pool5'
    assert vgg16.min_input_size('conv1_1') == 1
    assert vgg16.min_input_size('pool4') == 16
    assert vgg16.deepest(['pool2', 'conv1_1', 'conv3_1']) == 'conv3_1'


def test_build_stops_at_the_deepest_layer_needed(tiny_weights):
    graph, _, model = build(tiny_weights, up_to='pool2')
    assert model.pool2 is not None
    with pytest.raises(AttributeError, match='not built'):
        model.conv3_1
    assert not any('conv3_1' in op.name for op in graph.get_operations() if 'vgg16/' in op.name)
    # Nor the weights of the layers it doesn't build: they would be copied into every session.
    kernels = [op.name for op in graph.get_operations() if op.type == 'Const' and op.name.endswith('_kernel')]
    assert sorted(name.split('/')[-1] for name in kernels) == [
        'conv1_1_kernel', 'conv1_2_kernel', 'conv2_1_kernel', 'conv2_2_kernel']


def test_shared_weights_up_to_a_layer(tiny_weights):
    with tf.Graph().as_default():
        assert list(vgg16.weight_tensors(tiny_weights, up_to='conv3_1')) == [
            'conv1_1', 'conv1_2', 'conv2_1', 'conv2_2', 'conv3_1']
        assert len(vgg16.weight_tensors(tiny_weights)) == 13


def test_two_models_share_one_copy_of_the_weights(tiny_weights):
    graph = tf.Graph()
    with graph.as_default():
        shared = vgg16.weight_tensors(tiny_weights)
        vgg16.Vgg16(shared).build(tf.zeros([1, 32, 32, 3]))
        vgg16.Vgg16(shared).build(tf.zeros([1, 48, 32, 3]))
    constants = [op for op in graph.get_operations() if op.type == 'Const' and 'kernel' in op.name]
    assert len(constants) == 13


def test_preprocessing_is_bgr_times_255_minus_imagenet_mean(tiny_weights):
    graph, rgb, model = build(tiny_weights, (2, 2), up_to="conv1_1")
    image = np.random.default_rng(0).uniform(size=(1, 2, 2, 3)).astype(np.float32)
    with tf.compat.v1.Session(graph=graph) as session:
        bgr = session.run(model.bgr, {rgb: image})
    expected = image[..., ::-1] * 255.0 - np.array(vgg16.IMAGENET_MEAN_BGR, np.float32)
    np.testing.assert_allclose(bgr, expected, rtol=1e-6)


def test_first_layer_is_conv_plus_bias_then_relu(tiny_weights):
    graph, rgb, model = build(tiny_weights, (5, 4), up_to='conv1_1')
    image = np.random.default_rng(1).uniform(size=(1, 5, 4, 3)).astype(np.float32)
    with tf.compat.v1.Session(graph=graph) as session:
        bgr, out = session.run([model.bgr, model.conv1_1], {rgb: image})
    kernel, bias = tiny_weights['conv1_1']
    padded = np.pad(bgr[0], ((1, 1), (1, 1), (0, 0)))
    expected = np.zeros(out.shape[1:])
    for y in range(5):
        for x in range(4):
            patch = padded[y:y + 3, x:x + 3, :]
            expected[y, x] = np.tensordot(patch, kernel, axes=3) + bias
    np.testing.assert_allclose(out[0], np.maximum(expected, 0), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('pooling, reduce', [('avg', np.mean), ('max', np.max)])
def test_pooling_kind(tiny_weights, pooling, reduce):
    graph, rgb, model = build(tiny_weights, (8, 8), pooling=pooling, up_to='pool1')
    with tf.compat.v1.Session(graph=graph) as session:
        before, after = session.run([model.conv1_2, model.pool1],
                                    {rgb: np.random.default_rng(2).uniform(size=(1, 8, 8, 3))})
    expected = reduce(before[0].reshape(4, 2, 4, 2, -1), axis=(1, 3))
    np.testing.assert_allclose(after[0], expected, rtol=1e-5, atol=1e-6)


def test_unknown_pooling_is_refused(tiny_weights):
    with pytest.raises(ValueError, match='pooling'):
        vgg16.Vgg16(tiny_weights, pooling='median')


def test_real_network_separates_textures(real_weights):
    """With ImageNet weights, deep features respond to structure: a sanity check of the load."""
    graph, rgb, model = build(real_weights, (64, 64), up_to='conv3_1')
    flat = np.full((1, 64, 64, 3), 0.5, np.float32)
    stripes = np.tile((np.arange(64) // 4 % 2).astype(np.float32)[None, :, None, None], (1, 1, 64, 3))
    stripes = np.transpose(stripes, (0, 2, 1, 3))
    with tf.compat.v1.Session(graph=graph) as session:
        flat_features = session.run(model.conv3_1, {rgb: flat})
        stripe_features = session.run(model.conv3_1, {rgb: stripes})
    # Edges excite conv3_1 far more than a flat grey image does.
    assert stripe_features.mean() > 3 * flat_features[:, 4:-4, 4:-4].mean()


def test_no_argument_constructor_finds_weights_like_the_course(tiny_weights_path, monkeypatch):
    monkeypatch.setenv('VGG16_WEIGHTS', tiny_weights_path)
    with tf.Graph().as_default():
        model = vgg16.Vgg16().build(tf.zeros([1, 32, 32, 3]))
    assert model.conv5_3.shape.as_list() == [1, 2, 2, TINY_WIDTHS['5']]


def test_tileable_network_sees_a_torus(tiny_weights):
    """With circular padding, shifting the image cyclically shifts every feature map the same way."""
    image = np.random.default_rng(0).uniform(0, 1, (1, 32, 32, 3)).astype(np.float32)
    shifted = np.roll(image, (8, 16), (1, 2))
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        placeholder = tf.compat.v1.placeholder(tf.float32, [1, 32, 32, 3])
        model = vgg16.Vgg16(tiny_weights, padding='circular').build(placeholder, 'conv4_1')
        plain = vgg16.Vgg16(tiny_weights).build(placeholder, 'conv4_1')
        torus, torus_shifted = [session.run(model.conv4_1, {placeholder: x}) for x in (image, shifted)]
        flat, flat_shifted = [session.run(plain.conv4_1, {placeholder: x}) for x in (image, shifted)]
    # conv4_1 is 1/8 size: the shift (8, 16) becomes (1, 2).
    np.testing.assert_allclose(np.roll(torus, (1, 2), (1, 2)), torus_shifted, rtol=1e-4, atol=1e-5)
    assert not np.allclose(np.roll(flat, (1, 2), (1, 2)), flat_shifted, rtol=1e-4, atol=1e-5)


def test_mirror_padding_has_no_border_of_its_own(tiny_weights):
    """A flat image looks the same at every position through a mirror; zero padding frames it."""
    flat = np.full((1, 32, 32, 3), 0.3, np.float32)
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        placeholder = tf.compat.v1.placeholder(tf.float32, [1, 32, 32, 3])
        mirrored = vgg16.Vgg16(tiny_weights, padding='reflect').build(placeholder, 'conv3_1')
        framed = vgg16.Vgg16(tiny_weights).build(placeholder, 'conv3_1')
        mirrored, framed = session.run([mirrored.conv3_1, framed.conv3_1], {placeholder: flat})
    np.testing.assert_allclose(mirrored, np.broadcast_to(mirrored[:, :1, :1], mirrored.shape), rtol=1e-5, atol=1e-6)
    assert not np.allclose(framed, np.broadcast_to(framed[:, 4:5, 4:5], framed.shape), rtol=1e-3, atol=1e-4)
