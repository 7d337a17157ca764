"""The optimisation loop itself: both optimisers, stopping early, bounds."""
import threading

import numpy as np
import pytest
import tensorflow as tf

import synthesize
import vgg16

SOURCE = np.random.default_rng(3).uniform(0, 1, (32, 32, 3)).astype(np.float32)
LAYERS = {'conv1_1': 1.0, 'pool1': 1.0}
TEXTURE = synthesize.Objective.texture(SOURCE, LAYERS)


@pytest.mark.parametrize('optimizer', synthesize.OPTIMIZERS)
def test_steps_are_numbered_and_images_stay_valid(tiny_weights, optimizer):
    steps = list(synthesize.synthesize(tiny_weights, TEXTURE, (24, 40),
                                       optimizer=optimizer, iterations=4))
    assert [step for step, _, _ in steps] == [0, 1, 2, 3, 4]
    for _, image, losses in steps:
        assert image.shape == (24, 40, 3) and image.dtype == np.float32
        assert image.min() >= 0.0 and image.max() <= 1.0
        assert set(losses) == {'total', 'conv1_1', 'pool1'}
        assert losses['total'] == pytest.approx(losses['conv1_1'] + losses['pool1'], rel=1e-5)
    assert steps[-1][2]['total'] < steps[0][2]['total']


def test_reported_losses_belong_to_the_reported_image(tiny_weights):
    """Each (image, losses) pair is consistent: re-evaluating the image gives the same losses."""
    for optimizer in synthesize.OPTIMIZERS:
        steps = list(synthesize.synthesize(tiny_weights, TEXTURE, (32, 32),
                                           optimizer=optimizer, iterations=3))
        graph = synthesize.Graph(tiny_weights, TEXTURE, (32, 32))
        for _, image, losses in steps:
            graph.set_image(image)
            assert graph.evaluate()[0]['total'] == pytest.approx(losses['total'], rel=1e-4)
        graph.close()


def test_stopping_lbfgs_early_leaves_no_thread_behind(tiny_weights):
    before = threading.active_count()
    steps = synthesize.synthesize(tiny_weights, TEXTURE, (32, 32), iterations=1000)
    for step, _, _ in steps:
        if step == 3:
            break
    steps.close()
    assert threading.active_count() == before


def test_lbfgs_never_evaluates_the_same_image_twice_in_a_row(tiny_weights, monkeypatch):
    """Step 0's evaluation is also scipy's first call: each evaluation costs a VGG pass."""
    evaluated = []
    evaluate = synthesize.Graph.evaluate

    def recording(graph):
        evaluated.append(graph.session.run(graph.image).copy())
        return evaluate(graph)
    monkeypatch.setattr(synthesize.Graph, 'evaluate', recording)
    steps = list(synthesize.synthesize(tiny_weights, TEXTURE, (32, 32), iterations=5))
    assert len(steps) == 6 and len(evaluated) >= 6
    assert not any(np.array_equal(a, b) for a, b in zip(evaluated, evaluated[1:]))


@pytest.mark.parametrize('stop_at', [2, 5])  # in the coarse stage, with the next one built ahead; in the last
def test_stopping_early_closes_every_graph_built(tiny_weights, monkeypatch, stop_at):
    graphs = []
    init = synthesize.Graph.__init__

    def recording(graph, *args, **kwargs):
        init(graph, *args, **kwargs)
        graphs.append(graph)
    monkeypatch.setattr(synthesize.Graph, '__init__', recording)
    before = threading.active_count()
    steps = synthesize.synthesize(tiny_weights, TEXTURE, (32, 32), iterations=[3, 3], scales=(0.5, 1))
    for step, _, _ in steps:
        if step == stop_at:
            break
    steps.close()
    assert len(graphs) == 2 and all(graph.session._closed for graph in graphs)
    assert threading.active_count() == before


