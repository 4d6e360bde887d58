"""Nearest-neighbour search over precomputed gallery embeddings: exact (torch) or approximate (FAISS).

Distances are squared Euclidean throughout (FAISS's L2 metric reports the same). For the unit-norm
embeddings of the book's methods this ranks exactly as cosine similarity does (``|q-g|^2 = 2 - 2 q.g``).

- ``exact_topk``: the matmul form ``|q|^2 - 2 q.g + |g|^2`` (clamped at 0), chunked over the gallery so
  that a (Q, N) distance matrix is never held whole; ties are broken by the lower gallery index.
- ``GallerySearch``: exact search below ``FAISS_MIN_N`` gallery items, a FAISS index at and above it.
- ``recall_at_k``: agreement of an approximate top-k with the exact one.
- ``cached_gallery_embeddings``: gallery embeddings computed once per (model, gallery) key, cached on disk.

The FAISS index (``backend="faiss"``) is an ``IndexIVFFlat`` with ``nlist = 4 * sqrt(N)`` rounded to a power
of two (1024 lists at 100,000 items, 4096 at 1,000,000) and ``nprobe = nlist // 8`` lists scanned per query
by default. A query scans about ``nprobe / nlist`` of the gallery and misses only neighbours filed in
lists whose centroids are farther than those it probes. The choice was made by the measurements of
``python -m sbir_core.bench query`` (it prints the full table; these figures are from one run with 2
threads on a shared 2-core machine, so inflated), IVFFlat against IndexHNSWFlat (M=32, efConstruction=40):

- clustered 64-d embeddings (objects; queries near an item, as a sketch is near its photo), 1,000,000
  items: IVF recall@10 0.996 at nprobe=16 (p95 0.15 ms) and 1.000 at nprobe=512 (p95 2.9 ms); HNSW
  0.952-0.993 for efSearch 64-512 (p95 0.15-0.7 ms). Both meet the goal (p95 <= 10 ms at recall >= 0.95);
- isotropic random vectors (the hard case, no structure): IVF reaches 0.989 only at nprobe = nlist / 2
  (p95 8.9 ms at 1,000,000); HNSW needs efSearch 512 for 0.99 at 100,000 and its 1,000,000 build took
  about 2 minutes for recall 0.63 at efSearch 256 in a trial run;
- IVF builds in a fraction of HNSW's time (27-32 s against 78 s at 1,000,000 clustered) and in half its
  memory (253 MB against 504 MB: no graph links), and has one knob whose effect is easy to state.

The default ``nlist // 8`` (512 at 1,000,000) gave recall@10 1.000 on clustered data at p95 2.9 ms with a
wide margin to the goal; on structureless data it gave 0.81, and ``set_nprobe(nlist // 2)`` is the setting
that met the goal there. The right ``nprobe`` depends on the embeddings: measure ``recall_at_k`` against
``exact_topk`` on a sample of queries of the real gallery before relying on a setting.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence

import numpy as np
import torch

FAISS_MIN_N = 100_000  # at and above this gallery size, GallerySearch defaults to the FAISS index
NPROBE_DIVISOR = 8  # default nprobe = nlist // 8 (module docstring: measured, with margin)
TRAIN_PER_LIST = 40  # IVF k-means training points per inverted list
CHUNK_ELEMENTS = 1 << 24  # distances held at once by exact_topk: 16 M floats = 64 MB per chunk
_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


def _as_matrix(x, name: str) -> torch.Tensor:
    """numpy or torch (R, D) -> contiguous float32 torch tensor on the CPU; ValueError on bad shape or values."""
    t = x.detach() if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))
    if t.ndim != 2:
        raise ValueError(f"{name} must be a 2-d (rows, dim) array, got shape {tuple(t.shape)}")
    if not (t.dtype.is_floating_point or t.dtype in (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)):
        raise ValueError(f"{name} must hold numbers, got dtype {t.dtype}")
    t = t.to(device="cpu", dtype=torch.float32).contiguous()
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} holds non-finite values (NaN or inf)")
    return t


def _check_k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    return int(k)


def _check_pair(q: torch.Tensor, g: torch.Tensor) -> None:
    if g.shape[0] == 0:
        raise ValueError("the gallery is empty: nothing to search")
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"queries have dimension {q.shape[1]} but the gallery has {g.shape[1]}")


def _chunk_topk(d: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k smallest entries of each row of d (Q, C), sorted by (value, column): ties to the lower column."""
    vals, cols = torch.topk(d, k, dim=1, largest=False, sorted=True)
    kth = vals[:, -1:]
    room = k - (vals < kth).sum(1, keepdim=True)  # slots left for entries equal to the k-th value
    tied = d == kth
    if bool((tied.sum(1, keepdim=True) > room).any()):
        # more entries equal the k-th value than fit: topk's pick among them is arbitrary, so keep every
        # entry below it and, of those equal to it, the first `room` columns
        keep = (d < kth) | (tied & (torch.cumsum(tied, dim=1) <= room))
        cols = torch.nonzero(keep)[:, 1].view(d.shape[0], k)  # row-major: ascending columns within a row
        vals = torch.gather(d, 1, cols)
    else:
        cols = torch.sort(cols, dim=1).values  # the same set; put it in column order for the stable sort
        vals = torch.gather(d, 1, cols)
    order = torch.sort(vals, dim=1, stable=True).indices  # stable: equal values stay in column order
    return torch.gather(vals, 1, order), torch.gather(cols, 1, order)


