"""lbfgs.py against plain references: the dense BFGS update, scipy's L-BFGS-B, known minima."""
import numpy as np
import pytest
import scipy.optimize

import lbfgs


def dense_inverse_hessian(pairs, dimension):
    """BFGS's inverse-Hessian update applied to gamma * I, one pair at a time (Nocedal and Wright, eq. 6.17)."""
    s, y, _ = pairs[-1]
    inverse = np.eye(dimension) * (s @ y) / (y @ y)
    for s, y, rho in pairs:
        left = np.eye(dimension) - rho * np.outer(s, y)
        inverse = left @ inverse @ left.T + rho * np.outer(s, s)
    return inverse


def test_two_loop_direction_is_minus_the_dense_bfgs_inverse_times_the_gradient():
    rng = np.random.default_rng(0)
    dimension = 7
    root = rng.normal(size=(dimension, dimension))
    hessian = root @ root.T + np.eye(dimension)  # positive definite, so every s.y > 0
    pairs = []
    for _ in range(4):
        s = rng.normal(size=dimension)
        y = hessian @ s
        pairs.append((s, y, 1 / (s @ y)))
    gradient = rng.normal(size=dimension)
    expected = -dense_inverse_hessian(pairs, dimension) @ gradient
    np.testing.assert_allclose(lbfgs.two_loop_direction(gradient, pairs), expected, rtol=1e-10)


def quadratic(scales):
    return lambda x: (0.5 * np.sum(scales * x * x), scales * x, None)


def test_matches_scipy_lbfgsb_on_an_ill_conditioned_quadratic():
    rng = np.random.default_rng(1)
    scales = np.geomspace(0.01, 100, 500)  # condition number 1e4
    x0 = rng.normal(size=500)
    evaluate = quadratic(scales)
    ours = [evaluate(x)[0] for x, _ in lbfgs.minimize(evaluate, x0, 60)]
    reference = scipy.optimize.minimize(lambda x: evaluate(x)[:2], x0, jac=True, method='L-BFGS-B',
                                        options={'maxiter': 60, 'ftol': 0, 'gtol': 0, 'maxcor': lbfgs.MEMORY})
    assert len(ours) == 60
    assert all(later <= earlier for earlier, later in zip(ours, ours[1:]))  # the line search never goes up
    # the same method (unbounded, the same memory and line-search constants): the same path
    assert ours[-1] == pytest.approx(reference.fun, rel=1e-6)
    assert ours[-1] < 1e-3 * evaluate(x0)[0]


def test_finds_the_rosenbrock_minimum():
    def rosenbrock(x):
        return scipy.optimize.rosen(x), scipy.optimize.rosen_der(x), {'at': x.copy()}
    x0 = np.array([-1.2, 1.0, -0.5, 0.8])
    for x, info in lbfgs.minimize(rosenbrock, x0, 200):
        np.testing.assert_array_equal(info['at'], x)  # info belongs to the point handed back
    np.testing.assert_allclose(x, np.ones(4), atol=1e-6)


def test_a_given_start_evaluation_is_not_repeated():
    evaluated = []
    scales = np.array([1.0, 2.0, 3.0])
    evaluate = quadratic(scales)

    def recording(x):
        evaluated.append(x.copy())
        return evaluate(x)
    x0 = np.array([1.0, 1.0, 1.0])
    list(lbfgs.minimize(recording, x0, 3, start=evaluate(x0)))
    assert evaluated and not any(np.array_equal(x, x0) for x in evaluated)
    assert not any(np.array_equal(a, b) for a, b in zip(evaluated, evaluated[1:]))


def test_stops_when_no_step_decreases_the_loss():
    """A gradient that points the wrong way: the line search fails and the run ends, as a
    bfloat16 run does when rounding hides the progress (synthesize then finishes in float32)."""
    def misleading(x):
        return np.sum(x), -np.ones_like(x), None
    assert list(lbfgs.minimize(misleading, np.zeros(5), 10)) == []


@pytest.mark.parametrize('memory', [1, 3])
def test_memory_limits_the_pairs_used(memory, monkeypatch):
    lengths = []
    two_loop = lbfgs.two_loop_direction

    def recording(gradient, pairs):
        lengths.append(len(pairs))
        return two_loop(gradient, pairs)
    monkeypatch.setattr(lbfgs, 'two_loop_direction', recording)
    list(lbfgs.minimize(quadratic(np.geomspace(1, 10, 20)), np.ones(20), 8, memory=memory))
    assert max(lengths) == memory
