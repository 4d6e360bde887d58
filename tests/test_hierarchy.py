"""Cross-modal hierarchical FG-SBIR (``sbir_core.models.hierarchy``, METHODS.md §B).

What is tested:

* boxes: clipping, resizing and flipping; one node box per stroke in drawing order (capped, the tail
  merged into the last box, no whole-sketch node); pieces of ink for sketches without strokes;
  selective-search proposals (whole photo first, the same boxes every call, cached on disk and in memory);
* node features: ``roi_align`` against the slow reference, ``cell_cover`` and ``map_nodes`` (pools
  "roi" and "cells", with and without a projection) against brute-force computations;
* the head: shapes of nodes and embeddings (ready-made node tensors pass through, images with strokes
  give nodes), gradients reaching every trainable parameter of every variant, the parts each variant
  has, bad options, the same spec giving the same fingerprint and weights;
* straight-through Gumbel-softmax and its annealing; node fusion (starts as the mean, one merge per
  level and branch, run to one node, padding never changes a distance); ``merge_trace``;
* evaluation on views of ready-made nodes, two-stage retrieval from another view of the same items;
* overfitting six toy pairs end to end (images, strokes, selective search, a small CNN): the rows
  without fusion and the full hierarchy; ``views.redraw``.
"""

import ctypes
import dataclasses
import random

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sbir_core import strokes as S
from sbir_core.data.base import DataError
from sbir_core.data.views import RetrievalView, photo_tensor, redraw, sketch_tensor
from sbir_core.evaluation import evaluate
from sbir_core.features import Projection
from sbir_core.models import hierarchy as H
from sbir_core.models.base import Method, MethodError, MethodSpec, build_method
from sbir_core.runs import fingerprint

SIZE = 32  # side of the toy images
C, K = 8, 5  # channels and slots of ready-made nodes


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The head's many small matrix products are several times slower on 2 contended threads."""
    was = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(was)


