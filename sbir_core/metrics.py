"""Retrieval metrics: the only place in the project where a metric is computed.

Fine-grained (one true photo per query): ``true_match_rank`` and ``acc_at_k``; a query may be
ranked against a subset of the gallery (``candidates``: the photos of its own category, as in
QMUL-Shoe-V2 and Chair-V2), and ``chance_acc_at_k`` gives what a random ranking of each query's
candidates scores, which is also what knowing only the category scores within a category.
Category-level (many relevant items per query): ``average_precision`` (mAP@all), ``map_at_k``
and ``prec_at_k``, each with its denominator named, because the literature uses several
(REFERENCE_NUMBERS.md §4.1-4.3). All functions take distances, smaller = more similar; pass
``-similarity`` for similarity scores.

Ties: everywhere, an item tied with a relevant one counts as ranked *before* it (against the
method), as in the QMUL evaluation code. Queries with no relevant item have no defined AP or
rank: they get NaN in per-query outputs and are left out of every mean (a documented rule;
``n_valid`` tells how many queries were counted).
"""

from __future__ import annotations

import math

import numpy as np

AP_DENOMINATORS = ("min_r_k", "all_relevant", "retrieved")
PREC_DENOMINATORS = ("k", "min_r_k")


def pairwise_distances(emb_sketch, emb_photo) -> np.ndarray:
    """Euclidean distances between two embedding sets: (Q, D), (G, D) -> (Q, G) float64."""
    a = np.asarray(_numpy(emb_sketch), dtype=np.float64)
    b = np.asarray(_numpy(emb_photo), dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"embeddings must be (Q, D) and (G, D), got {a.shape} and {b.shape}")
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    return np.sqrt(np.maximum(sq, 0.0))


def true_match_rank(dist, true_idx, ties: str = "against", rng=None, candidates=None) -> np.ndarray:
    """Rank of each query's true match: #{g : d(q, g) <= d(q, true)}, so rank >= 1 and ties count against.

    Args:
        dist: (Q, G) distances from each query to each gallery item.
        true_idx: (Q,) int, the gallery column of each query's true match.
        candidates: optional (Q, G) bool, the gallery items each query is ranked against (e.g.
            the photos of its own category); others are left out. The true match must be one.
        ties: "against" (default; QMUL ``Baseline_FGSBIR`` ``evaluate``, METHODS.md §0.4),
            "for" (1 + #{d < d_true}, what a sort that happens to put the true match first gives),
            or "random" (a uniformly random place among the tied items; needs ``rng``).
    Returns:
        (Q,) int64 ranks in 1..G.
    """
    dist = _check_dist(dist)
    true_idx = np.asarray(true_idx, dtype=np.int64)
    if true_idx.shape != (dist.shape[0],):
        raise ValueError(f"true_idx must have shape ({dist.shape[0]},), got {true_idx.shape}")
    if (true_idx < 0).any() or (true_idx >= dist.shape[1]).any():
        raise ValueError(f"true_idx must index the {dist.shape[1]} gallery columns")
    if candidates is not None:
        candidates = np.asarray(candidates, dtype=bool)
        if candidates.shape != dist.shape:
            raise ValueError(f"candidates must have the shape of dist {dist.shape}, got {candidates.shape}")
        if not candidates[np.arange(len(dist)), true_idx].all():
            raise ValueError("every query's true match must be among its candidates")
        dist = np.where(candidates, dist, np.inf)
    d_true = dist[np.arange(len(dist)), true_idx][:, None]
    if ties == "against":
        return (dist <= d_true).sum(1).astype(np.int64)
    better = (dist < d_true).sum(1)
    if ties == "for":
        return (better + 1).astype(np.int64)
    if ties == "random":
        if rng is None:
            raise ValueError('ties="random" needs a numpy Generator rng')
        tied = (dist == d_true).sum(1)
        return (better + 1 + np.floor(rng.random(len(dist)) * tied)).astype(np.int64)
    raise ValueError(f'ties must be "against", "for" or "random", got {ties!r}')


