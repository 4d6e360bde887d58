"""Nearest-neighbour search (sbir_core.search): exact top-k against brute force, FAISS recall, the cache."""

import importlib.util
import math
import warnings

import numpy as np
import pytest
import torch

from sbir_core import search as S
from sbir_core.cache import CacheWarning

HAVE_FAISS = importlib.util.find_spec("faiss") is not None
needs_faiss = pytest.mark.skipif(not HAVE_FAISS, reason="faiss-cpu is not installed (requirements.txt pins it)")


def brute(q, g, k):
    """Reference: Euclidean norms of differences, stable argsort (ties to the lower index)."""
    d = np.linalg.norm(q.astype(np.float64)[:, None] - g.astype(np.float64)[None], axis=2)
    idx = np.argsort(d, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(d, idx, 1) ** 2, idx


def unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("chunk", [7, 64, S.CHUNK_ELEMENTS])
def test_exact_topk_matches_brute_force_with_ties(chunk):
    rng = np.random.default_rng(1)
    # small integers: every distance is an exact integer in float32, so duplicate rows and equal
    # distances tie exactly whatever the summation order, and the tie rule is tested, not rounding
    g = rng.integers(-2, 3, (300, 5)).astype(np.float32)
    g[100:110] = g[5]  # duplicates of one row, later in the gallery
    q = np.concatenate([rng.integers(-2, 3, (20, 5)), g[[5, 0]]]).astype(np.float32)
    for k in (1, 10, 50):
        d, i = S.exact_topk(q, g, k, chunk_elements=chunk * len(q))
        rd, ri = brute(q, g, k)
        assert i.dtype == np.int64 and d.dtype == np.float32 and i.shape == (len(q), k)
        np.testing.assert_array_equal(i, ri)
        np.testing.assert_allclose(d, rd, atol=1e-4)
    d, i = S.exact_topk(g[[5]], g, 11)
    assert i[0].tolist() == [5, *range(100, 110)] and np.all(d == 0)  # the duplicates, in index order


def test_exact_topk_continuous_data_and_torch_input():
    rng = np.random.default_rng(2)
    g, q = unit(rng.standard_normal((500, 16))), unit(rng.standard_normal((30, 16)))
    d, i = S.exact_topk(torch.from_numpy(q), torch.from_numpy(g), 10, chunk_elements=30 * 97)
    rd, ri = brute(q, g, 10)
    np.testing.assert_array_equal(i, ri)
    np.testing.assert_allclose(d, rd, atol=1e-5)
    assert np.all(np.diff(d, axis=1) >= 0)


def test_exact_topk_k_above_n_and_single_item():
    rng = np.random.default_rng(3)
    g, q = rng.standard_normal((4, 8)).astype(np.float32), rng.standard_normal((3, 8)).astype(np.float32)
    d, i = S.exact_topk(q, g, 10)
    assert i.shape == (3, 4) and sorted(i[0]) == [0, 1, 2, 3]
    np.testing.assert_array_equal(i, brute(q, g, 4)[1])
    d, i = S.exact_topk(q, g[:1], 5)
    assert i.shape == (3, 1) and np.all(i == 0)
    np.testing.assert_allclose(d[:, 0], ((q - g[0]) ** 2).sum(1), rtol=1e-5)


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(k=0), "k must be"),
        (dict(k=2.5), "k must be"),
        (dict(g=np.zeros((0, 4), np.float32)), "empty"),
        (dict(g=np.zeros((5, 3), np.float32)), "dimension"),
        (dict(q=np.array([[np.nan, 0, 0, 0]], np.float32)), "non-finite"),
        (dict(g=np.full((5, 4), np.inf, np.float32)), "non-finite"),
        (dict(q=np.zeros(4, np.float32)), "2-d"),
    ],
)
def test_exact_topk_bad_inputs(bad, match):
    args = dict(q=np.zeros((2, 4), np.float32), g=np.ones((5, 4), np.float32), k=3) | bad
    with pytest.raises(ValueError, match=match):
        S.exact_topk(args["q"], args["g"], args["k"])


def test_gallery_search_exact_backend_and_ids():
    rng = np.random.default_rng(4)
    g, q = unit(rng.standard_normal((200, 16))), unit(rng.standard_normal((5, 16)))
    s = S.GallerySearch(g, ids=[f"p{j}" for j in range(200)])
    assert s.backend == "exact" and len(s) == 200
    d, i = s.search(q, 7)
    rd, ri = brute(q, g, 7)
    np.testing.assert_array_equal(i, ri)
    assert s.ids_of(i[:1]) == [[f"p{j}" for j in ri[0]]]
    one = S.GallerySearch(g[:1])
    d, i = one.search(q, 10)  # a gallery of one: every query gets that item, k clipped to 1
    assert i.shape == (5, 1) and np.all(i == 0)
    with pytest.raises(ValueError, match="ids"):
        S.GallerySearch(g, ids=["a"])
    with pytest.raises(ValueError, match="empty"):
        S.GallerySearch(np.zeros((0, 16), np.float32))
    with pytest.raises(ValueError, match="backend"):
        S.GallerySearch(g, backend="annoy")
    with pytest.raises(ValueError, match="dimension"):
        s.search(q[:, :8], 3)