@pytest.fixture(autouse=True, scope="module")
def own_cache(tmp_path_factory):
    """Selective-search proposals go to a cache of this module's own, not the repository's."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SBIR_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


def toy_view(n=8, seed=0, size=SIZE) -> RetrievalView:
    """Each item a box at a random place: the photo a filled box, the sketch its outline in 4 strokes."""
    rng = np.random.default_rng(seed)
    photos, strokes = [], []
    for _ in range(n):
        x1, y1 = rng.uniform(10, 120, 2)
        x2, y2 = x1 + rng.uniform(60, 120), y1 + rng.uniform(60, 120)
        img = np.full((size, size, 3), 230, np.uint8)
        s = size / S.CANVAS
        img[int(y1 * s) : int(y2 * s), int(x1 * s) : int(x2 * s)] = rng.integers(0, 200, 3)
        for _ in range(3):  # small patches, so that selective search finds several regions
            px, py = rng.integers(0, size - 6, 2)
            img[py : py + 5, px : px + 5] = rng.integers(0, 255, 3)
        photos.append(img)
        c = [(x1, y1), (x2, y1), (x2, y2), (x1, y2)]
        strokes.append(S.join_strokes([np.array([c[i], c[(i + 1) % 4]]) for i in range(4)]))
    table = pd.DataFrame({"instance": [f"i{i}" for i in range(n)], "category": "c"})
    return RetrievalView(
        "toy",
        sketch_tensor(S.rasterise_many(strokes, size)),
        photo_tensor(np.stack(photos)),
        torch.arange(n),
        table,
        table.copy(),
        None,
        strokes,
    )


def batch_of(view, idx, neg, flip=None):
    """A "triplets" batch of a view of images: anchors ``idx``, their photos and the photos ``neg``."""
    idx, neg = torch.as_tensor(idx), torch.as_tensor(neg)
    return {
        "sketch": view.queries[idx],
        "photo": view.gallery[view.target[idx]],
        "neg": view.gallery[neg],
        "pos_idx": view.target[idx],
        "neg_idx": neg,
        "strokes": [view.strokes[i] for i in idx.tolist()],
        "flip": torch.zeros(len(idx), dtype=torch.bool) if flip is None else torch.as_tensor(flip),
    }


def nodes(counts, seed=0, k=K, channels=C) -> torch.Tensor:
    """Ready-made padded nodes (len(counts), k, channels + 1): item i holds counts[i] random nodes, mask last."""
    g = torch.Generator().manual_seed(seed)
    out = torch.zeros(len(counts), k, channels + 1)
    for i, n in enumerate(counts):
        out[i, :n, :-1] = torch.randn(n, channels, generator=g)
        out[i, :n, -1] = 1.0
    return out


def node_view(n=6, seed=0, group=None) -> RetrievalView:
    """A view whose queries and gallery are ready-made nodes (1 to K per item), item i matching photo i."""
    g = torch.Generator().manual_seed(seed)
    counts = lambda: torch.randint(1, K + 1, (n,), generator=g).tolist()
    cats = [f"c{i % 2}" for i in range(n)] if group else ["c"] * n
    table = pd.DataFrame({"instance": [f"i{i}" for i in range(n)], "category": cats})
    return RetrievalView(
        "nodes", nodes(counts(), seed), nodes(counts(), seed + 1), torch.arange(n), table, table.copy(), group
    )


def on_nodes(variant="proposed", **kw) -> H.HierarchySBIR:
    """A small head of a variant that reads ready-made nodes of C channels."""
    return build_method("hierarchy", variant=variant, channels=C, max_nodes=K, d=8, d_h=4, **kw)


# ---------------------------------------------------------------------- boxes


def test_clip_resize_and_flip_boxes():
    b = H.clip_boxes(np.array([[-10.0, -5, 50, 40], [5, 5, 5, 5], [40, 40, 60, 60], [20, 9, 10, 3]]), SIZE)
    assert b.dtype == np.float32 and b.shape == (4, 4)
    assert (b >= 0).all() and (b <= SIZE).all()
    assert ((b[:, 2] - b[:, 0]) >= 1 - 1e-6).all() and ((b[:, 3] - b[:, 1]) >= 1 - 1e-6).all()
    np.testing.assert_allclose(b[0], [0, 0, SIZE, SIZE])
    np.testing.assert_allclose(b[1], [4.5, 4.5, 5.5, 5.5])  # a zero-area box: a small square round its point
    np.testing.assert_allclose(b[3], [10, 3, 20, 9])  # corners given in the wrong order are sorted
    np.testing.assert_allclose(H.resize_boxes([[4.0, 8, 12, 16]], 32, 64), [[8, 16, 24, 32]])
    box = np.array([[2.0, 3, 10, 20]])
    np.testing.assert_allclose(H.flip_boxes(box, SIZE), [[22, 3, 30, 20]])
    np.testing.assert_allclose(H.flip_boxes(H.flip_boxes(box, SIZE), SIZE), box)
    t = torch.tensor([[[2.0, 3, 10, 20]]])  # torch, any leading shape
    assert torch.equal(H.flip_boxes(t, SIZE), torch.tensor([[[22.0, 3, 30, 20]]]))
    assert torch.equal(t, torch.tensor([[[2.0, 3, 10, 20]]]))  # not changed in place


def test_stroke_node_boxes_one_per_stroke_in_drawing_order_no_whole_sketch_node():
    parts = [
        np.array([[100.0, 110], [150, 130]]),
        np.array([[10.0, 20], [40, 60], [30, 80]]),
        np.array([[200, 5], [250, 9]]),
    ]
    sketch = S.join_strokes(parts)
    b = H.stroke_node_boxes(sketch, int(S.CANVAS), 16, pad=0.0)  # canvas pixels: no resize
    np.testing.assert_allclose(b, [[100, 110, 150, 130], [10, 20, 40, 80], [200, 5, 250, 9]])
    assert len(b) == S.n_strokes(sketch)  # no box of the whole sketch
    # at 32 pixels: the same boxes scaled, widened by the pad, clipped
    small = H.stroke_node_boxes(sketch, SIZE, 16, pad=1.0)
    np.testing.assert_allclose(small, H.clip_boxes(b * SIZE / S.CANVAS + [-1, -1, 1, 1], SIZE))
    # a zero-area stroke (one point) gives a small box around its point
    dot = H.stroke_node_boxes(np.array([[128.0, 128.0, 1.0]]), SIZE, 16, pad=0.0)
    np.testing.assert_allclose(dot, [[15.5, 15.5, 16.5, 16.5]])
    # more strokes than nodes: the first max_nodes - 1 strokes, then one box round all the rest
    many = S.join_strokes([np.array([[20.0 * i, 10 + i], [20.0 * i + 5, 20 + i]]) for i in range(1, 10)])
    capped = H.stroke_node_boxes(many, int(S.CANVAS), 4, pad=0.0)
    every = H.stroke_node_boxes(many, int(S.CANVAS), 16, pad=0.0)
    assert capped.shape == (4, 4) and every.shape == (9, 4)
    np.testing.assert_allclose(capped[:3], every[:3])
    np.testing.assert_allclose(capped[3], [*every[3:, :2].min(0), *every[3:, 2:].max(0)])


def _ink_outside(img: np.ndarray, box) -> float:
    """Ink (1 - value) of a (S, S) black-on-white image outside an x1, y1, x2, y2 box, each pixel
    weighted by the part of its cell outside the box (exact under nearest resizing and flips)."""
    ink = 1 - img
    x1, y1, x2, y2 = box
    i = np.arange(img.shape[0])
    ox = np.clip(np.minimum(i + 1, x2) - np.maximum(i, x1), 0, 1)
    oy = np.clip(np.minimum(i + 1, y2) - np.maximum(i, y1), 0, 1)
    return float((ink * (1 - oy[:, None] * ox[None, :])).sum())


@pytest.mark.parametrize("flip", [False, True])
def test_stroke_boxes_hold_their_ink_and_follow_resize_and_flip(flip):
    sketch = S.join_strokes([np.array([[30.0, 40], [90, 60], [120, 30]]), np.array([[150.0, 180], [220, 230]])])
    for part in S.split_strokes(sketch):
        one = S.join_strokes([part])
        img = S.rasterise(one, SIZE, 1.5)
        box = H.stroke_node_boxes(one, SIZE, 16, pad=1.0)[0]
        outside = _ink_outside(img, box)
        assert outside < 0.05 * (1 - img).sum()
        # resize the image 2x (nearest) and the box with it: the same pixels are covered
        big = np.kron(img, np.ones((2, 2)))
        bbox = H.resize_boxes(box, SIZE, 2 * SIZE)
        if flip:
            big, bbox = big[:, ::-1], H.flip_boxes(bbox, 2 * SIZE)
        assert _ink_outside(big, bbox) == pytest.approx(4 * outside, abs=1e-4)
        if flip:  # and the unflipped box no longer covers them (the public code's bug)
            assert _ink_outside(big, H.resize_boxes(box, SIZE, 2 * SIZE)) > 0.5 * (1 - big).sum()


def test_ink_pieces_are_the_nodes_of_a_sketch_without_strokes():
    ink = np.zeros((16, 16), np.float32)
    ink[2:4, 3:9] = 1  # a 2 x 6 bar: the largest piece
    ink[10, 12] = 1  # a dot
    ink[11, 13] = 1  # touches the dot diagonally: one 8-connected piece
    boxes = H.ink_node_boxes(ink, max_nodes=4)
    np.testing.assert_allclose(boxes, [[3, 2, 9, 4], [12, 10, 14, 12]])  # the largest piece first
    # every ink pixel lies in a box
    ys, xs = np.nonzero(ink)
    inside = (
        (xs[:, None] >= boxes[:, 0])
        & (xs[:, None] < boxes[:, 2])
        & (ys[:, None] >= boxes[:, 1])
        & (ys[:, None] < boxes[:, 3])
    )
    assert inside.any(1).all()
    # more pieces than nodes: the rest join the last box; no ink: the whole image
    many = np.zeros((16, 16), np.float32)
    many[::4, ::4] = 1
    b = H.ink_node_boxes(many, max_nodes=3)
    # 16 one-pixel pieces of equal area keep their raster order: the first two, then one box round the other 14
    np.testing.assert_allclose(b, [[0, 0, 1, 1], [4, 0, 5, 1], [0, 0, 13, 13]])
    np.testing.assert_allclose(H.ink_node_boxes(np.zeros((8, 8)), 3), [[0, 0, 8, 8]])


def test_sketch_node_boxes_from_strokes_or_else_from_ink():
    view = toy_view(3)
    from_strokes = H.sketch_node_boxes(view.queries, view.strokes, max_nodes=6)
    assert [len(b) for b in from_strokes] == [4, 4, 4]
    for b, s in zip(from_strokes, view.strokes):
        np.testing.assert_allclose(b, H.stroke_node_boxes(s, SIZE, 6))
    from_ink = H.sketch_node_boxes(view.queries, None, max_nodes=6)
    for b, im in zip(from_ink, view.queries):
        np.testing.assert_allclose(b, H.ink_node_boxes(im[0].numpy(), 6))


def test_selective_search_whole_photo_first_fewer_boxes_when_flat_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("SBIR_CACHE", str(tmp_path))
    monkeypatch.setattr(H, "_PROPOSALS", {})  # an empty memory cache, put back after
    flat = np.full((SIZE, SIZE, 3), 128, np.uint8)
    b = H.selective_search(flat, 16)
    assert 1 <= len(b) < 16 and np.allclose(b[0], [0, 0, SIZE, SIZE])
    assert np.allclose(H.selective_search(flat, 1), [[0, 0, SIZE, SIZE]])
    view = toy_view(3)
    first = H.photo_node_boxes(view.gallery, 16, use_cache=True)
    assert all(np.allclose(x[0], [0, 0, SIZE, SIZE]) and 1 < len(x) <= 16 for x in first)
    assert all(x.dtype == np.float32 and (x >= 0).all() and (x <= SIZE).all() for x in first)
    assert len(list((tmp_path / "proposals").glob("*.npz"))) == 3
    assert all(a is c for a, c in zip(first, H.photo_node_boxes(view.gallery, 16)))  # from memory
    H._PROPOSALS.clear()  # from disk now, the same boxes
    again = H.photo_node_boxes(view.gallery, 16)
    assert all(np.array_equal(a, c) for a, c in zip(first, again))
    single = H.photo_node_boxes(view.gallery, 16, use_cache=False, strategy="single")
    assert all(np.allclose(x[0], [0, 0, SIZE, SIZE]) for x in single)
    with pytest.raises(MethodError, match="strategy"):
        H.selective_search(flat, 4, strategy="nope")


def test_selective_search_gives_the_same_boxes_every_call():
    """OpenCV orders its proposals with C rand(): without seeding, the top k changed from call to call."""
    view = toy_view(6, seed=2)
    u8 = ((view.gallery.permute(0, 2, 3, 1) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
    first = [H.selective_search(img, 6) for img in u8]
    random.random()
    np.random.rand()
    libc = ctypes.CDLL(None)
    libc.srand(12345)  # the C generator somewhere else
    libc.rand()
    again = [H.selective_search(img, 6) for img in u8[::-1]][::-1]
    assert all(np.array_equal(a, b) for a, b in zip(first, again))


# ---------------------------------------------------------------------- node features


def test_roi_align_matches_the_slow_reference():
    g = torch.Generator().manual_seed(1)
    feats = torch.randn(3, 5, 8, 8, generator=g)
    xy = torch.rand(12, 2, generator=g) * 28
    wh = torch.rand(12, 2, generator=g) * 20 + 0.2
    boxes = torch.cat([xy, (xy + wh).clamp(max=32)], 1)
    boxes = torch.cat([boxes, torch.tensor([[0.0, 0, 32, 32], [31, 31, 32, 32], [0, 0, 1, 1]])])
    idx = torch.randint(0, 3, (len(boxes),), generator=g)
    for out, sr in ((7, 2), (3, 1), (2, 3)):
        fast = H.roi_align(feats, boxes, idx, 0.25, out, sr)
        slow = H.roi_align_reference(feats, boxes, idx, 0.25, out, sr)
        assert fast.shape == (len(boxes), 5, out, out)
        assert torch.allclose(fast.double(), slow, atol=1e-5)
    assert H.roi_align(feats, boxes[:0], idx[:0], 0.25, 3).shape == (0, 5, 3, 3)


def test_roi_align_is_differentiable_in_the_features():
    feats = torch.randn(1, 2, 4, 4, requires_grad=True)
    H.roi_align(feats, torch.tensor([[0.0, 0, 8, 8]]), torch.tensor([0]), 0.5).sum().backward()
    assert feats.grad is not None and feats.grad.abs().sum() > 0


def _cover_by_loops(box, size, grid) -> np.ndarray:
    """The fraction of each cell of a grid x grid map that a box covers, one cell at a time: (grid, grid)."""
    side = size / grid
    x1, y1, x2, y2 = box
    out = np.zeros((grid, grid))
    for r in range(grid):
        for c in range(grid):
            ox = max(0.0, min(x2, (c + 1) * side) - max(x1, c * side))
            oy = max(0.0, min(y2, (r + 1) * side) - max(y1, r * side))
            out[r, c] = ox * oy / side**2
    return out


def test_cell_cover_is_the_covered_fraction_of_each_cell():
    boxes = np.array([[0.0, 0, 32, 32], [0, 0, 8, 8], [4, 0, 12, 8], [3.5, 9, 30.25, 17], [10, 10, 11, 11]])
    cover = H.cell_cover(boxes, SIZE, 4)
    assert cover.shape == (5, 4, 4) and cover.dtype == torch.float32
    assert torch.equal(cover[0], torch.ones(4, 4))  # the whole image covers every cell fully
    assert cover[1, 0, 0] == 1 and cover[1].sum() == 1  # exactly one cell
    assert cover[2, 0, 0] == cover[2, 0, 1] == 0.5 and cover[2].sum() == 1  # half of two cells
    for b, c in zip(boxes, cover):
        np.testing.assert_allclose(c.numpy(), _cover_by_loops(b, SIZE, 4), atol=1e-6)
        # the covered area, in cells, is the box's area
        assert float(c.sum()) == pytest.approx((b[2] - b[0]) * (b[3] - b[1]) / (SIZE / 4) ** 2, rel=1e-5)


def test_map_nodes_roi_pool():
    g = torch.Generator().manual_seed(0)
    maps = torch.randn(3, 4, 8, 8, generator=g)
    boxes = [
        np.array([[0.0, 0, 32, 32], [2, 3, 20, 9], [10, 10, 30, 31]]),
        np.array([[5.0, 5, 6, 6]]),
        np.array([[0.0, 0, 16, 16], [16, 0, 32, 16], [0, 16, 16, 32], [16, 16, 32, 32], [1, 1, 2, 2]]),
    ]
    out = H.map_nodes(maps, boxes, SIZE, max_nodes=4, pool="roi", roi_size=3)
    assert out.shape == (3, 4, 4 + 1)
    assert out[..., -1].tolist() == [[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1]]  # the fifth box is cut off
    assert (out[out[..., -1] == 0] == 0).all()  # padding is zeros
    for i, b in enumerate(boxes):
        for j, box in enumerate(b[:4]):
            one = torch.from_numpy(box[None])
            ref = H.roi_align_reference(maps, one, torch.tensor([i]), 8 / SIZE, 3).amax(dim=(2, 3))
            assert torch.allclose(out[i, j, :-1].double(), ref[0], atol=1e-5)


def test_map_nodes_cells_pool_against_brute_force():
    g = torch.Generator().manual_seed(0)
    c, side = 3, 4
    maps = torch.randn(2, c, side, side, generator=g)
    boxes = [np.array([[0.0, 0, 32, 32], [3, 5, 20, 30], [8, 8, 16, 16]]), np.array([[17.5, 1, 31, 9.5]])]
    out = H.map_nodes(maps, boxes, SIZE, max_nodes=4, pool="cells")
    assert out.shape == (2, 4, c * side * side + 1)
    assert out[..., -1].tolist() == [[1, 1, 1, 0], [1, 0, 0, 0]] and (out[out[..., -1] == 0] == 0).all()
    # the whole image's node is the flattened map itself
    assert torch.allclose(out[0, 0, :-1], maps[0].flatten())

    def brute(i, box):  # each cell of each channel times the fraction of it the box covers, in (C, h, w) order
        cov = torch.from_numpy(_cover_by_loops(box, SIZE, side)).float()
        return (maps[i] * cov).flatten()

    for i, b in enumerate(boxes):
        for j, box in enumerate(b):
            assert torch.allclose(out[i, j, :-1], brute(i, box), atol=1e-6)
    # with a projection (mean, basis): each cell of the map centred on the mean, weighted by its cover, projected
    proj = Projection(torch.randn(c * side * side, generator=g), torch.randn(c * side * side, 5, generator=g))
    low = H.map_nodes(maps, boxes, SIZE, max_nodes=4, pool="cells", projection=proj)
    assert low.shape == (2, 4, 5 + 1) and torch.equal(low[..., -1], out[..., -1])
    assert (low[low[..., -1] == 0] == 0).all()
    for i, b in enumerate(boxes):
        for j, box in enumerate(b):
            cov = torch.from_numpy(_cover_by_loops(box, SIZE, side)).float().repeat(c, 1, 1).flatten()
            ref = ((maps[i].flatten() - proj.mean) * cov) @ proj.basis
            assert torch.allclose(low[i, j, :-1], ref, rtol=1e-5, atol=1e-4)
    # the whole image's node is the projected feature of the image; the nodes of boxes that tile it sum to it
    assert torch.allclose(low[0, 0, :-1], proj(maps[0].flatten()), rtol=1e-5, atol=1e-4)
    quarters = [np.array([[0.0, 0, 13, 19], [13, 0, 32, 19], [0, 19, 13, 32], [13, 19, 32, 32]])]
    for p in (None, proj):
        parts = H.map_nodes(maps[:1], quarters, SIZE, max_nodes=4, pool="cells", projection=p)
        whole = H.map_nodes(maps[:1], [np.array([[0.0, 0, 32, 32]])], SIZE, max_nodes=1, pool="cells", projection=p)
        assert torch.allclose(parts[0, :, :-1].sum(0), whole[0, 0, :-1], rtol=1e-5, atol=1e-4)


def test_flipped_images_in_flipped_boxes_give_the_same_nodes():
    """With a backbone that is the identity, a flipped image's RoI nodes in flipped boxes are the image's own."""
    m = H.HierarchySBIR(3, backbone=nn.Identity(), max_nodes=6, roi_size=3).eval()
    view = toy_view(3)
    boxes = m.photo_boxes(view.gallery)
    flipped = m.photo_boxes(view.gallery, flip=torch.ones(3, dtype=torch.bool))
    assert all(np.allclose(f, H.flip_boxes(b, SIZE)) for b, f in zip(boxes, flipped))
    a = m._nodes(view.gallery, boxes)
    b = m._nodes(view.gallery.flip(-1), flipped)
    assert torch.allclose(a, b, atol=1e-5)
    # the same image in unflipped boxes (the public code's bug) gives other nodes
    assert not torch.allclose(a, m._nodes(view.gallery.flip(-1), boxes), atol=1e-3)


def test_training_flips_boxes_with_images():
    view = toy_view(4)
    m = build_method("hierarchy", variant="b_siamese", max_nodes=4)
    seen = []
    orig = m._nodes

    def spy(x, boxes):
        seen.append((x, boxes))
        return orig(x, boxes)

    m._nodes = spy
    m.training_loss(batch_of(view, [0, 1], [2, 3], flip=[True, False]))
    (sk, sb), (ph, pb) = seen
    plain = m.sketch_boxes(view.queries[:2], view.strokes[:2])
    assert torch.equal(sk[0], view.queries[0].flip(-1)) and torch.equal(sk[1], view.queries[1])
    assert np.allclose(sb[0], H.flip_boxes(plain[0], SIZE)) and np.allclose(sb[1], plain[1])
    raw = m.photo_boxes(view.gallery[[0, 1, 2, 3]])
    assert torch.equal(ph[0], view.gallery[0].flip(-1)) and torch.equal(ph[1], view.gallery[1])
    assert np.allclose(pb[0], H.flip_boxes(raw[0], SIZE)) and np.allclose(pb[2], H.flip_boxes(raw[2], SIZE))
    assert np.allclose(pb[1], raw[1]) and np.allclose(pb[3], raw[3])
    # with an identity backbone a flip changes nothing at all, so the loss is the same either way
    ident = H.HierarchySBIR(3, backbone=nn.Identity(), max_nodes=6, coattn="none", fusion="maxpool", roi_size=3)
    losses = [ident.training_loss(batch_of(view, [0, 1], [2, 3], flip=[f, f])) for f in (False, True)]
    assert torch.allclose(*losses, atol=1e-5)


# ---------------------------------------------------------------------- the head


@pytest.mark.parametrize("variant", sorted(H.VARIANTS))
def test_shapes_of_nodes_embeddings_and_distances(variant):
    view = toy_view(3)
    m = build_method("hierarchy", variant=variant, max_nodes=6).eval()
    one_stroke = S.join_strokes([np.array([[20.0, 20], [200, 200]])])
    q = m.embed_query(view.queries[:2], strokes=[view.strokes[0], one_stroke])
    g = m.embed_gallery(view.gallery)
    assert q.shape == (2, 6, m.channels + 1) and g.shape == (3, 6, m.channels + 1)
    assert q[0, :, -1].sum() == 4 and q[1, :, -1].sum() == 1  # one node per stroke
    assert (g[:, 0, -1] == 1).all()  # the whole photo, at least
    assert m.embed_query(q) is q and m.embed_gallery(g) is g  # ready-made nodes pass through
    s, p = m.head(q[[0, 1, 0]], g)
    assert s.shape == p.shape == (3, m.d)
    assert torch.allclose(s.norm(dim=1), torch.ones(3), atol=1e-5)  # every row L2-normalised
    d = m.pair_distance(q[[0, 1, 0]], g)
    assert d.shape == (3,) and (d >= 0).all()
    assert torch.allclose(d, (s - p).pow(2).sum(1))


def test_ready_made_nodes_pass_through_and_a_head_reads_only_its_channels():
    m = on_nodes().eval()
    q, g = nodes([3, 1, 5]), nodes([2, 5, 4], seed=1)
    assert m.embed_query(q) is q and m.embed_gallery(g) is g
    d = m.pair_distance(q, g)
    assert d.shape == (3,) and (d >= 0).all() and (d <= 4 + 1e-5).all()  # unit vectors
    with pytest.raises(MethodError, match="channels"):
        wrong = nodes([2], channels=C + 1)
        m.pair_distance(wrong, wrong)
    with pytest.raises(MethodError, match="no backbone"):
        m.embed_query(toy_view(1).queries)
    # without normalise the hierarchy's last node keeps its scale
    raw = on_nodes(normalise=False).eval()
    raw.load_state_dict(m.state_dict())
    s, _ = raw.head(q, g)
    assert torch.allclose(F.normalize(s, dim=1), m.head(q, g)[0], atol=1e-5)
    assert not torch.allclose(s.norm(dim=1), torch.ones(3), atol=1e-3)


def test_the_embedding_depends_on_the_pair_only_with_co_attention():
    q, g = nodes([3]).expand(3, -1, -1), nodes([4, 2, 5], seed=1)
    torch.manual_seed(0)
    s, _ = on_nodes("proposed").eval().head(q, g)
    assert not torch.allclose(s[0], s[1])  # the sketch's vector changes with the photo it is compared with
    s, _ = on_nodes("b_graph_hierarchy").eval().head(q, g)
    assert torch.allclose(s[0], s[1]) and torch.allclose(s[0], s[2])  # no cross-modal term: it does not


def _dead(m) -> list[str]:
    """Trainable parameters with no gradient; of a branch-stacked (Linear2) weight, each branch's slice."""
    out = []
    for name, p in m.named_parameters():
        if not p.requires_grad:
            continue
        if p.grad is None:
            out.append(name)
        elif name.startswith(("coattn", "fusion")):
            out += [f"{name}[{i}]" for i in range(2) if p.grad[i].abs().sum() == 0]
        elif p.grad.abs().sum() == 0:
            out.append(name)
    return out