def acc_at_k(ranks, k: int) -> float:
    """Acc@K: the fraction of queries whose true match has rank <= K (K beyond the gallery gives 1)."""
    ranks = np.asarray(ranks)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if ranks.size == 0:
        raise ValueError("no ranks to average")
    return float((ranks <= k).mean())


def chance_acc_at_k(n_candidates, k: int) -> float:
    """Expected Acc@K of a uniformly random ranking: mean over queries of min(K, G_q) / G_q.

    n_candidates: (Q,) int, the size of each query's gallery (all of it, or its category's part).
    Within a category this is also what a model that knows only the category scores.
    """
    n = np.asarray(n_candidates, dtype=np.float64)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if n.size == 0 or (n < 1).any():
        raise ValueError("every query needs at least one candidate")
    return float((np.minimum(k, n) / n).mean())


def _sorted_relevance(dist, relevant) -> np.ndarray:
    """Relevance in retrieval order, ties broken against the method (relevant items last)."""
    dist = _check_dist(dist)
    rel = np.asarray(relevant, dtype=bool)
    if rel.shape != dist.shape:
        raise ValueError(f"relevance must have the shape of dist {dist.shape}, got {rel.shape}")
    # lexsort sorts by the last key first: distance, then relevance False before True
    order = np.lexsort((rel.astype(np.int8), dist), axis=1)
    return np.take_along_axis(rel, order, axis=1)


def average_precision(
    dist, relevant, k: int | None = None, denominator: str = "min_r_k", interpolated: bool = False
) -> np.ndarray:
    """Per-query average precision over the top ``k`` (all items when k is None): (Q,) float64.

    AP@K = (1 / Z) * sum_{i <= K} P@i * rel(i), where R is the number of relevant items and
    Z is, by ``denominator``:
      * "min_r_k" (default): min(R, K), standard IR practice, SAKE/ZSE-SBIR ``voc_eval(top=K)``;
      * "all_relevant": R, so queries with R > K can never reach 1;
      * "retrieved": relevant items found in the top K (SEM-PCYC ``apsak``); inflates scores,
        and a query with none retrieved scores 0.
    With k None all three equal R: mAP@all. ``interpolated=True`` uses the VOC envelope
    (precision at i replaced by the max precision at any i' >= i), as SAKE does; it is >= the
    plain value. sklearn's ``average_precision_score`` is the plain value without ties.
    Queries with R = 0 get NaN.
    """
    if denominator not in AP_DENOMINATORS:
        raise ValueError(f"denominator must be one of {AP_DENOMINATORS}, got {denominator!r}")
    return ranked_average_precision(_sorted_relevance(dist, relevant), k, denominator, interpolated)


def ranked_relevance(dist, relevant) -> np.ndarray:
    """(Q, G) relevance in each query's retrieval order, ties broken against the method (relevant items
    last): what ``ranked_average_precision`` and ``ranked_precision`` read, so that several metrics of one
    (Q, G) result sort it once."""
    return _sorted_relevance(dist, relevant)


def ranked_average_precision(
    rel: np.ndarray, k: int | None = None, denominator: str = "min_r_k", interpolated: bool = False
) -> np.ndarray:
    """``average_precision`` of relevance already in retrieval order (``ranked_relevance``)."""
    if denominator not in AP_DENOMINATORS:
        raise ValueError(f"denominator must be one of {AP_DENOMINATORS}, got {denominator!r}")
    n_rel = rel.sum(1)
    if k is not None:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        rel = rel[:, :k]
    hits = np.cumsum(rel, axis=1)
    prec = hits / np.arange(1, rel.shape[1] + 1)
    if interpolated:
        prec = np.maximum.accumulate(prec[:, ::-1], axis=1)[:, ::-1]
    total = (prec * rel).sum(1)
    cut = rel.shape[1]
    z = {"min_r_k": np.minimum(n_rel, cut), "all_relevant": n_rel, "retrieved": rel.sum(1)}[denominator]
    with np.errstate(invalid="ignore", divide="ignore"):
        ap = np.where(z > 0, total / np.maximum(z, 1), 0.0)
    return np.where(n_rel > 0, ap, np.nan)


