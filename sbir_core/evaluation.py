"""One entry point for both evaluation protocols: ``evaluate(method, view, ...)``.

* **Fine-grained** (a ``RetrievalView``): the rank of each query's true photo among its candidates
  (its category's gallery, or the whole gallery), ties against the method; Acc@K. For a pairwise
  method (``Method.pairwise``) every (query, candidate) pair is scored by ``pair_distance``, or, with
  ``shortlist=(base_method, M)``, only the base method's top M candidates of each query are
  re-ranked (two-stage retrieval); ``pair_evaluations`` counts the pairs scored either way.
* **Category-level** (a ``CategoryView``): per-query average precision over the whole gallery
  (mAP@all), mAP@K with the min(R, K) denominator and P@K divided by K (``sbir_core.metrics``),
  relevance by class or by class and medium.

``adapt=(column, support_for)`` evaluates an adaptive method the way it is used: for each value of
``column`` (a drawer, a category), ``method.adapt(support_for(value))`` gives a new adapted method
that embeds that group's queries and the gallery; the base method is never changed, and no state
passes from one group to the next. A method whose adaptation leaves its feature extractor F as it is says so
(``kept_features()`` returns F, ``embed_features`` maps F's output to the embedding): F then runs once over
the queries and the gallery, and each adapted copy only applies its own head.

Every metric is computed by ``sbir_core.metrics``; this module only gathers embeddings and distances.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from sbir_core import metrics as M
from sbir_core.data.views import CategoryView, RetrievalView

CATEGORY_K = 200


@dataclass
class Evaluation:
    """What one evaluation measured.

    protocol: "fine_grained" or "category". metrics: name -> value (acc_at_K; or map_all,
    map_at_200, prec_at_200). per_query: name -> (N,) array (rank; or ap_all, ap_at_200, p_at_200).
    pair_evaluations: pairs scored by a pairwise method (None for embedding methods).
    table: the queries' rows.
    """

    protocol: str
    metrics: dict
    per_query: dict
    table: pd.DataFrame = field(repr=False)
    pair_evaluations: int | None = None

    def outcome(self, metric: str) -> np.ndarray:
        """Per-query values whose mean is ``metric`` (for ``sbir_core.stats``): (N,) float64."""
        if metric.startswith("acc_at_"):
            return (self.per_query["rank"] <= int(metric.rsplit("_", 1)[1])).astype(np.float64)
        key = {
            "map_all": "ap_all",
            f"map_at_{CATEGORY_K}": f"ap_at_{CATEGORY_K}",
            f"prec_at_{CATEGORY_K}": f"p_at_{CATEGORY_K}",
        }.get(metric)
        if key is None:
            raise KeyError(f"no per-query values for {metric!r}")
        return self.per_query[key]


@torch.no_grad()
def embed(fn: Callable, images: torch.Tensor, batch: int = 512, **kw) -> torch.Tensor:
    """Embed (N, C, S, S) images in chunks with ``fn``: (N, D) (``kw`` entries are sliced alongside)."""
    out = []
    for i in range(0, len(images), batch):
        out.append(
            fn(images[i : i + batch], **{k: (v[i : i + batch] if v is not None else None) for k, v in kw.items()})
        )
    return torch.cat(out) if out else torch.empty(0)


class _Eval:
    """Puts a method in eval mode for the duration and restores its mode after."""

    def __init__(self, method):
        self.method, self.was = method, method.training

    def __enter__(self):
        self.method.eval()

    def __exit__(self, *exc):
        self.method.train(self.was)


def evaluate(
    method,
    view,
    ks=(1, 10),
    batch: int = 512,
    shortlist: tuple | None = None,
    adapt: tuple | None = None,
    device: str | torch.device | None = None,
) -> Evaluation:
    """Evaluate ``method`` on a ``RetrievalView`` (fine-grained) or a ``CategoryView`` (category-level).

    ks: the K of Acc@K (fine-grained). shortlist: (base_method, M) for two-stage retrieval with a
    pairwise method, or (base_method, M, base_view) where the base method reads the same queries and photos
    from another view (e.g. trunk features where the pairwise method reads nodes). adapt: (column,
    support_for) for test-time adaptation (see the module docstring).
    """
    if isinstance(view, CategoryView):
        return _evaluate_category(method, view, batch, adapt)
    if not isinstance(view, RetrievalView):
        raise TypeError(f"view must be a RetrievalView or a CategoryView, got {type(view).__name__}")
    ks = tuple(int(k) for k in ks)
    if adapt is not None:
        return _evaluate_adapted(method, view, ks, batch, adapt)
    with _Eval(method):
        if getattr(method, "pairwise", False):
            ranks, pairs = _pairwise_ranks(method, view, batch, shortlist)
        else:
            dist = distances(method, view.queries, view.gallery, batch)
            ranks, pairs = M.true_match_rank(dist, view.target.numpy(), candidates=view.candidates()), None
    return Evaluation(
        "fine_grained", {f"acc_at_{k}": M.acc_at_k(ranks, k) for k in ks}, {"rank": ranks}, view.table, pairs
    )


def distances(method, queries, gallery, batch: int = 512, style=None) -> np.ndarray:
    """(N, M) Euclidean distances between the method's query and gallery embeddings."""
    kw = {"style": style} if style is not None else {}
    q = embed(method.embed_query, queries, batch, **kw)
    g = embed(method.embed_gallery, gallery, batch)
    return M.pairwise_distances(q.cpu(), g.cpu())