@pytest.mark.parametrize("variant", sorted(H.VARIANTS))
def test_gradients_reach_every_parameter(variant):
    torch.manual_seed(0)
    m = on_nodes(variant, margin=10.0)  # a margin that keeps every hinge active
    batch = {"sketch": nodes([3, 1, 5, 2]), "photo": nodes([4, 5, 1, 2], 1), "neg": nodes([2, 3, 5, 4], 2)}
    loss = m.training_loss(batch)
    assert loss > 0
    loss.backward()
    assert _dead(m) == []
    # and end to end from images, through RoI align into the backbone
    view = toy_view(6)
    torch.manual_seed(0)
    m = build_method("hierarchy", variant=variant, max_nodes=6, margin=10.0)
    m.training_loss(batch_of(view, [0, 1, 2], [3, 4, 5], flip=[True, False, False])).backward()
    assert _dead(m) == []


def test_variants_have_only_their_parts():
    names = lambda v, **kw: {n.split(".")[0] for n, _ in build_method("hierarchy", variant=v, **kw).named_parameters()}
    expected = {
        "b_siamese": {"node"},
        "b_gated_siamese": {"node", "coattn"},
        "b_localised_coattn": {"node", "coattn"},
        "b_graph_hierarchy": {"node", "fusion"},
        "proposed": {"node", "coattn", "fusion"},
        "code_head": {"node", "coattn"},
    }
    assert set(expected) == set(H.VARIANTS)
    for v, parts in expected.items():
        assert names(v, channels=C) == parts
        assert names(v) == parts | {"backbone"}
    proposed, code = on_nodes("proposed"), on_nodes("proposed", coattn="code", fusion_variant="code")
    assert proposed.coattn.gate == "slide" and proposed.fusion.w_c is not None
    assert not hasattr(code.coattn, "w_g") and code.fusion.w_c is None
    gated = on_nodes("b_gated_siamese").coattn
    assert hasattr(gated, "w_g") and not hasattr(gated, "w_q")  # self-gating, no cross-modal attention
    assert on_nodes("code_head").coattn.gate == "code" and on_nodes("code_head").fusion is None