def test_unknown_optimizer(tiny_weights):
    with pytest.raises(ValueError, match='optimizer'):
        next(synthesize.synthesize(tiny_weights, TEXTURE, (32, 32), optimizer='sgd'))


# ---------------------------------------------------------------- style transfer

CONTENT = np.random.default_rng(4).uniform(0, 1, (32, 32, 3)).astype(np.float32)
STYLES = [np.random.default_rng(5).uniform(0, 1, (40, 36, 3)).astype(np.float32), SOURCE]


def style_transfer(**changes):
    settings = dict(style_images=STYLES, layer_weights=LAYERS, style_blend=[3.0, 1.0], style_weight=2.0,
                    content_image=CONTENT, content_layers={'conv2_1': 1.0, 'conv1_2': 0.5},
                    content_weight=5.0, tv_weight=7.0)
    return synthesize.Objective(**{**settings, **changes})


def test_style_transfer_total_is_the_weighted_sum_of_its_terms(tiny_weights):
    steps = list(synthesize.synthesize(tiny_weights, style_transfer(), (32, 32), iterations=3,
                                       initial_image=CONTENT))
    for _, _, losses in steps:
        assert set(losses) == {'total', 'style', 'content', 'tv', 'conv1_1', 'pool1',
                               'content_conv2_1', 'content_conv1_2'}
        assert losses['total'] == pytest.approx(
            2 * losses['style'] + 5 * losses['content'] + 7 * losses['tv'], rel=1e-5)
        assert losses['style'] == pytest.approx(losses['conv1_1'] + losses['pool1'], rel=1e-5)
        assert losses['content'] == pytest.approx(
            losses['content_conv2_1'] + 0.5 * losses['content_conv1_2'], rel=1e-5)
    assert steps[0][2]['content'] == 0  # started from the content image itself
    assert steps[-1][2]['total'] < steps[0][2]['total']


def test_blended_grams_weight_each_style_image():
    grams = [{'conv1_1': np.full((2, 2), 1.0)}, {'conv1_1': np.full((2, 2), 5.0)}]
    np.testing.assert_allclose(synthesize.blended_grams(grams, [3, 1])['conv1_1'], 2.0)
    np.testing.assert_allclose(synthesize.blended_grams(grams, None)['conv1_1'], 3.0)


def test_a_blend_weight_of_one_is_that_style_alone(tiny_weights):
    """style_blend [1, 0] gives exactly the style loss of the first image alone."""
    only_first = synthesize.Graph(tiny_weights, style_transfer(style_images=STYLES[:1], style_blend=None),
                                  (32, 32))
    blended = synthesize.Graph(tiny_weights, style_transfer(style_blend=[1.0, 0.0]), (32, 32))
    for graph in (only_first, blended):
        graph.set_image(CONTENT)
    assert blended.evaluate()[0]['style'] == pytest.approx(only_first.evaluate()[0]['style'], rel=1e-6)
    only_first.close()
    blended.close()


# ---------------------------------------------------------------- coarse to fine, SWD, tileable

def test_coarse_to_fine_counts_steps_on_and_ends_at_full_size(tiny_weights):
    steps = list(synthesize.synthesize(tiny_weights, TEXTURE, (32, 48), iterations=[3, 2], scales=(0.5, 1)))
    assert [step for step, _, _ in steps] == [0, 1, 2, 3, 4, 5]
    assert [losses['scale'] for _, _, losses in steps] == [0.5] * 4 + [1.0] * 2
    assert [image.shape[:2] for _, image, _ in steps] == [(16, 24)] * 4 + [(32, 48)] * 2