def _pairwise_ranks(method, view: RetrievalView, batch: int, shortlist) -> tuple[np.ndarray, int]:
    """Ranks from pair distances over every candidate, or over a base method's top-M shortlist."""
    n, m = len(view), len(view.gallery)
    cand = view.candidates()
    cand = np.ones((n, m), bool) if cand is None else cand
    # a method whose nodes come from strokes (``needs_strokes``) gets the queries' strokes when the view has
    # them (None otherwise: the method decides what stands in for them)
    kw = {"strokes": view.strokes} if getattr(method, "needs_strokes", False) else {}
    qf = embed(method.embed_query, view.queries, batch, **kw)
    gf = embed(method.embed_gallery, view.gallery, batch)
    if shortlist is None:
        pairs = np.argwhere(cand)
        dist = np.full((n, m), np.inf)
        dist[pairs[:, 0], pairs[:, 1]] = _score_pairs(method, qf, gf, pairs, batch)
        return M.true_match_rank(dist, view.target.numpy(), candidates=cand), len(pairs)
    base, top, *base_view = shortlist  # the base method reads the same items from its own view, when given
    base_view = base_view[0] if base_view else view
    if int(top) < 1:
        raise ValueError(f"the shortlist size M must be >= 1, got {top}")
    if len(base_view) != n or len(base_view.gallery) != m:
        raise ValueError(f"shortlist view: {len(base_view)} queries, {len(base_view.gallery)} photos; not {n}, {m}")
    with _Eval(base):
        base_dist = distances(base, base_view.queries, base_view.gallery, batch)
    base_dist = np.where(cand, base_dist, np.inf)
    base_rank = M.true_match_rank(base_dist, view.target.numpy(), candidates=cand)
    order = np.argsort(base_dist, axis=1, kind="stable")
    keep = np.minimum(int(top), cand.sum(1))
    pairs = np.concatenate([np.stack([np.full(k, q), order[q, :k]], 1) for q, k in enumerate(keep)])
    scores = _score_pairs(method, qf, gf, pairs, batch)
    ranks = base_rank.copy()
    start = 0
    target = view.target.numpy()
    for q, k in enumerate(keep):
        items, s = order[q, :k], scores[start : start + k]
        start += k
        hit = np.flatnonzero(items == target[q])
        if len(hit):  # the true photo was shortlisted: its rank among the re-scored items, ties against
            ranks[q] = int((s <= s[hit[0]]).sum())
        # else it stays behind the shortlist, where the base method put it (rank > M)
    return ranks, len(pairs)