@pytest.mark.parametrize(
    "options",
    [
        {"variant": "nope"},
        {"coattn": "nope"},
        {"fusion": "nope"},
        {"fusion_variant": "nope"},
        {"pool": "nope"},
        {"proposals": "nope"},
        {"max_nodes": 0},
    ],
)
def test_bad_options_raise_method_errors(options):
    with pytest.raises(MethodError):
        build_method("hierarchy", **{"channels": C, **options})


def test_bad_node_maps_raise_method_errors():
    with pytest.raises(MethodError, match="pool"):
        H.map_nodes(torch.zeros(1, 2, 4, 4), [np.array([[0.0, 0, 8, 8]])], 8, 2, pool="nope")
    with pytest.raises(MethodError, match="square"):
        H.map_nodes(torch.zeros(1, 2, 4, 2), [np.array([[0.0, 0, 8, 8]])], 8, 2, pool="cells")


def test_the_same_spec_gives_the_same_fingerprint_and_weights():
    a, b = (MethodSpec("hierarchy", {"variant": "proposed", "anneal_steps": 10}) for _ in range(2))
    assert fingerprint({"method": a.as_dict()}) == fingerprint({"method": b.as_dict()})
    other = MethodSpec("hierarchy", {"variant": "proposed", "anneal_steps": 20})
    assert fingerprint({"method": a.as_dict()}) != fingerprint({"method": other.as_dict()})
    torch.manual_seed(3)
    sa = a.build().state_dict()
    torch.manual_seed(3)
    sb = b.build().state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert "steps_done" in sa  # the annealing's clock is part of a stored state


