"""The optimisation loop itself: both optimisers, stopping early, bounds."""
import threading

import numpy as np
import pytest

import synthesize

SOURCE = np.random.default_rng(3).uniform(0, 1, (32, 32, 3)).astype(np.float32)
LAYERS = {'conv1_1': 1.0, 'pool1': 1.0}


@pytest.mark.parametrize('optimizer', synthesize.OPTIMIZERS)
def test_steps_are_numbered_and_images_stay_valid(tiny_weights, optimizer):
    steps = list(synthesize.synthesize(tiny_weights, SOURCE, (24, 40), LAYERS,
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
        steps = list(synthesize.synthesize(tiny_weights, SOURCE, (32, 32), LAYERS,
                                           optimizer=optimizer, iterations=3))
        graph = synthesize.Graph(tiny_weights, SOURCE, (32, 32), LAYERS)
        for _, image, losses in steps:
            graph.set_image(image)
            assert graph.evaluate()[0]['total'] == pytest.approx(losses['total'], rel=1e-4)
        graph.close()


def test_stopping_lbfgs_early_ends_its_worker_thread(tiny_weights):
    before = threading.active_count()
    steps = synthesize.synthesize(tiny_weights, SOURCE, (32, 32), LAYERS, iterations=1000)
    for step, _, _ in steps:
        if step == 3:
            break
    steps.close()
    assert threading.active_count() == before


def test_unknown_optimizer(tiny_weights):
    with pytest.raises(ValueError, match='optimizer'):
        next(synthesize.synthesize(tiny_weights, SOURCE, (32, 32), LAYERS, optimizer='sgd'))