@needs_faiss
def test_gallery_search_faiss_backend_recall():
    """Clustered unit vectors, queries near gallery items: with nprobe = nlist / 4 the IVF index misses a
    true neighbour only when it is filed in a list whose centroid is not among the query's 4 nearest of
    16 -- with 16 well-separated clusters of 125 items each, the top 10 of a query lie in its own cluster
    and hence (k-means finds the clusters) in one or two lists. A lower bound of 0.9 leaves room for a
    k-means split of a cluster; exact agreement is not expected, so the bound is not 1."""
    rng = np.random.default_rng(5)
    centres = unit(rng.standard_normal((16, 32)))
    g = unit(centres[rng.integers(0, 16, 2000)] + 0.3 / math.sqrt(32) * rng.standard_normal((2000, 32)))
    q = unit(g[rng.choice(2000, 50, replace=False)] + 0.1 / math.sqrt(32) * rng.standard_normal((50, 32)))
    s = S.GallerySearch(g, backend="faiss", nlist=16, nprobe=4)
    assert s.backend == "faiss" and s.nprobe == 4
    d, i = s.search(q, 10)
    _, ex = S.exact_topk(q, g, 10)
    assert i.shape == (50, 10) and i.dtype == np.int64
    assert S.recall_at_k(i, ex) >= 0.9
    assert np.all(np.diff(d, axis=1) >= 0)
    s.set_nprobe(16)  # every list probed: IVFFlat is exact (up to float ties)
    assert S.recall_at_k(s.search(q, 10)[1], ex) == 1.0
    with pytest.raises(ValueError, match="nprobe"):
        s.set_nprobe(17)
    one = S.GallerySearch(g[:1], backend="faiss")  # a gallery of one, forced onto FAISS
    assert one.search(q, 10)[1].tolist() == [[0]] * 50


@needs_faiss
def test_faiss_default_by_size_and_threads():
    g = unit(np.random.default_rng(6).standard_normal((S.FAISS_MIN_N, 8)))
    torch.set_num_threads(1)
    try:
        s = S.GallerySearch(g)
        import faiss

        assert s.backend == "faiss" and s.nlist == S.ivf_nlist(len(g)) and faiss.omp_get_max_threads() == 1
    finally:
        from sbir_core.repro import set_threads

        set_threads()


def test_missing_faiss_is_named(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_faiss(name, *a, **kw):
        if name == "faiss":
            raise ImportError("No module named 'faiss'")
        return real(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_faiss)
    with pytest.raises(ImportError, match="faiss-cpu"):
        S.GallerySearch(np.eye(4, dtype=np.float32), backend="faiss")
    assert S.GallerySearch(np.eye(4, dtype=np.float32)).backend == "exact"  # exact needs no faiss


def test_ivf_nlist():
    assert S.ivf_nlist(1) == 1 and S.ivf_nlist(1_000_000) == 4096 and S.ivf_nlist(100_000) == 1024
    assert all(n // 39 >= S.ivf_nlist(n) or S.ivf_nlist(n) == 1 for n in (10, 100, 1000, 5000))


def test_recall_at_k_hand_made():
    exact = np.array([[0, 1, 2], [3, 4, 5]])
    assert S.recall_at_k(exact, exact) == 1.0
    assert S.recall_at_k(np.array([[2, 1, 0], [5, 9, 8]]), exact) == pytest.approx((3 / 3 + 1 / 3) / 2)
    assert S.recall_at_k(np.array([[7, 8, 9], [0, 1, 2]]), exact) == 0.0
    assert S.recall_at_k(np.array([[0, -1, -1], [3, 4, -1]]), exact) == pytest.approx((1 / 3 + 2 / 3) / 2)
    with pytest.raises(ValueError):
        S.recall_at_k(exact[:1], exact)


def test_cached_gallery_embeddings(tmp_path, monkeypatch):
    monkeypatch.setenv("SBIR_CACHE", str(tmp_path))
    calls = []
    emb = unit(np.random.default_rng(7).standard_normal((20, 8)))

    def compute():
        calls.append(1)
        return emb

    a = S.cached_gallery_embeddings("model-abc_gal123", compute)
    b = S.cached_gallery_embeddings("model-abc_gal123", compute)
    assert len(calls) == 1 and np.array_equal(a, emb) and np.array_equal(b, emb)
    path = tmp_path / "embeddings" / "model-abc_gal123.npz"
    assert path.exists()
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # damage one byte
    path.write_bytes(bytes(raw))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        c = S.cached_gallery_embeddings("model-abc_gal123", compute)
    assert len(calls) == 2 and np.array_equal(c, emb)
    assert any(issubclass(w.category, CacheWarning) for w in caught)
    S.cached_gallery_embeddings("model-abc_gal123", compute)
    assert len(calls) == 2  # healed: the recomputed file is used again


def test_cached_gallery_embeddings_with_the_wrong_row_count_are_recomputed(tmp_path, monkeypatch):
    """A file with a valid checksum but another gallery's number of rows is not used for this gallery."""
    monkeypatch.setenv("SBIR_CACHE", str(tmp_path))
    S.cached_gallery_embeddings("k", lambda: np.ones((5, 4), np.float32))  # a file with 5 rows under the key
    with pytest.warns(CacheWarning, match="shape"):
        got = S.cached_gallery_embeddings("k", lambda: np.zeros((6, 4), np.float32), rows=6)
    assert got.shape == (6, 4)
    with pytest.raises(ValueError, match=r"\(7, D\)"):
        S.cached_gallery_embeddings("k2", lambda: np.zeros((6, 4), np.float32), rows=7)


@pytest.mark.parametrize("key", ["../x", "a/b", "", ".hidden", "a\\b", "x" * 300, "a b", None])
def test_cached_gallery_embeddings_rejects_unsafe_keys(key, tmp_path, monkeypatch):
    monkeypatch.setenv("SBIR_CACHE", str(tmp_path))
    with pytest.raises(ValueError, match="unsafe cache key"):
        S.cached_gallery_embeddings(key, lambda: np.zeros((1, 2), np.float32))