# ---------------------------------------------------------------------- Gumbel, annealing, fusion


def test_st_gumbel_hard_forward_soft_backward_argmax_at_test():
    logits = torch.tensor([[0.5, 2.0, 1.0, 9.0], [0.1, 0.2, 0.3, 0.4], [1.0, 2.0, 3.0, 4.0]])
    mask = torch.tensor([[True, True, True, False], [True, False, True, True], [False] * 4])
    test = H.st_gumbel(logits, mask, training=False)
    # the argmax among the allowed entries; a row with nothing to choose is zeros
    assert test.tolist() == [[0, 1, 0, 0], [0, 0, 0, 1], [0, 0, 0, 0]]
    # training without noise: the same one-hot forward, the softmax's gradient backward
    x = logits.clone().requires_grad_()
    w = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
    y = H.st_gumbel(x, mask, training=True, noise=0.0)
    assert torch.allclose(y, test)
    (y * w).sum().backward()
    x2 = logits.clone().requires_grad_()
    soft = torch.softmax(x2.masked_fill(~mask, float("-inf"))[:2], -1)
    (soft * w[:2]).sum().backward()
    assert torch.allclose(x.grad[:2], x2.grad[:2], atol=1e-6)
    assert torch.equal(x.grad[2], torch.zeros(4))  # not NaN
    # training with noise: one-hot draws among the allowed entries, not always the argmax
    g = torch.Generator().manual_seed(0)
    flat = torch.zeros(1, 4)
    draws = torch.stack([H.st_gumbel(flat, mask[1:2], training=True, generator=g)[0] for _ in range(200)])
    assert torch.allclose(draws.sum(1), torch.ones(200)) and ((draws - draws.round()).abs() < 1e-6).all()
    counts = draws.round().sum(0)
    assert counts[1] == 0 and (counts[[0, 2, 3]] > 30).all()  # about a third each
    assert H.st_gumbel(flat, mask[2:3], training=True, generator=g).abs().sum() == 0