@torch.no_grad()
def _score_pairs(method, qf, gf, pairs: np.ndarray, batch: int) -> np.ndarray:
    out = []
    for i in range(0, len(pairs), batch):
        p = torch.as_tensor(pairs[i : i + batch], dtype=torch.long)
        out.append(method.pair_distance(method.select(qf, p[:, 0]), method.select(gf, p[:, 1])).detach().cpu())
    return torch.cat(out).double().numpy() if out else np.zeros(0)


class _Kept:
    """The queries' and the gallery's features under the part of ``method`` that its adaptation leaves as it is
    (``method.kept_features()``: a module F, with embedding = ``embed_features(F(x))``), computed once, so that
    each group's adapted copy maps them with its own head instead of running F (at the paper scale the trunk) on
    the whole gallery again per drawer or class. ``None`` features where the method has no such part (MAML adapts
    every layer): each adapted copy then embeds the images itself."""

    def __init__(self, method, queries, gallery, batch: int):
        kept = getattr(method, "kept_features", lambda: None)()
        self.q = self.g = None
        if kept is not None:
            with _Eval(method):
                self.q, self.g = embed(kept, queries, batch), embed(kept, gallery, batch)

    @torch.no_grad()
    def distances(self, adapted, queries, gallery, rows, batch: int) -> np.ndarray:
        """(len(rows), M) distances of the adapted copy for the queries ``rows``."""
        if self.q is None:
            return distances(adapted, queries[torch.as_tensor(rows)], gallery, batch)
        q = embed(adapted.embed_features, self.q[torch.as_tensor(rows)], batch)
        return M.pairwise_distances(q.cpu(), embed(adapted.embed_features, self.g, batch).cpu())


def _adapted_copies(method, view, adapt):
    """(rows, the method adapted to their group's support) for each value of the ``adapt`` column, in order."""
    column, support_for = adapt
    if column not in view.table:
        raise KeyError(f"{view.name}: no column {column!r} to adapt by")
    for value, rows in view.table.groupby(column, sort=True).indices.items():
        adapted = method.adapt(support_for(value))
        if adapted is method:
            raise RuntimeError(f"{type(method).__name__}.adapt returned the method itself; it must return a new one")
        yield rows, adapted


def _evaluate_adapted(method, view: RetrievalView, ks, batch, adapt) -> Evaluation:
    ranks = np.zeros(len(view), dtype=np.int64)
    cand = view.candidates()
    target = view.target.numpy()
    kept = None
    for rows, adapted in _adapted_copies(method, view, adapt):
        kept = kept or _Kept(method, view.queries, view.gallery, batch)  # after the first adapt: its errors first
        with _Eval(adapted):
            dist = kept.distances(adapted, view.queries, view.gallery, rows, batch)
        ranks[rows] = M.true_match_rank(dist, target[rows], candidates=None if cand is None else cand[rows])
    return Evaluation("fine_grained", {f"acc_at_{k}": M.acc_at_k(ranks, k) for k in ks}, {"rank": ranks}, view.table)


def _evaluate_category(method, view: CategoryView, batch: int, adapt=None) -> Evaluation:
    """Category-level metrics; with ``adapt``, each group's queries are ranked against the whole gallery by
    the method adapted to that group's support (a fresh copy each time)."""
    style = view.style if getattr(method, "styled", False) else None
    if adapt is None:
        with _Eval(method):
            dist = distances(method, view.queries, view.gallery, batch, style=style)
    else:
        dist = np.zeros((len(view), len(view.gallery)))
        kept = None
        for rows, adapted in _adapted_copies(method, view, adapt):
            with _Eval(adapted):
                if style is None:
                    kept = kept or _Kept(method, view.queries, view.gallery, batch)
                    dist[rows] = kept.distances(adapted, view.queries, view.gallery, rows, batch)
                else:
                    r = torch.as_tensor(rows, dtype=torch.long)
                    dist[rows] = distances(adapted, view.queries[r], view.gallery, batch, style=style[r])
    k = CATEGORY_K
    ranked = M.ranked_relevance(dist, view.relevant())  # sorted once for every metric
    per = {
        "ap_all": M.ranked_average_precision(ranked),
        f"ap_at_{k}": M.ranked_average_precision(ranked, k),
        f"p_at_{k}": M.ranked_precision(ranked, k),
    }
    metrics = {
        "map_all": M.valid_mean(per["ap_all"]),
        f"map_at_{k}": M.valid_mean(per[f"ap_at_{k}"]),
        f"prec_at_{k}": M.valid_mean(per[f"p_at_{k}"]),
    }
    return Evaluation("category", metrics, per, view.table)


