"""Trunk features of a view, cached by content; principal projections."""

import warnings

import numpy as np
import torch

from sbir_core import features as FT
from sbir_core.data.views import RetrievalView
from sbir_core.models.trunk import TrunkSpec

SPEC = TrunkSpec(block=4, pool=2)


def _view(n=6):
    import pandas as pd

    g = torch.Generator().manual_seed(0)
    table = pd.DataFrame({"category": ["c"] * n, "instance": [f"i{i}" for i in range(n)]})
    return RetrievalView(
        "toy",
        torch.rand(n, 1, 32, 32, generator=g),
        torch.rand(n, 3, 32, 32, generator=g) * 2 - 1,
        torch.arange(n),
        table,
        table.copy(),
        "category",
    )


def test_a_feature_view_keeps_the_retrieval_problem(tmp_path, monkeypatch):
    monkeypatch.setenv("SBIR_CACHE", str(tmp_path))
    v = _view()
    f = FT.feature_view(v, SPEC)
    assert f.queries.shape == (6, 40 * 4) and f.gallery.shape == (6, 40 * 4)
    assert torch.equal(f.target, v.target) and f.group == "category" and f.strokes is None
    assert list(tmp_path.rglob("*.npz"))  # cached on disk


def test_features_are_read_back_from_the_cache_and_a_damaged_file_is_recomputed(tmp_path, monkeypatch):
    monkeypatch.setenv("SBIR_CACHE", str(tmp_path))
    x = _view().queries
    a = FT.features(x, SPEC)
    b = FT.features(x, SPEC)
    assert torch.equal(a, b)
    (path,) = tmp_path.rglob("*.npz")
    path.write_bytes(b"not an npz")
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        c = FT.features(x, SPEC)
    assert torch.equal(a, c)


def test_principal_directions_are_orthonormal_signed_and_keep_the_most_variance():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(500, 6, generator=g) * torch.tensor([5.0, 3.0, 1.0, 0.5, 0.2, 0.1])
    p = FT.principal(x, 2)
    assert p.dim == 2
    assert torch.allclose(p.basis.T @ p.basis, torch.eye(2), atol=1e-5)
    assert (p.basis.gather(0, p.basis.abs().argmax(0, keepdim=True)) > 0).all()
    assert np.allclose(p.basis.abs().argmax(0).numpy(), [0, 1])  # the two widest axes
    q = FT.principal(x, 2)
    assert torch.equal(p.basis, q.basis)  # deterministic
    y = p(x)
    assert y.shape == (500, 2) and abs(float(y.mean(0).abs().max())) < 1e-4