def _steps(m, n):
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    batch = {"sketch": nodes([3, 2]), "photo": nodes([4, 4], 1), "neg": nodes([2, 5], 2)}
    out = []
    for _ in range(n):
        out.append(m.noise)
        m.train_step(batch, [opt])
    return out


def test_gumbel_noise_anneals_to_the_tests_argmax():
    m = on_nodes(anneal_steps=4)
    assert _steps(m, 6) == [1.0, 0.75, 0.5, 0.25, 0.0, 0.0] and int(m.steps_done) == 6
    assert _steps(on_nodes(), 3) == [1.0, 1.0, 1.0]  # None: the paper's tau = 1 noise throughout
    q, g = nodes([5, 4, 3, 5], 3), nodes([5, 2, 5, 4], 4)
    torch.manual_seed(0)
    m = on_nodes(anneal_steps=2)
    m.generator = torch.Generator().manual_seed(0)
    test = m.eval().pair_distance(q, g)
    assert torch.equal(test, m.pair_distance(q, g))  # no randomness at test
    m.train()
    draws = {tuple(m.pair_distance(q, g).detach().round(decimals=5).tolist()) for _ in range(8)}
    assert len(draws) > 1  # Gumbel noise picks other merges in training
    m.steps_done.fill_(2)  # annealed: training merges the pairs the test merges
    assert m.noise == 0 and torch.allclose(m.pair_distance(q, g), test, atol=1e-6)


@pytest.mark.parametrize("variant", H.FUSION_VARIANTS)
def test_fusion_starts_as_the_mean_and_merges_one_pair_per_branch(variant):
    f = H.Fusion(4, 3, variant)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 5, 4, generator=g)  # non-negative: the slide variant's ReLU keeps the mean
    if variant == "code":
        x = x - 0.5  # no ReLU: the mean of any nodes
    mask = torch.tensor(
        [[[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0]], [[1, 0, 1, 1, 0], [0] * 5, [1, 1, 1, 1, 1]]]
    )
    mask = mask.bool()
    new, new_mask = f(x, mask)
    assert new.shape == x.shape and new_mask.shape == mask.shape
    for br in range(2):
        for p in range(3):
            n = int(mask[br, p].sum())
            assert int(new_mask[br, p].sum()) == max(n - 1, min(n, 1))  # one node fewer where two or more
            assert not (new_mask[br, p] & ~mask[br, p]).any()  # no slot comes back
            if n < 2:
                assert torch.equal(new[br, p], x[br, p])
                continue
            (b,) = torch.nonzero(mask[br, p] & ~new_mask[br, p])[:, 0].tolist()
            changed = [k for k in range(5) if not torch.allclose(new[br, p, k], x[br, p, k])]
            (a,) = [k for k in changed if k != b]
            assert a < b and mask[br, p, a]
            assert torch.allclose(new[br, p, a], (x[br, p, a] + x[br, p, b]) / 2, atol=1e-6)
            # the pair of the highest score among the real nodes
            scores = f.scores(x)[br, p]
            real = torch.nonzero(mask[br, p])[:, 0].tolist()
            best = max(((i, j) for i in real for j in real if i < j), key=lambda ij: float(scores[ij].detach()))
            assert (a, b) == best


def _levels(m, q, g) -> list:
    """The real nodes per branch and pair before each fusion level of ``m.head(q, g)``."""
    seen = []
    hook = m.fusion.register_forward_hook(lambda mod, args, out: seen.append(args[1].sum(-1).clone()))
    try:
        m.head(q, g)
    finally:
        hook.remove()
    return seen


@pytest.mark.parametrize("variant", ["proposed", "b_graph_hierarchy"])
def test_the_hierarchy_runs_to_one_node_per_branch(variant):
    m = on_nodes(variant).eval()
    q, g = nodes([3, 1, 5, 2]), nodes([2, 5, 1, 2], seed=1)
    seen = _levels(m, q, g)
    assert len(seen) == 5 - 1  # as many levels as the largest node set needs
    start = torch.stack([q[..., -1].sum(-1), g[..., -1].sum(-1)])
    for level, count in enumerate(seen):
        assert torch.equal(count, (start - level).clamp(min=1))
    # in training, too
    assert len(_levels(m.train(), q, g)) == 4


def test_level_norm_keeps_the_nodes_of_every_level_at_unit_norm():
    """The co-attention adds a residual once per level with the same weights: grown weights (Z x 100 here; a run
    on the style world with 8 nodes grew |Z| 19x in 300 steps, still growing, as it collapsed) multiply the
    nodes' norm level after level without ``level_norm``; with it every level's real nodes enter the fusion at
    norm 1 (and the distances stay finite)."""
    k = 12
    q, g = nodes([k, 9, 12, 5], k=k), nodes([7, k, 3, 12], seed=1, k=k)
    norms = {}
    for on in (False, True):
        torch.manual_seed(0)
        m = build_method("hierarchy", variant="proposed", channels=C, max_nodes=k, d=8, d_h=4, level_norm=on).eval()
        with torch.no_grad():
            m.coattn.z.weight.mul_(100)
            m.coattn.z.bias.mul_(100)
        seen = []
        hook = m.fusion.register_forward_hook(
            lambda mod, args, out, seen=seen: seen.append(args[0].norm(dim=-1)[args[1]].mean().item())
        )
        try:
            d = m.pair_distance(q, g)
        finally:
            hook.remove()
        assert len(seen) == k - 1 and torch.isfinite(d).all()
        norms[on] = seen
    assert norms[False][-1] > 10 * norms[False][0]  # 1.8 -> 30.6 over the 11 levels here
    assert norms[True] == pytest.approx([1.0] * (k - 1), abs=1e-5)