def pooled(evaluations: list[Evaluation]) -> Evaluation:
    """One ``Evaluation`` of several on disjoint query sets (e.g. the two folds of a test set, each asked
    against the other): per-query values and tables concatenated, each metric the mean of its per-query
    values (queries without a relevant item, NaN, left out as ``metrics`` does)."""
    if not evaluations:
        raise ValueError("pooled: no evaluations")
    first = evaluations[0]
    for ev in evaluations[1:]:
        if ev.protocol != first.protocol or set(ev.per_query) != set(first.per_query):
            raise ValueError(
                f"pooled: a {ev.protocol} evaluation of {sorted(ev.per_query)} beside a {first.protocol} one"
            )
    per = {k: np.concatenate([ev.per_query[k] for ev in evaluations]) for k in first.per_query}
    out = Evaluation(first.protocol, {}, per, pd.concat([ev.table for ev in evaluations], ignore_index=True))
    for metric in first.metrics:
        try:
            out.metrics[metric] = float(np.nanmean(out.outcome(metric)))
        except KeyError:  # a metric without per-query values (not poolable)
            continue
    return out


def random_ranking(view: CategoryView) -> Evaluation:
    """What a random ranking scores on a ``CategoryView``: each query's expected average precision over
    uniform random orders of the gallery, exactly (R relevant of M: (R - 1) / (M - 1) + H_M (M - R) /
    (M (M - 1)), H_M the M-th harmonic number), as an ``Evaluation`` of ``map_all`` (a floor)."""
    rel = view.relevant()
    m, r = rel.shape[1], rel.sum(1).astype(np.float64)
    h = float(np.sum(1.0 / np.arange(1, m + 1)))
    ap = (r - 1) / max(m - 1, 1) + h * (m - r) / (m * max(m - 1, 1)) if m > 1 else np.ones(len(r))
    ap = np.where(r > 0, ap, 0.0)
    return Evaluation("category", {"map_all": float(ap.mean())}, {"ap_all": ap}, view.table)


def linear_probe(
    train_x: torch.Tensor,
    train_y,
    test_x: torch.Tensor,
    test_y,
    steps: int = 300,
    weight_decay: float = 1e-3,
    seed: int = 0,
) -> np.ndarray:
    """Multinomial logistic regression fitted on (train_x (N, D), train_y (N,) labels), applied to test_x:
    (M,) float64, 1 where the predicted label equals test_y. Features are standardised on train_x."""
    labels = sorted(set(train_y) | set(test_y))
    code = {c: i for i, c in enumerate(labels)}
    ytr = torch.as_tensor([code[c] for c in train_y])
    yte = np.array([code[c] for c in test_y])
    mu, sd = train_x.mean(0), train_x.std(0) + 1e-6
    xtr, xte = (train_x - mu) / sd, (test_x - mu) / sd
    g = torch.Generator().manual_seed(seed)
    w = (0.01 * torch.randn(xtr.shape[1], len(labels), generator=g)).requires_grad_()
    b = torch.zeros(len(labels), requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=0.05)
    for _ in range(steps):
        opt.zero_grad()
        loss = F.cross_entropy(xtr @ w + b, ytr) + weight_decay * (w**2).sum()
        loss.backward()
        opt.step()
    with torch.no_grad():
        pred = (xte @ w + b).argmax(1).numpy()
    return (pred == yte).astype(np.float64)