@pytest.mark.parametrize('objective', [
    TEXTURE,
    synthesize.Objective([SOURCE], LAYERS, loss='gram+swd'),
    style_transfer(content_image=np.random.default_rng(6).uniform(0, 1, (32, 48, 3)).astype(np.float32)),
], ids=['gram', 'gram+swd', 'style-transfer'])
def test_every_stage_reports_the_losses_of_the_image_it_hands_on(tiny_weights, objective):
    """L-BFGS runs without bounds and hands on clipped images: the losses must be the clipped
    image's. (With the tiny network, gram+swd's last step leaves [0, 1]: scored unclipped, it
    was 1% off.)"""
    steps = list(synthesize.synthesize(tiny_weights, objective, (32, 48), iterations=[2, 2], scales=(0.5, 1)))
    for scale in (0.5, 1.0):
        stage = [(image, losses) for _, image, losses in steps if losses['scale'] == scale]
        alone = synthesize.Graph(tiny_weights, synthesize.scaled_objective(objective, scale), stage[0][0].shape[:2])
        for image, losses in stage:
            alone.set_image(image)
            assert losses['total'] == pytest.approx(alone.evaluate()[0]['total'], rel=1e-4)
        alone.close()


def test_coarse_stages_leave_out_the_deepest_block():
    default = {layer: 1.0 for layer in ('conv1_1', 'conv1_2', 'conv2_1', 'conv2_2', 'conv3_1', 'conv3_2',
                                        'conv3_3', 'conv4_1')}
    assert list(synthesize.coarse_style_layers(default)) == list(default)[:-1]
    every_conv = {layer: 1.0 for layer in vgg16.CONV_LAYERS}
    assert list(synthesize.coarse_style_layers(every_conv)) == list(vgg16.CONV_LAYERS[:10])  # no conv5_x
    assert synthesize.coarse_style_layers({'conv1_1': 2.0, 'pool1': 3.0}) == {'conv1_1': 2.0}  # pool1: block 2's size
    assert synthesize.coarse_style_layers({'conv4_1': 1.0, 'conv4_2': 2.0}) == {'conv4_1': 1.0, 'conv4_2': 2.0}
    coarse = synthesize.scaled_objective(synthesize.Objective.texture(SOURCE, default), 0.5)
    assert 'conv4_1' not in coarse.layer_weights and coarse.style_images[0].shape == (16, 16, 3)
    assert synthesize.scaled_objective(TEXTURE, 1.0) is TEXTURE


def test_stage_shapes_round_to_the_tileable_step():
    assert synthesize.stage_shapes((256, 200), (0.5, 1)) == [(128, 100), (256, 200)]
    assert synthesize.stage_shapes((256, 192), (0.3, 1), step=16) == [(80, 64), (256, 192)]


@pytest.mark.parametrize('loss', synthesize.STYLE_LOSSES)
def test_tileable_source_statistics_have_no_border(tiny_weights, loss):
    """A tileable result has no border, so its targets must not describe one.

    A flat source is then matched exactly by the flat image (loss about 0). With the
    source zero-padded, its border features pulled tileable results towards grey smears.
    """
    flat = np.broadcast_to(np.float32([0.3, 0.5, 0.7]), (32, 32, 3)).copy()
    objective = synthesize.Objective([flat], {'conv1_1': 1.0, 'conv2_1': 1.0, 'pool2': 1.0}, loss=loss)
    graph = synthesize.Graph(tiny_weights, objective, (32, 32), tileable=True)
    graph.set_image(np.random.default_rng(5).uniform(0, 1, (32, 32, 3)).astype(np.float32))
    noise_loss = graph.evaluate()[0]['total']
    graph.set_image(flat)
    assert graph.evaluate()[0]['total'] < 1e-6 * noise_loss
    graph.close()