@pytest.mark.parametrize("variant", sorted(H.VARIANTS))
def test_padding_never_changes_a_distance(variant):
    """Nodes in padded slots (mask 0), whatever their values, and extra padded slots change nothing."""
    torch.manual_seed(0)
    small = build_method("hierarchy", variant=variant, channels=C, max_nodes=K, d=8, d_h=4).eval()
    q, g = nodes([3, 1, 5, 2]), nodes([2, 5, 1, 4], seed=1)
    d = small.pair_distance(q, g)
    wide = lambda x: torch.cat([x, torch.zeros(len(x), 3, C + 1)], 1)
    garbage = lambda x: torch.where(
        x[..., -1:] > 0, x, torch.cat([100 * torch.randn_like(x[..., :-1]), x[..., -1:]], -1)
    )
    assert torch.allclose(small.pair_distance(wide(q), wide(g)), d, atol=1e-5)
    assert torch.allclose(small.pair_distance(garbage(q), garbage(g)), d, atol=1e-5)
    assert torch.allclose(small.pair_distance(garbage(wide(q)), wide(g)), d, atol=1e-5)
    # the order of the pairs in a batch does not matter either
    assert torch.allclose(small.pair_distance(q.flip(0), g.flip(0)), d.flip(0), atol=1e-6)


# ---------------------------------------------------------------------- merge_trace


def test_merge_trace_of_the_full_hierarchy():
    m = on_nodes("proposed").train()
    q, g = nodes([4]), nodes([5], seed=1)
    tr = H.merge_trace(m, q[0], g[0])
    assert m.training  # put back as it was
    assert tr["attention"].shape == (4, 5) and np.allclose(tr["attention"].sum(1), 1, atol=1e-5)
    # the attention of the head's first level, which reads the normalised nodes
    x, mask = m.project(torch.stack([q, g]))
    first = m.coattn.attention(F.normalize(x, dim=-1), mask)[0, 0, :4, :5].detach().numpy()
    assert np.allclose(tr["attention"], first, atol=1e-6)
    assert len(tr["sketch_merges"]) == 4 - 1 and len(tr["photo_merges"]) == 5 - 1
    for key, n in (("sketch_merges", 4), ("photo_merges", 5)):
        alive = set(range(n))
        for a, b in tr[key]:  # slot a absorbs slot b, both alive
            assert a < b and {a, b} <= alive
            alive.discard(b)
        assert len(alive) == 1
    # they are the merges the head makes at test: the slots that leave, level by level
    m.eval()
    gone = []
    hook = m.fusion.register_forward_hook(
        lambda mod, args, out: gone.append([(args[1][i, 0] & ~out[1][i, 0]).nonzero()[:, 0].tolist() for i in range(2)])
    )
    m.head(q, g)
    hook.remove()
    assert len(gone) == 4 and gone[3][0] == []  # the sketch's one node waits for the photo's last merge
    assert [s[0] for s in gone[:3]] == [[b] for _, b in tr["sketch_merges"]]
    assert [s[1] for s in gone] == [[b] for _, b in tr["photo_merges"]]


def test_merge_trace_of_other_rows():
    q, g = nodes([3]), nodes([2], seed=1)
    tr = H.merge_trace(on_nodes("b_siamese"), q[0], g[0])
    assert tr == {"attention": None, "sketch_merges": [], "photo_merges": []}
    tr = H.merge_trace(on_nodes("b_graph_hierarchy"), q[0], g[0])
    assert tr["attention"] is None and len(tr["sketch_merges"]) == 2 and len(tr["photo_merges"]) == 1
    tr = H.merge_trace(on_nodes("code_head"), q[0], g[0])
    assert tr["attention"].shape == (3, 2) and tr["sketch_merges"] == []


def test_merge_trace_of_a_sketch_and_a_photo_image():
    """The paper scale's views hold images (the trunk is in the model): the trace takes their nodes first,
    the same as the trace of those nodes."""
    view = toy_view(3)
    m = build_method("hierarchy", variant="proposed", max_nodes=6).eval()
    tr = H.merge_trace(m, view.queries[0], view.gallery[0], view.strokes[0])
    q = m.embed_query(view.queries[:1], strokes=[view.strokes[0]])[0]
    g = m.embed_gallery(view.gallery[:1])[0]
    same = H.merge_trace(m, q, g)
    assert tr["sketch_merges"] == same["sketch_merges"] and tr["photo_merges"] == same["photo_merges"]
    assert len(tr["sketch_merges"]) == int(q[:, -1].sum()) - 1 and np.allclose(tr["attention"], same["attention"])


# ---------------------------------------------------------------------- evaluation


def test_evaluate_on_a_view_of_ready_made_nodes():
    view = node_view(6)
    m = on_nodes().eval()
    ev = evaluate(m, view, ks=(1, 3))
    assert ev.pair_evaluations == 36 and 0 <= ev.metrics["acc_at_1"] <= ev.metrics["acc_at_3"] <= 1
    # the ranks are those of the head's distances over every pair
    pairs = torch.cartesian_prod(torch.arange(6), torch.arange(6))
    dist = m.pair_distance(view.queries[pairs[:, 0]], view.gallery[pairs[:, 1]]).view(6, 6)
    ranks = (dist <= dist.diagonal()[:, None]).sum(1)
    assert ev.per_query["rank"].tolist() == ranks.tolist()
    # a query is scored only against the photos of its group
    grouped = evaluate(m, node_view(6, group="category"), ks=(1,))
    assert grouped.pair_evaluations == 2 * 3 * 3 and (grouped.per_query["rank"] <= 3).all()


def test_evaluate_on_images_equals_evaluate_on_their_nodes():
    view = toy_view(6)
    m = build_method("hierarchy", variant="proposed", max_nodes=6).eval()
    with torch.no_grad():
        q, g = m.embed_query(view.queries, strokes=view.strokes), m.embed_gallery(view.gallery)
    a, b = evaluate(m, view, ks=(1, 3)), evaluate(m, dataclasses.replace(view, queries=q, gallery=g), ks=(1, 3))
    assert np.array_equal(a.per_query["rank"], b.per_query["rank"]) and a.pair_evaluations == b.pair_evaluations
    # a gallery of one photo
    one = RetrievalView(
        "one",
        view.queries[:2],
        view.gallery[:1],
        torch.zeros(2, dtype=torch.long),
        view.table.iloc[:2],
        view.table.iloc[:1],
    )
    ev = evaluate(m, one, ks=(1,))
    assert ev.metrics["acc_at_1"] == 1.0 and ev.pair_evaluations == 2
    # a view without strokes: the pieces of ink are the nodes of its sketches
    without = evaluate(m, dataclasses.replace(view, strokes=None), ks=(1,))
    assert without.pair_evaluations == 36


