"""L-BFGS as a generator, in numpy: one iteration per `next`, no thread, no callback.

    for x, info in minimize(evaluate, x0, iterations):   # evaluate(x) -> (f, gradient, info)
        ...                                             # info: what evaluate returned with f at x

The method is scipy's L-BFGS-B without bounds (Byrd, Lu, Nocedal and Zhu 1995;
Nocedal and Wright, Numerical Optimization, algorithms 7.4 and 3.5): the
direction from the last MEMORY curvature pairs by the two-loop recursion, a
line search that tries the full step first and accepts a step meeting the
strong Wolfe conditions, and a first step of unit length along -gradient.
No stopping tolerance: Gram losses keep improving in small relative steps, so
it runs the iterations asked for unless the line search fails.

Why not scipy.optimize.minimize: at 256 px (n = 196608) L-BFGS-B's own work
took 9 ms per iteration, a tenth of a bfloat16 VGG evaluation, where the
two-loop recursion takes about 3; and a callback-driven call needed a worker
thread to become a generator.
"""
import warnings

import numpy as np
import scipy.optimize

MEMORY = 10                   # curvature pairs kept: scipy's default; 5 ended the baseline 11% higher (docs/design.md)
SUFFICIENT_DECREASE = 1e-3    # L-BFGS-B's line-search constants (its ftol and gtol)
CURVATURE = 0.9


def two_loop_direction(gradient, pairs):
    """-H gradient, H the L-BFGS inverse-Hessian estimate from [(s, y, 1 / s.y)], oldest first.

    H starts as gamma * I with gamma = s.y / y.y of the newest pair (Nocedal and Wright, eq. 7.20).
    """
    q = gradient.copy()
    alphas = []
    for s, y, rho in reversed(pairs):
        alpha = rho * np.dot(s, q)
        q -= alpha * y
        alphas.append(alpha)
    s, y, _ = pairs[-1]
    q *= np.dot(s, y) / np.dot(y, y)
    for (s, y, rho), alpha in zip(pairs, reversed(alphas)):
        beta = rho * np.dot(y, q)
        q += (alpha - beta) * s
    return -q


def minimize(evaluate, x0, iterations, memory=MEMORY, start=None):
    """Yields (x, info) after each of up to `iterations` iterations; returns early if the line search fails.

    `start` is evaluate(x0) when the caller already has it (it costs a whole evaluation).
    A failed line search is how bfloat16 rounding shows when it hides the progress.
    """
    x = np.asarray(x0, np.float64).ravel().copy()
    f, gradient, info = start if start is not None else evaluate(x)
    latest = {}  # the line search asks for f and gradient separately at each trial point: evaluate once

    def at(point):
        if latest.get('x') is None or not np.array_equal(point, latest['x']):
            latest.update(x=point.copy(), result=evaluate(point))
        return latest['result']

    pairs = []
    for _ in range(iterations):
        if pairs:
            direction = two_loop_direction(gradient, pairs)
        else:
            direction = -gradient / max(np.linalg.norm(gradient), np.finfo(np.float64).tiny)
        with warnings.catch_warnings():
            # a failed search says so in a warning too; None below is how it is handled
            warnings.filterwarnings('ignore', message='The line search algorithm')
            step, *_ = scipy.optimize.line_search(
                lambda point: at(point)[0], lambda point: at(point)[1], x, direction, gradient, f,
                c1=SUFFICIENT_DECREASE, c2=CURVATURE)
        if step is None:
            return
        new_x = x + step * direction
        new_f, new_gradient, info = at(new_x)
        s, y = new_x - x, new_gradient - gradient
        curvature = np.dot(s, y)
        # The strong Wolfe conditions make s.y > 0; a pair without clear curvature would spoil H.
        if curvature > np.finfo(np.float64).eps * np.dot(y, y):
            pairs = (pairs + [(s, y, 1.0 / curvature)])[-memory:]
        x, f, gradient = new_x, new_f, new_gradient
        yield x, info
