"""A logistic curve's posterior, sampled: what the chance of an event is at a point ``x``,
from counts of trials and events observed at points, with its uncertainty as weighted draws.

The posterior has a weak normal prior on the intercept and slope, plus half an event and half a
non-event at the trials' mean point (Jeffreys-like: with one point to go on, it is the Jeffreys
posterior ``Beta(w + 1/2, n - w + 1/2)`` of that point's chance). It is sampled by importance
sampling from a Student-t around its mode (Newton's method; the log posterior is concave), whose
heavier tails cover the posterior's skew where events are rare.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float64]

PRIOR_SD = 10.0
"""Of the curve's intercept and slope (points span about 1): weak."""
PSEUDO = 0.5
"""Events and non-events added at the trials' mean point (Jeffreys-like)."""
T_DF = 4.0
"""Degrees of freedom of the Student-t the posterior is sampled from (heavier tails than it)."""


def posterior(x: Floats, trials: Floats, events: Floats, *, samples: int) -> tuple[Floats, Floats]:
    """Seeded draws of (intercept, slope), shape ``(samples, 2)``, and their importance weights
    (summing to 1). ``x``, ``trials``, ``events``: the points with trials, and their counts."""
    x = np.append(x, np.average(x, weights=trials))
    trials = np.append(trials, 2 * PSEUDO)
    events = np.append(events, PSEUDO)
    design = np.stack([np.ones_like(x), x], axis=1)
    precision = np.eye(2) / PRIOR_SD**2

    def log_posterior(thetas: Floats) -> Floats:
        eta = thetas @ design.T
        likelihood: Floats = (events * eta - trials * softplus(eta)).sum(axis=-1)
        prior: Floats = 0.5 * ((thetas @ precision) * thetas).sum(axis=-1)
        return likelihood - prior

    mode = np.array([math.log((events.sum()) / (trials.sum() - events.sum())), 0.0])
    hessian = precision
    for _ in range(50):  # Newton's method: the log posterior is concave
        p = expit(design @ mode)
        gradient = design.T @ (events - trials * p) - precision @ mode
        hessian = (design * (trials * p * (1 - p))[:, None]).T @ design + precision
        step = np.linalg.solve(hessian, gradient)
        mode = mode + step
        if np.abs(step).max() < 1e-9:
            break
    scale = np.linalg.cholesky(np.linalg.inv(hessian))
    rng = np.random.default_rng(0)
    z = rng.standard_normal((samples, 2)) / np.sqrt(rng.chisquare(T_DF, samples) / T_DF)[:, None]
    thetas = mode + z @ scale.T
    log_proposal = -(T_DF + 2) / 2 * np.log1p((z * z).sum(axis=1) / T_DF)
    log_weights = log_posterior(thetas) - log_proposal
    weights = np.exp(log_weights - log_weights.max())
    return thetas, weights / weights.sum()


def expit(eta: Floats) -> Floats:
    return 1.0 / (1.0 + np.exp(-np.clip(eta, -60.0, 60.0)))


def softplus(eta: Floats) -> Floats:
    """``log(1 + e^eta)`` without overflow."""
    return np.maximum(eta, 0.0) + np.log1p(np.exp(-np.abs(eta)))


def quantile(values: Floats, weights: Floats, q: float) -> float:
    """The weighted ``q`` quantile of ``values``."""
    order = np.argsort(values, kind="stable")
    cumulative = np.cumsum(weights[order])
    index = min(int(np.searchsorted(cumulative, q * cumulative[-1])), len(values) - 1)
    return float(values[order][index])