@pytest.mark.parametrize('loss, keys', [
    ('swd', {'total', 'swd', 'swd_conv1_1', 'swd_pool1'}),
    ('gram+swd', {'total', 'swd', 'conv1_1', 'pool1', 'swd_conv1_1', 'swd_pool1'}),
])
def test_swd_losses_add_up(tiny_weights, loss, keys):
    objective = synthesize.Objective([SOURCE], LAYERS, loss=loss, swd_weight=3.0)
    steps = list(synthesize.synthesize(tiny_weights, objective, (24, 24), iterations=4))
    for _, _, losses in steps:
        assert set(losses) == keys
        assert losses['swd'] == pytest.approx(losses['swd_conv1_1'] + losses['swd_pool1'], rel=1e-5)
        gram = losses.get('conv1_1', 0) + losses.get('pool1', 0)
        expected = losses['swd'] if loss == 'swd' else gram + 3.0 * losses['swd']
        assert losses['total'] == pytest.approx(expected, rel=1e-5)
    assert steps[-1][2]['swd'] < steps[0][2]['swd']


@pytest.mark.parametrize('loss', synthesize.STYLE_LOSSES)
def test_losses_are_summed_in_a_fixed_order(real_weights, loss):
    """Sums in the graph TensorFlow runs are ordinary adds, not in-place accumulation.

    Grappler's memory optimiser had rewritten gram+swd's total at 256 px into a
    temporary variable that each term is added to as it arrives: an order that
    changes with thread timing, so totals differed by an ulp from process to
    process (docs/design.md). Smaller graphs, and the tiny test network, never got it.
    """
    source = np.random.default_rng(3).uniform(0, 1, (64, 64, 3)).astype(np.float32)
    layers = dict.fromkeys(vgg16.CONV_LAYERS[:vgg16.CONV_LAYERS.index('conv4_1') + 1], 1 / 8)  # the defaults
    objective = synthesize.Objective.texture(source, layers, loss)
    graph = synthesize.Graph(real_weights, objective, (256, 256))
    metadata = tf.compat.v1.RunMetadata()
    graph.session.run([graph.losses, graph.gradient], run_metadata=metadata,
                      options=tf.compat.v1.RunOptions(output_partition_graphs=True))
    graph.close()
    ops = {node.op for partition in metadata.partition_graphs for node in partition.node}
    assert 'AddN' in ops  # the inspected graph is the real one
    assert not ops & {'TemporaryVariable', 'AssignAdd', 'AccumulateNV2'}


def test_bfloat16_losses_are_close_to_float32(tiny_weights):
    values = {}
    for precision in synthesize.PRECISIONS:
        graph = synthesize.Graph(tiny_weights, TEXTURE, (32, 32), precision=precision)
        graph.set_image(np.random.default_rng(1).uniform(0, 1, (32, 32, 3)).astype(np.float32))
        values[precision] = graph.evaluate()[0]['total']
        graph.close()
    assert values['bfloat16'] == pytest.approx(values['float32'], rel=0.05)


def test_bfloat16_lbfgs_that_stalls_is_finished_in_float32(tiny_weights, monkeypatch):
    """When bfloat16 rounding hides the progress, L-BFGS's line search gives up early; the
    remaining steps then run in float32. The stall is forced: after 3 evaluations a bfloat16
    graph reports a loss that rises at every evaluation, which no line search can accept."""
    precisions = []
    original_init, original_evaluate = synthesize.Graph.__init__, synthesize.Graph.evaluate

    def recording(self, *args, **kwargs):
        self.precision = args[5] if len(args) > 5 else kwargs.get('precision')
        self.evaluations = 0
        precisions.append(self.precision)
        original_init(self, *args, **kwargs)

    def stalling(self):
        values, gradient = original_evaluate(self)
        self.evaluations += 1
        if self.precision == 'bfloat16' and self.evaluations > 3:
            values['total'] += 1e3 * self.evaluations
        return values, gradient
    monkeypatch.setattr(synthesize.Graph, '__init__', recording)
    monkeypatch.setattr(synthesize.Graph, 'evaluate', stalling)
    steps = list(synthesize.synthesize(tiny_weights, TEXTURE, (32, 32), iterations=6, precision='bfloat16'))
    assert [step for step, _, _ in steps] == list(range(7))
    assert precisions == ['bfloat16', 'float32']
    assert steps[-1][2]['total'] < steps[2][2]['total']