def sq_norms(x: torch.Tensor) -> torch.Tensor:
    """(N, D) -> (N,) squared norms, the gallery term of ``exact_topk`` (precompute it once per gallery)."""
    return torch.einsum("ij,ij->i", x, x)


def exact_topk(
    queries, gallery, k: int, *, gallery_sq_norms: torch.Tensor | None = None, chunk_elements: int = CHUNK_ELEMENTS
) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest gallery rows of each query by squared Euclidean distance.

    queries (Q, D), gallery (N, D): float arrays, numpy or torch. Returns (dist (Q, k') float32 ascending,
    idx (Q, k') int64) with k' = min(k, N). Distances use ``|q|^2 - 2 q.g + |g|^2`` clamped at 0 (so a
    row's distance to itself may print as a small positive number, not 0), computed over gallery chunks
    of about ``chunk_elements / Q`` rows. Ties (equal float32 distances) go to the lower gallery index,
    so the result is deterministic. ValueError for k < 1, an empty gallery, mismatched D, NaN or inf.
    gallery_sq_norms: ``sq_norms(gallery)`` when the caller keeps it (``GallerySearch`` does), saving a
    pass over the gallery per call.
    """
    k = _check_k(k)
    q, g = _as_matrix(queries, "queries"), _as_matrix(gallery, "gallery")
    _check_pair(q, g)
    if gallery_sq_norms is not None and tuple(gallery_sq_norms.shape) != (g.shape[0],):
        raise ValueError(f"gallery_sq_norms has shape {tuple(gallery_sq_norms.shape)}, expected ({g.shape[0]},)")
    return _exact(q, g, sq_norms(g) if gallery_sq_norms is None else gallery_sq_norms, k, chunk_elements)


def _exact(
    q: torch.Tensor, g: torch.Tensor, gn: torch.Tensor, k: int, chunk_elements: int = CHUNK_ELEMENTS
) -> tuple[np.ndarray, np.ndarray]:
    """``exact_topk`` on checked float32 tensors (no validation pass over the gallery per call)."""
    n = g.shape[0]
    k = min(k, n)
    if q.shape[0] == 0:
        return np.zeros((0, k), np.float32), np.zeros((0, k), np.int64)
    step = max(k, chunk_elements // q.shape[0])
    qn = sq_norms(q)[:, None]
    best_d = best_i = None
    with torch.inference_mode():
        for start in range(0, n, step):
            gc = g[start : start + step]
            d = torch.addmm(gn[None, start : start + step], q, gc.T, alpha=-2.0).add_(qn).clamp_(min=0.0)
            cd, ci = _chunk_topk(d, min(k, d.shape[1]))
            ci = ci + start
            if best_d is None:
                best_d, best_i = cd, ci
            else:
                # earlier chunks hold lower indices and come first, so a stable sort keeps index order on ties
                cat_d, cat_i = torch.cat([best_d, cd], 1), torch.cat([best_i, ci], 1)
                order = torch.sort(cat_d, dim=1, stable=True).indices[:, :k]
                best_d, best_i = torch.gather(cat_d, 1, order), torch.gather(cat_i, 1, order)
    return best_d.numpy(), best_i.to(torch.int64).numpy()


def recall_at_k(approx_idx, exact_idx) -> float:
    """Mean over queries of |approx ∩ exact| / k, for (Q, k) index arrays (k = exact_idx's width).

    Entries of -1 in ``approx_idx`` (FAISS's "no result") never count as found.
    """
    a, e = np.asarray(approx_idx), np.asarray(exact_idx)
    if a.ndim != 2 or e.ndim != 2 or a.shape[0] != e.shape[0]:
        raise ValueError(f"need two (Q, k) arrays with the same Q, got {a.shape} and {e.shape}")
    if e.shape[0] == 0 or e.shape[1] == 0:
        raise ValueError("recall of an empty result is undefined")
    k = e.shape[1]
    hits = [len(set(ar[ar >= 0].tolist()) & set(er.tolist())) for ar, er in zip(a, e)]
    return float(np.mean(hits) / k)


def _faiss():
    """Import faiss on first use; a clear error naming the package when it is missing."""
    try:
        import faiss
    except ImportError as err:
        raise ImportError(
            "the FAISS backend needs the package faiss-cpu (pip install faiss-cpu==1.15.1; "
            "it is pinned in requirements.txt); use backend='exact' without it"
        ) from err
    # the same thread count as torch (sbir_core.repro.set_threads pins torch's)
    faiss.omp_set_num_threads(torch.get_num_threads())
    return faiss


def ivf_nlist(n: int) -> int:
    """Inverted lists for n items: 4 * sqrt(n) rounded to a power of two, at least 1, at most n // 39.

    (FAISS's k-means wants >= 39 training points per centroid; 4 * sqrt(n) is its documented rule of thumb.)
    """
    target = 4 * math.sqrt(n)
    nlist = 2 ** max(0, round(math.log2(target)))
    return int(max(1, min(nlist, n // 39)))


class GallerySearch:
    """Top-k search over a fixed gallery of (N, D) embeddings.

    backend: "exact" (``exact_topk``; the default for N < ``FAISS_MIN_N``) or "faiss" (an ``IndexIVFFlat``,
        the default from ``FAISS_MIN_N`` up; see the module docstring for the choice). ``None``: by size.
    ids: optional labels, one per gallery row (``ids_of`` maps result indices to them).
    nlist, nprobe: the IVF index's lists and lists probed per query (defaults: ``ivf_nlist(N)`` and
        max(1, nlist // 8), see the module docstring); ``nprobe`` may be changed later with ``set_nprobe``.
    seed: the k-means seed of the IVF training, so a rebuilt index is the same index.

    ``search(queries, k)`` returns (dist (Q, k'), idx (Q, k')) as ``exact_topk`` does, k' = min(k, N): a
    gallery of one item answers every query with that item. With FAISS an entry may be -1 / inf when the
    probed lists hold fewer than k items (only possible with tiny lists).
    """

    def __init__(
        self,
        embeddings,
        ids: Sequence | None = None,
        backend: str | None = None,
        nlist: int | None = None,
        nprobe: int | None = None,
        seed: int = 0,
    ):
        self.embeddings = _as_matrix(embeddings, "gallery embeddings")
        n, dim = self.embeddings.shape
        if n == 0:
            raise ValueError("the gallery is empty: nothing to search")
        if ids is not None and len(ids) != n:
            raise ValueError(f"{len(ids)} ids for {n} gallery embeddings")
        self.ids = list(ids) if ids is not None else None
        backend = backend or ("faiss" if n >= FAISS_MIN_N else "exact")
        if backend not in ("exact", "faiss"):
            raise ValueError(f"backend must be 'exact' or 'faiss', got {backend!r}")
        self.backend = backend
        self.index = None
        self._sq_norms = sq_norms(self.embeddings) if backend == "exact" else None
        if backend == "faiss":
            faiss = _faiss()
            self.nlist = int(nlist) if nlist is not None else ivf_nlist(n)
            if not 1 <= self.nlist <= n:
                raise ValueError(f"nlist must be in [1, {n}], got {self.nlist}")
            x = self.embeddings.numpy()
            self.index = faiss.IndexIVFFlat(faiss.IndexFlatL2(dim), dim, self.nlist, faiss.METRIC_L2)
            self.index.cp.seed = seed
            rng = np.random.default_rng(seed)
            # k-means on TRAIN_PER_LIST points per list (FAISS wants >= 39): the training cost grows with
            # sample * nlist, and more points barely move the centroids that the lists are filed by
            m = TRAIN_PER_LIST * self.nlist
            sample = x if n <= m else x[np.sort(rng.choice(n, m, replace=False))]
            self.index.train(sample)
            self.index.add(x)
            self.set_nprobe(nprobe if nprobe is not None else max(1, self.nlist // NPROBE_DIVISOR))

    def __len__(self) -> int:
        return self.embeddings.shape[0]

    def set_nprobe(self, nprobe: int) -> None:
        """Lists scanned per query (FAISS backend): more is slower and closer to exact."""
        if self.index is None:
            raise ValueError("nprobe applies to the faiss backend only")
        if not 1 <= int(nprobe) <= self.nlist:
            raise ValueError(f"nprobe must be in [1, {self.nlist}], got {nprobe}")
        self.nprobe = int(nprobe)
        self.index.nprobe = self.nprobe

    def search(self, queries, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """(Q, D) queries -> (dist (Q, k') float32 ascending, idx (Q, k') int64), k' = min(k, N)."""
        k = _check_k(k)
        q = _as_matrix(queries, "queries")
        _check_pair(q, self.embeddings)
        if self.index is None:
            return _exact(q, self.embeddings, self._sq_norms, k)
        _faiss()  # re-pin threads: set_threads may have changed them since the build
        dist, idx = self.index.search(q.numpy(), min(k, len(self)))
        return dist.astype(np.float32, copy=False), idx.astype(np.int64, copy=False)

    def ids_of(self, idx) -> list:
        """Result indices (Q, k) -> the gallery ids (list of lists; None where FAISS returned -1)."""
        labels = self.ids if self.ids is not None else list(range(len(self)))
        return [[labels[i] if i >= 0 else None for i in row] for row in np.asarray(idx).tolist()]


def cached_gallery_embeddings(
    key: str, compute: Callable[[], np.ndarray], use_cache: bool = True, rows: int | None = None
) -> np.ndarray:
    """Gallery embeddings (N, D) float32, computed once by ``compute()`` and cached on disk.

    key: "<model store key>_<gallery digest>", a plain file name (letters, digits, ``.``, ``_``, ``-``; no
    path separators), so the cache is ``cache_dir() / "embeddings" / f"{key}.npz"``. The file is checksummed
    (``sbir_core.cache.cached_array``): a damaged or non-finite one is reported, deleted and recomputed, and so
    is one with other than ``rows`` rows (when given: one per gallery item).
    """
    from sbir_core.cache import cached_array
    from sbir_core.data.base import cache_dir

    if not isinstance(key, str) or not _KEY.match(key) or ".." in key:
        raise ValueError(
            f"unsafe cache key {key!r}: use letters, digits, '.', '_' and '-' only (no path), "
            "starting with a letter or digit, at most 200 characters"
        )

    def checked() -> np.ndarray:
        arr = np.ascontiguousarray(compute(), dtype=np.float32)
        if arr.ndim != 2 or arr.shape[0] == 0 or (rows is not None and arr.shape[0] != rows):
            want = f"({rows}, D)" if rows is not None else "non-empty (N, D)"
            raise ValueError(f"gallery embeddings must be a {want} array, got shape {arr.shape}")
        return arr

    return cached_array(
        cache_dir() / "embeddings" / f"{key}.npz", checked, shape=(rows, None), dtype=np.float32, use_cache=use_cache
    )