def map_all(dist, relevant, interpolated: bool = False) -> float:
    """mAP@all: mean AP over queries with at least one relevant item (NaN if none has)."""
    return valid_mean(average_precision(dist, relevant, None, interpolated=interpolated))


def map_at_k(dist, relevant, k: int, denominator: str = "min_r_k") -> float:
    """mAP@K with a named denominator (see ``average_precision``)."""
    return valid_mean(average_precision(dist, relevant, k, denominator))


def prec_at_k(dist, relevant, k: int, denominator: str = "k") -> float:
    """P@K: relevant items in the top K, divided by K ("k", SAKE) or by min(R, K) ("min_r_k", ZSE-SBIR).

    Mean over queries with at least one relevant item. K beyond the gallery counts the whole gallery
    and still divides by K under "k".
    """
    if denominator not in PREC_DENOMINATORS:
        raise ValueError(f"denominator must be one of {PREC_DENOMINATORS}, got {denominator!r}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return valid_mean(ranked_precision(_sorted_relevance(dist, relevant), k, denominator))


def ranked_precision(rel: np.ndarray, k: int, denominator: str = "k") -> np.ndarray:
    """Per-query P@K (``prec_at_k``) of relevance already in retrieval order: (Q,), NaN for a query
    without a relevant item."""
    if denominator not in PREC_DENOMINATORS:
        raise ValueError(f"denominator must be one of {PREC_DENOMINATORS}, got {denominator!r}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    n_rel = rel.sum(1)
    hits = rel[:, :k].sum(1)
    z = k if denominator == "k" else np.minimum(n_rel, k)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_rel > 0, hits / np.maximum(z, 1), np.nan)


def n_valid(relevant) -> int:
    """Number of queries with at least one relevant item (those that enter the means)."""
    return int(np.asarray(relevant, dtype=bool).any(1).sum())


def valid_mean(x: np.ndarray) -> float:
    """The mean over queries with a value (NaN for none: no query had a relevant item)."""
    return float(np.nanmean(x)) if np.isfinite(x).any() else float("nan")


def _check_dist(dist) -> np.ndarray:
    dist = np.asarray(_numpy(dist), dtype=np.float64)
    if dist.ndim != 2 or dist.shape[1] == 0:
        raise ValueError(f"dist must be a (Q, G) array with G >= 1, got shape {dist.shape}")
    if np.isnan(dist).any():
        raise ValueError("dist holds NaN")
    return dist


def _numpy(x):
    return x.detach().cpu().numpy() if hasattr(x, "detach") else x


def rank_consistency(ranks: np.ndarray, photo: np.ndarray) -> dict:
    """The slides' consistency metric: ranks (N,) of each query's true photo, photo (N,) its photo id.

    Returns rank_avg (mean rank), v_avg: the mean over photos with >= 2 sketches of the variance
    (population, ddof=0) of their sketches' ranks (lower: a photo is found equally well by all
    drawers), and those photos (``photos``, sorted) with their variances (``per_photo``), for intervals.
    """
    ranks = np.asarray(ranks, dtype=float)
    photo = np.asarray(photo)
    photos = np.array([p for p in np.unique(photo) if (photo == p).sum() >= 2])
    v = np.array([ranks[photo == p].var() for p in photos], dtype=float)
    return {
        "rank_avg": float(ranks.mean()) if len(ranks) else math.nan,
        "v_avg": float(v.mean()) if len(v) else math.nan,
        "photos": photos,
        "per_photo": v,
    }
