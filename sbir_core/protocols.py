"""Simulations of evaluation protocols, for the evaluation chapter.

Nothing here trains a model: these are small generative models of retrieval outcomes that
isolate one protocol choice at a time (how ties are broken, which mAP@K denominator is used,
where the checkpoint is chosen) so its effect on a reported number can be measured.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

from sbir_core import metrics as M


@dataclass(frozen=True)
class SelectionResult:
    """Accuracies over simulated training runs, each (n_trials,) float64.

    ``test_selected``: the number reported when the checkpoint is chosen on the test set (the
    papers' protocol); ``val_selected``: the test accuracy of the checkpoint chosen on a separate
    validation set; ``true_test_selected`` / ``true_val_selected``: the population accuracy of
    the checkpoint each rule chose (what a fresh test set would measure).
    """

    true_test_selected: np.ndarray
    test_selected: np.ndarray
    true_val_selected: np.ndarray
    val_selected: np.ndarray

    @property
    def optimism(self) -> float:
        """Mean excess of the test-selected number over the true accuracy of its checkpoint."""
        return float((self.test_selected - self.true_test_selected).mean())

    @property
    def val_bias(self) -> float:
        """Mean excess of the val-selected number over its checkpoint's true accuracy (about 0)."""
        return float((self.val_selected - self.true_val_selected).mean())


def _correct(rng, p: np.ndarray, n_queries: int, rho: float) -> np.ndarray:
    """Per-query correctness, (trials, checkpoints, queries) bool, correlated across checkpoints.

    A query is answered correctly when a latent score falls below ``norm.ppf(p)``; the latent is
    ``sqrt(rho)`` query difficulty (shared by every checkpoint) plus independent noise, so
    checkpoints of one run agree on most queries, as successive checkpoints do.
    """
    trials, ckpts = p.shape
    difficulty = rng.standard_normal((trials, 1, n_queries))
    noise = rng.standard_normal((trials, ckpts, n_queries))
    latent = np.sqrt(rho) * difficulty + np.sqrt(1 - rho) * noise
    return latent < norm.ppf(p)[:, :, None]


def simulate_checkpoint_selection(
    n_checkpoints: int,
    n_test: int,
    n_val: int | None = None,
    accuracy: float = 0.3,
    spread: float = 0.01,
    rho: float = 0.8,
    n_trials: int = 500,
    rng: np.random.Generator | None = None,
) -> SelectionResult:
    """Simulate choosing the best of ``n_checkpoints`` on the test set vs on a validation set.

    Args:
        n_checkpoints: evaluations during training (e.g. every 100 steps).
        n_test: test queries (ShoeV2: 679 sketches against 200 photos; ChairV2: 323 against 100).
        n_val: validation queries (default: as many as test).
        accuracy: mean true Acc@1 of the checkpoints; ``spread``: their standard deviation, so
            that some checkpoints really are better.
        rho: share of a query's outcome fixed by its difficulty (correlation across checkpoints).
    """
    if n_checkpoints < 1 or n_test < 1:
        raise ValueError("n_checkpoints and n_test must be >= 1")
    if not 0 <= rho < 1:
        raise ValueError(f"rho must lie in [0, 1), got {rho}")
    rng = rng or np.random.default_rng(0)
    n_val = n_val or n_test
    p = np.clip(accuracy + spread * rng.standard_normal((n_trials, n_checkpoints)), 1e-4, 1 - 1e-4)
    test = _correct(rng, p, n_test, rho).mean(2)
    val = _correct(rng, p, n_val, rho).mean(2)
    rows = np.arange(n_trials)
    by_test, by_val = test.argmax(1), val.argmax(1)
    return SelectionResult(p[rows, by_test], test[rows, by_test], p[rows, by_val], test[rows, by_val])


def hashed_retrieval(
    n_queries: int, n_gallery: int, dim: int, bits: int, noise: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A toy FG-SBIR task whose distances are Hamming distances of ``bits``-bit codes.

    Each query is its true gallery item's embedding plus Gaussian ``noise``; codes are signs of
    ``bits`` random projections. Few bits give many tied distances. Returns (dist (Q, G), true_idx (Q,)).
    """
    gallery = rng.standard_normal((n_gallery, dim))
    true_idx = rng.integers(0, n_gallery, n_queries)
    queries = gallery[true_idx] + noise * rng.standard_normal((n_queries, dim))
    proj = rng.standard_normal((dim, bits))
    code_q, code_g = queries @ proj > 0, gallery @ proj > 0
    dist = (code_q[:, None, :] != code_g[None, :, :]).sum(2).astype(np.float64)
    return dist, true_idx


def category_retrieval(
    class_sizes, n_queries_per_class: int, separation: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A toy category-level task: a gallery whose classes have the given sizes.

    Items of class c sit around a random centre; queries of class c too, with ``separation``
    scaling the centres against unit noise. Returns (dist (Q, G), relevant (Q, G) bool).
    """
    class_sizes = np.asarray(class_sizes, dtype=int)
    dim = 16
    centres = separation * rng.standard_normal((len(class_sizes), dim))
    g_cls = np.repeat(np.arange(len(class_sizes)), class_sizes)
    q_cls = np.repeat(np.arange(len(class_sizes)), n_queries_per_class)
    gallery = centres[g_cls] + rng.standard_normal((len(g_cls), dim))
    queries = centres[q_cls] + rng.standard_normal((len(q_cls), dim))
    return M.pairwise_distances(queries, gallery), q_cls[:, None] == g_cls[None, :]