class _Vectors(Method):
    """A base method whose queries and gallery already are its embeddings (a view of plain vectors)."""

    def embed_query(self, x, style=None):
        return x

    def embed_gallery(self, x):
        return x


def test_two_stage_retrieval_from_another_view_of_the_same_items():
    view = node_view(8)
    m = on_nodes().eval()
    g = torch.Generator().manual_seed(5)
    base_view = dataclasses.replace(
        view, queries=torch.randn(8, 3, generator=g), gallery=torch.randn(8, 3, generator=g)
    )
    base = _Vectors()
    base_rank = evaluate(base, base_view, ks=(1,)).per_query["rank"]
    full = evaluate(m, view, ks=(1,)).per_query["rank"]
    top = 3
    two = evaluate(m, view, ks=(1,), shortlist=(base, top, base_view))
    assert two.pair_evaluations == 8 * top
    assert 0 < (base_rank > top).sum() < 8  # some true photos are shortlisted, some not
    pairs = torch.cartesian_prod(torch.arange(8), torch.arange(8))
    dist = m.pair_distance(view.queries[pairs[:, 0]], view.gallery[pairs[:, 1]]).view(8, 8)
    order = np.argsort(torch.cdist(base_view.queries, base_view.gallery).numpy(), axis=1, kind="stable")
    for i, r in enumerate(two.per_query["rank"]):
        if base_rank[i] > top:  # outside the shortlist: the base method's rank, behind the shortlist
            assert r == base_rank[i]
        else:  # its place among the shortlisted photos by the head's distance
            short = torch.from_numpy(order[i, :top])
            assert r == int((dist[i, short] <= dist[i, i]).sum()) and r <= top
    # a shortlist of the whole gallery is the exhaustive ranking
    assert np.array_equal(evaluate(m, view, ks=(1,), shortlist=(base, 8, base_view)).per_query["rank"], full)
    fewer = dataclasses.replace(base_view, queries=base_view.queries[:7], target=view.target[:7], table=view.table[:7])
    with pytest.raises(ValueError, match="shortlist view"):
        evaluate(m, view, shortlist=(base, top, fewer))
    with pytest.raises(ValueError, match="M must be"):
        evaluate(m, view, shortlist=(base, 0, base_view))


# ---------------------------------------------------------------------- overfitting six toy pairs


def _fit_toy(variant: str, steps: int, lr: float, seed: int = 0, **options) -> tuple[float, float, H.HierarchySBIR]:
    """Train a fresh model end to end (small CNN, RoI nodes, selective search) on six toy pairs with
    ``train_step`` (which advances the Gumbel annealing); Acc@1 on the same pairs before and after."""
    n = 6
    view = toy_view(n, seed=2)
    torch.manual_seed(seed)
    m = build_method("hierarchy", variant=variant, max_nodes=6, **options)
    m.generator = torch.Generator().manual_seed(seed)
    before = evaluate(m, view, ks=(1,)).metrics["acc_at_1"]
    opt = torch.optim.Adam(m.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    m.train()
    for _ in range(steps):
        idx = torch.randperm(n, generator=g)
        neg = (idx + 1 + torch.randint(0, n - 1, (n,), generator=g)) % n
        m.train_step(batch_of(view, idx, neg, flip=torch.rand(n, generator=g) < 0.5), [opt])
    return before, evaluate(m, view, ks=(1,)).metrics["acc_at_1"], m


@pytest.mark.parametrize("variant", ["b_siamese", "b_gated_siamese", "b_localised_coattn", "code_head"])
def test_rows_without_fusion_overfit_a_tiny_problem(variant):
    before, after, _ = _fit_toy(variant, steps=150, lr=3e-3)  # with random flips
    assert after == 1.0 and after > before


@pytest.mark.parametrize("variant", ["proposed", "b_graph_hierarchy"])
def test_the_hierarchy_overfits_a_tiny_problem(variant):
    """The full hierarchy and node fusion alone fit six toy pairs end to end (until now a strict xfail).

    Settings and why, measured with ``_fit_toy`` (Acc@1 after training, model seeds 0-9):

    * lr 1e-3: at 3e-3 the hierarchy's loss falls, then jumps back to the margin (4/10 and 6/10 seeds fit);
    * anneal_steps=100: the last 200 of the 300 steps train on the argmax trees the test ranks with;
    * no flips: the test asks whether the model can fit the pairs, and a flip doubles them with mirrored
      positions. With flips and tau = 1 noise throughout (the defaults) 7/10 and 9/10 seeds fit; with either
      one changed, 10/10.

    As here: 10/10 seeds for both variants (16/16 over seeds 0-15, and 3 seeds on each of 4 other toy
    views); the old settings (lr 3e-3, flips, tau = 1, 150 steps): 0/10 and 2/10.
    """
    before, after, m = _fit_toy(variant, steps=300, lr=1e-3, flip=False, anneal_steps=100)
    assert m.noise == 0.0 and int(m.steps_done) == 300
    assert after == 1.0 and after > before


# ---------------------------------------------------------------------- redrawn queries


def test_redraw_replaces_the_queries_only():
    view = toy_view(4)
    first = [S.truncate(s, 0.25) for s in view.strokes]
    v = redraw(view, first)
    assert v.queries.shape == view.queries.shape and torch.equal(v.gallery, view.gallery)
    assert torch.equal(v.target, view.target) and v.table.equals(view.table)
    assert len(v.strokes) == 4 and all(np.array_equal(a, b) for a, b in zip(v.strokes, first))
    assert all(S.n_strokes(s) == 1 for s in v.strokes)
    assert v.queries.sum() < view.queries.sum()
    assert all(S.n_strokes(s) == 4 for s in view.strokes)  # the view itself is unchanged
    assert torch.allclose(redraw(view, view.strokes).queries, view.queries)
    with pytest.raises(DataError):
        redraw(view, first[:2])
    # the hierarchy reads one node per stroke of the redrawn sketches
    m = build_method("hierarchy", variant="proposed", max_nodes=6).eval()
    q = m.embed_query(v.queries, strokes=v.strokes)
    assert q[..., -1].sum(1).tolist() == [1, 1, 1, 1]
    assert evaluate(m, v, ks=(1, 3)).pair_evaluations == 16


def test_no_annealing_steps_means_argmax_from_the_first_step():
    m = build_method("hierarchy", variant="proposed", channels=4, anneal_steps=0)
    assert m.noise == 0.0
