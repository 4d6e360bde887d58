"""Triplet-SN: the loss against a hand computation, hard negatives, the shared flip, learning."""

import pytest
import torch

from sbir_core.models.triplet import TripletSN, build_triplet, hardest_negative_distance, shared_flip


class Identity(torch.nn.Module):
    """Flattens and normalises: embeddings are the images themselves, so distances are checkable."""

    def forward(self, x):
        return torch.nn.functional.normalize(x.flatten(1), dim=1)


def _batch(b=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "sketch": torch.randn(b, 1, 2, 2, generator=g),
        "photo": torch.randn(b, 1, 2, 2, generator=g),
        "neg": torch.randn(b, 1, 2, 2, generator=g),
        "pos_idx": torch.arange(b),
        "neg_idx": (torch.arange(b) + 1) % b,
    }


def test_loss_equals_torch_triplet_margin_loss():
    batch = _batch()
    model = TripletSN(Identity(), margin=0.2)
    n = lambda x: torch.nn.functional.normalize(x.flatten(1), dim=1)  # noqa: E731
    ref = torch.nn.TripletMarginLoss(margin=0.2, eps=0)(n(batch["sketch"]), n(batch["photo"]), n(batch["neg"]))
    assert torch.allclose(model.loss(batch), ref, atol=1e-6)


def test_hard_negative_skips_the_anchors_own_photo():
    a = torch.tensor([[0.0, 0.0], [10.0, 0.0]])
    cand = torch.tensor([[0.0, 0.1], [0.0, 1.0], [10.0, 0.5], [3.0, 0.0]])
    ids = torch.tensor([0, 1, 1, 2])
    d = hardest_negative_distance(a, cand, torch.tensor([0, 1]), ids)
    # anchor 0: its own photo (id 0) at 0.1 is skipped, nearest other is id 1 at 1.0
    # anchor 1: both id-1 candidates are skipped, nearest other is id 2 at 7.0
    assert torch.allclose(d, torch.tensor([1.0, 7.0]))
    assert torch.isinf(hardest_negative_distance(a[:1], cand[:1], torch.tensor([0]), ids[:1])).all()


def test_hard_loss_uses_the_hardest_valid_candidate():
    """With "hard" negatives each anchor's distance is to its nearest photo of another id in the batch
    (the other anchors' positives and the random negatives), computed here by a loop."""
    batch = _batch(8, seed=2)
    batch["neg_idx"] = torch.tensor([1, 2, 3, 0, 5, 6, 7, 4])
    model = TripletSN(Identity(), negatives="hard", margin=0.2)
    n = lambda x: torch.nn.functional.normalize(x.flatten(1), dim=1)  # noqa: E731
    s, cand = n(batch["sketch"]), torch.cat([n(batch["photo"]), n(batch["neg"])])
    ids = torch.cat([batch["pos_idx"], batch["neg_idx"]])
    expected = []
    for b in range(8):
        d_neg = min(float((s[b] - cand[j]).norm()) for j in range(16) if ids[j] != batch["pos_idx"][b])
        expected.append(max(0.0, float((s[b] - n(batch["photo"])[b]).norm()) - d_neg + 0.2))
    assert model.loss(batch).item() == pytest.approx(sum(expected) / 8, abs=1e-5)
    with pytest.raises(ValueError, match="negatives"):
        TripletSN(Identity(), negatives="semi")


def test_flip_is_shared_by_the_triplet():
    b = 64
    x = torch.arange(b * 4, dtype=torch.float32).view(b, 1, 1, 4)
    flip = torch.rand(b, generator=torch.Generator().manual_seed(0)) < 0.5
    batch = {"sketch": x, "photo": x + 1000, "neg": x + 2000, "flip": flip}
    out = shared_flip(batch)
    flipped = (out["sketch"] != x).any(dim=(1, 2, 3))
    for key, off in (("photo", 1000), ("neg", 2000)):
        assert torch.equal((out[key] != x + off).any(dim=(1, 2, 3)), flipped)
    assert torch.equal(out["sketch"][flipped], x[flipped].flip(-1)) and torch.equal(flipped, flip)


def test_training_steps_reduce_the_loss(tmp_path, monkeypatch):
    monkeypatch.setenv("SBIR_CACHE", str(tmp_path))
    from test_views import tiny_data

    from sbir_core.data.views import fg_view
    from sbir_core.samplers import triplets

    torch.manual_seed(0)
    view = fg_view(tiny_data(), "train", size=16)
    model = build_triplet("cnn", width=8, depth=2, embed_dim=16)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(60):
        loss = model.training_loss(triplets(view, 16, g))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert sum(losses[-10:]) / 10 < 0.5 * sum(losses[:10]) / 10
