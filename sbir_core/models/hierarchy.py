"""Cross-modal hierarchical FG-SBIR (Sain et al., BMVC 2020; METHODS.md §B).

A sketch is a set of nodes (one box per stroke, no whole-sketch box), a photo a set of nodes
(selective-search proposals, the whole photo first). Per (sketch, photo) pair, levels of

* **cross-modal co-attention**: A = (S W_S)(P W_P)^T, P~ = softmax(A / sqrt(d_h)) P,
  G = sigma([S, P~] W_G) (slide; ``coattn="code"``: G = sigma(S * P~)), S^ = ReLU(Z(G * (S + P~))) + S,
  and the mirror for the photo;
* **hierarchical node fusion**: C = (X W_C)(X W_C)^T over the strict upper triangle of node pairs,
  one pair picked by straight-through Gumbel-softmax in training and argmax at test, merged by
  ReLU(W_F [x_a; x_b]) (slide; ``fusion_variant="code"``: C = X X^T, no ReLU),

run until each branch holds one node: the two vectors are the pair's embeddings, and the loss is
mean max(0, 0.2 + |S+ - P+|^2 - |S- - P-|^2). The embedding depends on the pair, so the method is
``pairwise``: ``embed_query`` / ``embed_gallery`` return per-item padded nodes (N, K, channels + 1)
whose last channel is the node mask, and ``pair_distance`` runs the head on aligned pairs.

Nodes come either from images (a backbone's feature map, RoI-aligned per box and max-pooled: the
paper's, trained end to end) or ready-made: a view whose queries and gallery already are node tensors
(the ci scale's frozen trunk, ``map_nodes``), which the one trainer and evaluator take as they are.

Variants (the paper's Table 1 rows, ``VARIANTS``): ``coattn`` in none | gated (self-gating, no
cross-modal term) | slide | code; ``fusion`` in hierarchy | maxpool (max over nodes after one
co-attention step, L2-normalised: the public code's HEAD since commit e42c1a5).

Fixed from the public code (METHODS.md §B pitfalls): the hierarchy runs to one node; boxes follow
every resize and flip of their image; each query is scored only against the photos it is ranked
among (or a shortlist, two-stage retrieval). Chosen here, and why (``tests/test_hierarchy.py``, which
measured each choice on six toy pairs the full model must memorise, ten seeds): each fusion starts as the
mean of its two nodes and each co-attention close to the identity (with the default initialisation every
level shrank the node and added noise, and the last node could collapse to zero, where the loss sits at the
margin with no gradient); the Gumbel noise of training can be annealed to the test's argmax over
``anneal_steps``, so that the last steps train the trees the test uses. The old failure to fit (0 of 10
seeds) came mostly from the learning rate: at 3e-3 the hierarchy's loss falls, then jumps back to the
margin; at 1e-3 it fits 10 of 10 seeds, with τ = 1 throughout as well; with flipped images, annealing
takes it from 7 to 10 of 10. And the full hierarchy's nodes are L2-normalised as they enter it and after each
level's co-attention (``level_norm``): the co-attention's residual, applied once per level with the same weights,
otherwise multiplies the nodes' norm level after level as Z grows. On the ci scale's style world with 8 nodes the
norm grew from 34 to 571 over the 7 levels within 300 steps, every sketch's embedding turned to one direction
(mean cosine 0.96), the loss rose back to the margin and Acc@1 fell to chance (2.0%; with ``level_norm``
13.3%, one seed each); the paper scale has 16 nodes. With 4 nodes (the ci scale) it changes little (test Acc@1
of three seeds 13.6% against 14.0% without).
"""

from __future__ import annotations

import math
import threading

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sbir_core import strokes as S
from sbir_core.models.base import Method, MethodError

COATTN = ("none", "gated", "slide", "code")
FUSION = ("hierarchy", "maxpool")
FUSION_VARIANTS = ("slide", "code")
POOLS = ("roi", "cells")
PROPOSALS = ("fast", "single")

# the paper's Table 1 rows (and the code's HEAD) as option sets
VARIANTS = {
    "b_siamese": {"coattn": "none", "fusion": "maxpool"},
    "b_gated_siamese": {"coattn": "gated", "fusion": "maxpool"},
    "b_localised_coattn": {"coattn": "slide", "fusion": "maxpool"},
    "b_graph_hierarchy": {"coattn": "none", "fusion": "hierarchy"},
    "proposed": {"coattn": "slide", "fusion": "hierarchy", "fusion_variant": "slide"},
    "code_head": {"coattn": "code", "fusion": "maxpool"},
}


# ---------------------------------------------------------------------- boxes


def clip_boxes(boxes: np.ndarray, size: float, min_side: float = 1.0) -> np.ndarray:
    """Boxes (K, 4) x1, y1, x2, y2 clipped to [0, size] and widened to at least ``min_side`` (a
    zero-area stroke box becomes a small square around its point): (K, 4) float32."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4).copy()
    b[:, [0, 2]] = np.sort(b[:, [0, 2]], axis=1)
    b[:, [1, 3]] = np.sort(b[:, [1, 3]], axis=1)
    for lo, hi in ((0, 2), (1, 3)):
        short = b[:, hi] - b[:, lo] < min_side
        mid = (b[:, hi] + b[:, lo]) / 2
        b[short, lo], b[short, hi] = mid[short] - min_side / 2, mid[short] + min_side / 2
        b[:, lo] = np.clip(b[:, lo], 0, size - min_side)
        b[:, hi] = np.clip(b[:, hi], b[:, lo] + min_side, size)
    return b.astype(np.float32)


def resize_boxes(boxes: np.ndarray, old: float, new: float) -> np.ndarray:
    """Boxes in an ``old``-sided square image to the same content in a ``new``-sided one."""
    return np.asarray(boxes, dtype=np.float64) * (new / old)


def flip_boxes(boxes, size: float):
    """Boxes of an image of width ``size`` after a horizontal flip (numpy or torch, (..., 4))."""
    out = boxes.clone() if isinstance(boxes, torch.Tensor) else np.array(boxes, dtype=np.float64)
    out[..., 0] = size - boxes[..., 2]
    out[..., 2] = size - boxes[..., 0]
    return out


def _cap(boxes: np.ndarray, max_nodes: int) -> np.ndarray:
    """Boxes beyond ``max_nodes`` joined into the last node's box (a bounded node count keeps batches rectangular)."""
    if len(boxes) <= max_nodes:
        return boxes
    tail = boxes[max_nodes - 1 :]
    return np.vstack([boxes[: max_nodes - 1], [[*tail[:, :2].min(0), *tail[:, 2:].max(0)]]])


def stroke_node_boxes(strokes, size: int, max_nodes: int, pad: float = 1.0) -> np.ndarray:
    """One box per stroke in drawing order, in ``size``-pixel image coordinates, widened by ``pad`` pixels
    each side (the ink's width), clipped to the image: (min(n, max_nodes), 4) float32; strokes beyond
    ``max_nodes`` join the last node's box."""
    boxes = _cap(resize_boxes(S.stroke_boxes(strokes), S.CANVAS, size), max_nodes)
    return clip_boxes(boxes + np.array([-pad, -pad, pad, pad]), size)


def ink_node_boxes(ink, max_nodes: int, threshold: float = 0.5) -> np.ndarray:
    """Nodes of a sketch known only as an image (no strokes, e.g. PACS-Sketchy): one box per connected
    piece of ink (8-connected, ``ink`` (S, S) with ink = 1), the largest pieces first, as a stand-in for
    strokes (a piece may hold several strokes that touch). Pieces beyond ``max_nodes`` join the last
    node's box; no ink gives the whole image. (min(n, max_nodes), 4) float32, clipped like strokes."""
    from scipy import ndimage

    ink = np.asarray(ink, dtype=np.float32)
    size = ink.shape[-1]
    labels, n = ndimage.label(ink > threshold, structure=np.ones((3, 3), bool))
    if n == 0:
        return clip_boxes(np.array([[0.0, 0.0, size, size]]), size)
    areas = ndimage.sum_labels(np.ones_like(ink), labels, index=np.arange(1, n + 1))
    slices = ndimage.find_objects(labels)
    order = np.argsort(-areas, kind="stable")
    boxes = np.array(
        [[slices[i][1].start, slices[i][0].start, slices[i][1].stop, slices[i][0].stop] for i in order],
        dtype=np.float64,
    )
    return clip_boxes(_cap(boxes, max_nodes), size)  # pixel extents [start, stop) already hold the ink's width


def sketch_node_boxes(images: torch.Tensor, strokes, max_nodes: int, pad: float = 1.0) -> list[np.ndarray]:
    """Each sketch's node boxes: one per stroke where ``strokes`` (one array per sketch) is given, else one
    per connected piece of ink of ``images`` (B, 1, S, S), ink = 1 (sets without strokes)."""
    size = images.shape[-1]
    if strokes is None:
        return [ink_node_boxes(im[0].cpu().numpy(), max_nodes) for im in images]
    return [stroke_node_boxes(s, size, max_nodes, pad) for s in strokes]


def _seed_c_rand(seed: int) -> None:
    """OpenCV ranks selective search's regions by level x C ``rand()`` (``selectivesearchsegmentation.cpp``),
    so its order of proposals, and the top ``k`` taken here, change from call to call unless the C library's
    generator is seeded. Seeded before every image: the same photo gets the same boxes in every run."""
    import ctypes
    import ctypes.util

    global _LIBC
    if _LIBC is None:
        try:
            _LIBC = ctypes.CDLL(None)  # the process's own C library (Linux, macOS): the one OpenCV calls
            _LIBC.srand  # noqa: B018 - the lookup fails here when this C library has no srand
        except (OSError, AttributeError):
            _LIBC = ctypes.CDLL(ctypes.util.find_library("c") or ctypes.util.find_library("msvcrt"))
    _LIBC.srand(ctypes.c_uint(seed))


_LIBC = None


def selective_search(image: np.ndarray, top: int = 16, min_side: float = 2.0, strategy: str = "fast") -> np.ndarray:
    """Region proposals of an (H, W, 3) uint8 image: the full image first, then up to ``top - 1``
    distinct selective-search boxes of at least ``min_side`` pixels: (k, 4) float32, 1 <= k <= top,
    x1, y1, x2, y2 in pixels. ``strategy``: "fast" (the paper's code) or "single" (one colour space and
    one similarity, several times faster: the ci scale). Fewer than asked is fine (small or flat images)."""
    import cv2

    if strategy not in PROPOSALS:
        raise MethodError(f"proposal strategy must be one of {PROPOSALS}, got {strategy!r}")
    h, w = image.shape[:2]
    boxes = [[0.0, 0.0, float(w), float(h)]]
    if top > 1:
        cv2.setNumThreads(1)
        ss = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
        ss.setBaseImage(np.ascontiguousarray(image[..., ::-1]))  # OpenCV wants BGR
        ss.switchToSelectiveSearchFast() if strategy == "fast" else ss.switchToSingleStrategy()
        seen = {tuple(boxes[0])}
        _seed_c_rand(0)
        for x, y, bw, bh in ss.process():
            box = (float(x), float(y), float(x + bw), float(y + bh))
            if bw < min_side or bh < min_side or box in seen:
                continue
            seen.add(box)
            boxes.append(list(box))
            if len(boxes) >= top:
                break
    return clip_boxes(np.array(boxes), max(h, w))


_PROPOSALS: dict[str, np.ndarray] = {}
_LOCK = threading.Lock()


def photo_node_boxes(images: torch.Tensor, top: int = 16, use_cache: bool = True, strategy: str = "fast") -> list:
    """Selective-search boxes of (B, 3, S, S) photos in [-1, 1] (``views.photo_tensor``), each
    computed once per photo content and cached on disk (``cache.cached_arrays``) and in memory."""
    from sbir_core.cache import cached_arrays, content_hash
    from sbir_core.data.base import cache_dir

    out = []
    u8 = ((images.detach().float().cpu().permute(0, 2, 3, 1) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
    for img in u8:
        key = content_hash(img, f"ss-{strategy}-srand0", top)  # proposals since C rand() is seeded
        boxes = _PROPOSALS.get(key) if use_cache else None
        if boxes is None:
            boxes = cached_arrays(
                cache_dir() / "proposals" / f"ss-{key}.npz",
                lambda: {"boxes": selective_search(img, top, strategy=strategy)},  # noqa: B023 - called at once
                {"boxes": ((None, 4), np.float32)},
                use_cache,
            )["boxes"]
            if use_cache:
                with _LOCK:
                    _PROPOSALS[key] = boxes
        out.append(boxes)
    return out


# ---------------------------------------------------------------------- node features


def roi_align(
    features: torch.Tensor,
    boxes: torch.Tensor,
    batch_index: torch.Tensor,
    scale: float,
    output: int = 7,
    sampling: int = 2,
) -> torch.Tensor:
    """RoI align (torchvision's ``aligned=True``) with ``grid_sample``.

    features (B, C, H, W); boxes (K, 4) x1, y1, x2, y2 in input pixels, inside the image;
    batch_index (K,) long; scale: feature pixels per input pixel. Each of the output x output
    bins averages sampling x sampling bilinear samples: (K, C, output, output).
    """
    k = len(boxes)
    _, c, h, w = features.shape
    if k == 0:
        return features.new_zeros(0, c, output, output)
    b = boxes.to(features.dtype) * scale - 0.5
    n = output * sampling
    t = (torch.arange(n, device=features.device, dtype=features.dtype) + 0.5) / n  # sample offsets in (0, 1)
    xs = b[:, 0:1] + t * (b[:, 2:3] - b[:, 0:1])  # (K, n) feature-pixel index coordinates
    ys = b[:, 1:2] + t * (b[:, 3:4] - b[:, 1:2])
    # index coordinates to grid_sample's [-1, 1] (align_corners=False); border = torchvision's clamp
    gx = (2 * xs + 1) / w - 1
    gy = (2 * ys + 1) / h - 1
    grid = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), dim=-1)  # (K, n, n, 2)
    sampled = F.grid_sample(
        features[batch_index], grid, mode="bilinear", padding_mode="border", align_corners=False
    )  # (K, C, n, n)
    return F.avg_pool2d(sampled, sampling)


def roi_align_reference(
    features: torch.Tensor,
    boxes: torch.Tensor,
    batch_index: torch.Tensor,
    scale: float,
    output: int = 7,
    sampling: int = 2,
) -> torch.Tensor:
    """The slow loop RoI align (torchvision's CPU kernel, ``aligned=True``), to test ``roi_align``."""
    _, c, h, w = features.shape
    out = torch.zeros(len(boxes), c, output, output, dtype=torch.float64)
    f = features.double()
    for r in range(len(boxes)):
        x1, y1, x2, y2 = [float(v) * scale - 0.5 for v in boxes[r]]
        bw, bh = (x2 - x1) / output, (y2 - y1) / output
        img = f[int(batch_index[r])]
        for py in range(output):
            for px in range(output):
                acc = torch.zeros(c, dtype=torch.float64)
                for iy in range(sampling):
                    for ix in range(sampling):
                        y = y1 + py * bh + (iy + 0.5) * bh / sampling
                        x = x1 + px * bw + (ix + 0.5) * bw / sampling
                        if y < -1.0 or y > h or x < -1.0 or x > w:
                            continue
                        y, x = max(y, 0.0), max(x, 0.0)
                        y0, x0 = int(y), int(x)
                        if y0 >= h - 1:
                            y0 = y1_ = h - 1
                            y = float(y0)
                        else:
                            y1_ = y0 + 1
                        if x0 >= w - 1:
                            x0 = x1_ = w - 1
                            x = float(x0)
                        else:
                            x1_ = x0 + 1
                        ly, lx = y - y0, x - x0
                        acc += (
                            (1 - ly) * (1 - lx) * img[:, y0, x0]
                            + (1 - ly) * lx * img[:, y0, x1_]
                            + ly * (1 - lx) * img[:, y1_, x0]
                            + ly * lx * img[:, y1_, x1_]
                        )
                out[r, :, py, px] = acc / (sampling * sampling)
    return out


def cell_cover(boxes, size: float, grid: int) -> torch.Tensor:
    """The fraction of each cell of a ``grid`` x ``grid`` map over a ``size``-pixel image that each box
    covers: boxes (k, 4) x1, y1, x2, y2 in pixels -> (k, grid, grid) float32 in [0, 1]."""
    b = torch.as_tensor(np.asarray(boxes, dtype=np.float32)).reshape(-1, 4)
    side = size / grid
    edges = torch.arange(grid + 1, dtype=torch.float32) * side
    ox = (torch.minimum(b[:, 2:3], edges[1:]) - torch.maximum(b[:, 0:1], edges[:-1])).clamp(min=0) / side
    oy = (torch.minimum(b[:, 3:4], edges[1:]) - torch.maximum(b[:, 1:2], edges[:-1])).clamp(min=0) / side
    return oy[:, :, None] * ox[:, None, :]


def map_nodes(
    maps: torch.Tensor, boxes: list, size: int, max_nodes: int, pool: str = "roi", roi_size: int = 7, projection=None
) -> torch.Tensor:
    """Padded node tensor of images from their feature maps (N, C, h, w) and per-image boxes (k_i, 4) in
    ``size``-pixel coordinates: (N, max_nodes, D + 1), the node mask last.

    pool "roi": the paper's node, RoI-aligned ``roi_size`` x ``roi_size`` and max-pooled (D = C).
    pool "cells": the map's cells in place, each weighted by how much of it the box covers (``cell_cover``),
    flattened in the map's (C, h, w) order (D = C h w) and mapped by ``projection`` (a linear
    ``features.Projection``, applied per cell to the map centred on the projection's mean: D = its dim): at a
    4 x 4 map, max pooling would leave a node nothing of where its box lies; the whole image's node is the
    trunk's (projected) feature of the image itself, and the nodes of boxes that tile the image sum to it (a
    node centred as a whole image, minus the mean once per node, is dominated by that mean when its box is small).
    """
    if pool not in POOLS:
        raise MethodError(f"pool must be one of {POOLS}, got {pool!r}")
    n, c, h, w = maps.shape
    counts = [min(len(b), max_nodes) for b in boxes]
    flat = np.concatenate([np.asarray(b[:max_nodes], np.float32).reshape(-1, 4) for b in boxes])
    idx = torch.repeat_interleave(torch.arange(n, device=maps.device), torch.as_tensor(counts, device=maps.device))
    slot = torch.cat([torch.arange(k, device=maps.device) for k in counts])
    if pool == "roi":
        boxes_t = torch.as_tensor(flat, dtype=maps.dtype, device=maps.device)
        feats = roi_align(maps, boxes_t, idx, w / size, roi_size).amax(dim=(2, 3))
    else:
        if h != w:
            raise MethodError(f"pool 'cells' needs a square map, got {h} x {w}")
        cover = cell_cover(flat, size, h).to(maps).flatten(1)  # (k, h w)
        if projection is None:
            feats = (maps[idx].flatten(2) * cover[:, None, :]).flatten(1)
        else:  # ((x - mean) * m) @ B = sum over cells of m_q ((x_q - mean_q) @ B_q), without the (k, C h w) array
            basis, mean = projection.basis.to(maps), projection.mean.to(maps)
            centred = (maps - mean.view(1, c, h, w)).flatten(2)
            per_cell = torch.einsum("ncq,cqd->nqd", centred, basis.view(c, h * w, -1))  # (N, h w, D)
            feats = torch.bmm(cover[:, None, :], per_cell[idx])[:, 0]
    out = feats.new_zeros(n, max_nodes, feats.shape[1] + 1)
    out[idx, slot, :-1] = feats
    out[idx, slot, -1] = 1.0
    return out


# ---------------------------------------------------------------------- head


class Linear2(nn.Module):
    """Two linear maps, one per branch, applied to a stacked (sketch, photo) pair x (2, ..., d_in):
    branch i's input goes through weight i. Initialised as ``nn.Linear``."""

    def __init__(self, d_in: int, d_out: int, bias: bool = True):
        super().__init__()
        bound = 1 / math.sqrt(d_in)
        self.weight = nn.Parameter(torch.empty(2, d_in, d_out).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(2, 1, d_out).uniform_(-bound, bound)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x2 = x.reshape(2, -1, x.shape[-1])
        # the bias added inside the product (baddbmm): 4-16 % faster a map than bmm, then +, at these sizes
        y = torch.bmm(x2, self.weight) if self.bias is None else torch.baddbmm(self.bias, x2, self.weight)
        return y.view(*x.shape[:-1], -1)


def _masked_softmax(logits: torch.Tensor, mask: torch.Tensor, dim: int = -1) -> torch.Tensor:
    return torch.softmax(logits.masked_fill(~mask, float("-inf")), dim=dim).nan_to_num(0.0)


class CoAttention(nn.Module):
    """Co-attention of both branches at once: x (2, P, K, d) = (sketch nodes, photo nodes), mask (2, P, K);
    each branch attends the other. gate: "slide" (sigma([X, Y~] W_G)), "code" (sigma(X * Y~)), or "gated"
    (sigma(X W_G) * X, no cross-modal term: the B-Gated-Siamese row). Z starts at 1% of its usual
    initialisation, so that a level starts close to the identity (not at zero: ReLU(0) passes no gradient)."""

    def __init__(self, d: int, d_h: int, gate: str):
        super().__init__()
        self.gate = gate
        self.d_h = d_h
        if gate in ("slide", "code"):
            self.w_q = Linear2(d, d_h, bias=False)  # branch i's W on its own nodes (W_S for the sketch)
            self.w_k = Linear2(d, d_h, bias=False)  # branch i's W on the other branch's nodes (W_P)
        if gate == "slide":
            self.w_g = Linear2(2 * d, d)
        elif gate == "gated":
            self.w_g = Linear2(d, d)
        self.z = Linear2(d, d)
        with torch.no_grad():
            self.z.weight.mul_(0.01)
            self.z.bias.mul_(0.01)

    def attention(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Each branch's attention over the other's nodes: (2, P, K, K), rows sum to 1 over real nodes."""
        y = x.flip(0)
        a = self.w_q(x) @ self.w_k(y).transpose(-1, -2) / math.sqrt(self.d_h)
        return _masked_softmax(a, mask.flip(0)[:, :, None, :])

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.gate == "gated":
            out = F.relu(self.z(torch.sigmoid(self.w_g(x)) * x)) + x
        else:
            ctx = self.attention(x, mask) @ x.flip(0)
            g = torch.sigmoid(self.w_g(torch.cat([x, ctx], -1)) if self.gate == "slide" else x * ctx)
            out = F.relu(self.z(g * (x + ctx))) + x
        return torch.where(mask[..., None], out, x)


def st_gumbel(logits: torch.Tensor, mask: torch.Tensor, training: bool, noise: float = 1.0, generator=None):
    """One-hot choice over the last axis among ``mask``: in training the argmax of the logits plus
    ``noise`` times Gumbel noise (1: the paper's τ = 1 sample), forward hard and backward the soft
    gradient (straight-through); at test the plain argmax. A row with nothing to choose is all zeros."""
    any_ok = mask.any(-1, keepdim=True)
    # a row with nothing to choose gets zeros, not all -inf (whose softmax gradient is NaN)
    logits = torch.where(any_ok, logits.masked_fill(~mask, float("-inf")), torch.zeros_like(logits))
    if training and noise > 0:
        u = torch.rand(logits.shape, generator=generator, device=logits.device, dtype=logits.dtype)
        logits = logits - noise * torch.log(-torch.log(u + 1e-20) + 1e-20)
    hard = F.one_hot(logits.argmax(-1), logits.shape[-1]).to(logits.dtype) * any_ok
    if not training:
        return hard
    soft = torch.softmax(logits, -1) * any_ok
    return hard - soft.detach() + soft


class Fusion(nn.Module):
    """One level of hierarchical node fusion in both branches: x (2, P, K, d), mask (2, P, K) -> the nodes
    with one pair merged in each branch that holds two or more (the merged node in the pair's first slot)
    and the new mask. W_F starts as the mean of its two nodes."""

    def __init__(self, d: int, d_c: int, variant: str):
        super().__init__()
        self.variant = variant
        self.w_c = Linear2(d, d_c, bias=False) if variant == "slide" else None
        self.w_f = Linear2(2 * d, d)
        with torch.no_grad():
            self.w_f.weight.copy_(torch.cat([torch.eye(d), torch.eye(d)]).expand(2, -1, -1) / 2)
            self.w_f.bias.zero_()

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """C of every node pair: (2, P, K, K)."""
        h = self.w_c(x) if self.w_c is not None else x
        return h @ h.transpose(-1, -2)

    def forward(self, x, mask, training: bool = False, noise: float = 1.0, generator=None):
        k = x.shape[-2]
        iu = torch.triu_indices(k, k, 1, device=x.device)
        pair_ok = mask[..., iu[0]] & mask[..., iu[1]]  # (2, P, K(K-1)/2)
        y = st_gumbel(self.scores(x)[..., iu[0], iu[1]], pair_ok, training, noise, generator)
        eye = torch.eye(k, dtype=x.dtype, device=x.device)
        sel = torch.stack([y @ eye[iu[0]], y @ eye[iu[1]]], -2)  # (2, P, 2, K): one-hot slots a and b
        merged = self.w_f((sel @ x).flatten(-2))  # (2, P, d) from [x_a; x_b]
        if self.variant == "slide":
            merged = F.relu(merged)
        sel_a, sel_b = sel[..., 0, :], sel[..., 1, :]
        new = x * (1 - sel_a - sel_b)[..., None] + sel_a[..., None] * merged[..., None, :]
        return new, mask & ~(sel_b.detach() > 0.5)


def trunk_map(trunk: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The feature map of a ``models.trunk.Trunk`` before its pooling: (B, C, h, w)."""
    with torch.set_grad_enabled(trunk.trainable and torch.is_grad_enabled()):
        h = trunk.stem(trunk.prepare(x))
        for block in trunk.blocks:
            h = block(h)
        return h


class HierarchySBIR(Method):
    """Cross-modal hierarchical FG-SBIR (see the module docstring); sampler "triplets".

    channels: the size of a node's raw feature. backbone: None (the views hold ready-made nodes,
    ``map_nodes``) or a module from images (B, C, S, S) to a feature map (B, channels, h, w), whose
    nodes are RoI-aligned per box (``pool``, ``roi_size``; sketches need their strokes, or pieces of ink
    stand in). d: node size; d_h: attention size; max_nodes: nodes per sketch and per photo (K).
    coattn, fusion, fusion_variant: the variant (``VARIANTS``); margin: of the squared triplet.
    anneal_steps: None keeps the paper's τ = 1 Gumbel noise through training; N scales it from 1 down
    to 0 (the test's argmax) over the first N training steps. proposals: selective search's strategy.
    normalise: the full hierarchy's last node L2-normalised, as every other row's vector (False: the paper's
    code at commit e68e780, whose squared distances grow with the nodes' scale and dwarf the margin).
    level_norm: the full hierarchy's nodes L2-normalised as they enter it and after each level's co-attention
    (ours; False: the slide's equations as they are, whose repeated residual can grow the nodes without bound).
    """

    sampler = "triplets"
    pairwise = True
    needs_strokes = True  # given the queries' strokes when a view has them (else pieces of ink are its nodes)

    def __init__(
        self,
        channels: int,
        d: int = 64,
        d_h: int = 32,
        max_nodes: int = 16,
        coattn: str = "slide",
        fusion: str = "hierarchy",
        fusion_variant: str = "slide",
        margin: float = 0.2,
        anneal_steps: int | None = None,
        backbone: nn.Module | None = None,
        pool: str = "roi",
        roi_size: int = 7,
        flip: bool = True,
        line_pad: float = 1.0,
        proposals: str = "fast",
        normalise: bool = True,
        level_norm: bool = True,
    ):
        super().__init__()
        for name, value, allowed in (
            ("coattn", coattn, COATTN),
            ("fusion", fusion, FUSION),
            ("fusion_variant", fusion_variant, FUSION_VARIANTS),
            ("pool", pool, POOLS),
            ("proposals", proposals, PROPOSALS),
        ):
            if value not in allowed:
                raise MethodError(f"{name} must be one of {allowed}, got {value!r}")
        if max_nodes < 1:
            raise MethodError(f"max_nodes must be >= 1, got {max_nodes}")
        self.backbone = backbone
        self.channels, self.d, self.max_nodes = int(channels), int(d), int(max_nodes)
        self.coattn_kind, self.fusion_kind = coattn, fusion
        self.margin, self.flip, self.line_pad = float(margin), bool(flip), float(line_pad)
        self.pool, self.roi_size, self.proposals = pool, int(roi_size), proposals
        self.anneal_steps = None if anneal_steps is None else int(anneal_steps)
        self.normalise, self.level_norm = bool(normalise), bool(level_norm)
        self.node = nn.Linear(channels, d)
        self.coattn = CoAttention(d, d_h, coattn) if coattn != "none" else None
        self.fusion = Fusion(d, d_h, fusion_variant) if fusion == "hierarchy" else None
        self.register_buffer("steps_done", torch.zeros((), dtype=torch.long))
        self.generator = None  # a torch.Generator for the Gumbel noise (None: the global one)

    @property
    def noise(self) -> float:
        """The scale of the Gumbel noise at this training step (1: the paper's τ = 1 sample; 0: argmax)."""
        if self.anneal_steps is None:
            return 1.0
        if self.anneal_steps == 0:
            return 0.0
        return max(0.0, 1.0 - int(self.steps_done) / self.anneal_steps)

    def train_step(self, batch: dict, optimizers) -> float:
        loss = super().train_step(batch, optimizers)
        self.steps_done += 1
        return loss

    # -- nodes
    def _nodes(self, x: torch.Tensor, boxes: list) -> torch.Tensor:
        """Images (B, C, S, S) and per-image boxes -> padded raw nodes (B, K, channels + 1), mask last."""
        if self.backbone is None:
            raise MethodError("this HierarchySBIR has no backbone: it reads views of ready-made nodes (map_nodes)")
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return map_nodes(self.backbone(x.contiguous()), boxes, x.shape[-1], self.max_nodes, self.pool, self.roi_size)

    def sketch_boxes(self, x: torch.Tensor, strokes=None, flip=None) -> list:
        return _flip_each(sketch_node_boxes(x, strokes, self.max_nodes, self.line_pad), x.shape[-1], flip)

    def photo_boxes(self, x: torch.Tensor, flip=None) -> list:
        return _flip_each(photo_node_boxes(x, self.max_nodes, strategy=self.proposals), x.shape[-1], flip)

    def embed_query(self, x: torch.Tensor, style=None, strokes=None) -> torch.Tensor:
        """Ready-made nodes (B, K, channels + 1) as they are, or sketches (B, C, S, S) with their strokes
        (B arrays; None: pieces of ink stand for strokes) -> raw nodes (B, K, channels + 1), mask last."""
        return x if x.ndim == 3 else self._nodes(x, self.sketch_boxes(x, strokes))

    def embed_gallery(self, x: torch.Tensor) -> torch.Tensor:
        """Ready-made nodes as they are, or photos (B, 3, S, S) -> raw nodes on their selective-search boxes."""
        return x if x.ndim == 3 else self._nodes(x, self.photo_boxes(x))

    # -- head
    def project(self, nodes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw padded nodes (..., K, channels + 1) -> projected nodes (..., K, d) and their mask (..., K) bool."""
        if nodes.shape[-1] != self.channels + 1:
            raise MethodError(f"nodes of {nodes.shape[-1] - 1} channels; this head reads {self.channels}")
        return self.node(nodes[..., :-1]), nodes[..., -1] > 0.5

    def head(self, q: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Aligned pairs of raw padded nodes (P, K, channels + 1) -> the pair's sketch and photo vectors (P, d).
        Both branches run stacked, (2, P, K, d): {co-attention, then one fusion in each} until each holds one node."""
        x, mask = self.project(torch.stack([q, g]))
        if self.fusion is None:  # one co-attention step, then max pooling, L2-normalised: the code's HEAD
            x = self.coattn(x, mask) if self.coattn is not None else x
            out = F.normalize(x.masked_fill(~mask[..., None], float("-inf")).amax(-2), dim=-1)
            return out[0], out[1]
        x = self._level_norm(x)
        for _ in range(x.shape[-2] - 1):  # one node fewer per level: at most K - 1 levels
            if not (mask.sum(-1) > 1).any():
                break
            if self.coattn is not None:
                x = self._level_norm(self.coattn(x, mask))
            x, mask = self.fusion(x, mask, self.training, self.noise, self.generator)
        out = (x * mask[..., None]).sum(-2)  # the one node left
        if self.normalise:
            out = F.normalize(out, dim=-1)
        return out[0], out[1]

    def _level_norm(self, x: torch.Tensor) -> torch.Tensor:
        """Nodes (..., d) L2-normalised when ``level_norm`` (padding ones too: the mask hides them), else as given."""
        return F.normalize(x, dim=-1) if self.level_norm else x

    def pair_distance(self, q_feats: torch.Tensor, g_feats: torch.Tensor) -> torch.Tensor:
        """Squared Euclidean distance of each aligned (query, photo) pair's embeddings: (P,)."""
        s, p = self.head(q_feats, g_feats)
        return (s - p).pow(2).sum(-1)

    def training_loss(self, batch: dict) -> torch.Tensor:
        """Squared-distance triplet loss of a "triplets" batch: ready-made nodes, or images with ``strokes``
        (pieces of ink where a view has none) whose boxes flip with them."""
        sk, ph, ng = batch["sketch"], batch["photo"], batch["neg"]
        if sk.ndim == 3:
            return self.triplet_loss(sk, ph, ng)
        flip = batch.get("flip") if self.flip else None
        # boxes from the unflipped images (proposals are content-keyed), then flipped with them
        pb, nb = self.photo_boxes(ph, flip), self.photo_boxes(ng, flip)
        sb = self.sketch_boxes(sk, batch.get("strokes"), flip)
        if flip is not None:
            m = flip.view(-1, 1, 1, 1).to(sk.device)
            sk, ph, ng = (torch.where(m, t.flip(-1), t) for t in (sk, ph, ng))
        q = self._nodes(sk, sb)
        g = self._nodes(torch.cat([ph, ng]), pb + nb)
        return self.triplet_loss(q, g[: len(q)], g[len(q) :])

    def triplet_loss(self, q: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        """The paper's squared-distance triplet loss of raw nodes (B, K, channels + 1) of anchors,
        positives and negatives: mean max(0, margin + |S+ - P+|^2 - |S- - P-|^2), both pairs in one pass."""
        d = self.pair_distance(torch.cat([q, q]), torch.cat([pos, neg]))
        d_pos, d_neg = d.chunk(2)
        return F.relu(self.margin + d_pos - d_neg).mean()


@torch.no_grad()
def merge_trace(method: HierarchySBIR, q: torch.Tensor, g: torch.Tensor, strokes=None) -> dict:
    """What the head does at test with one pair of raw nodes (K, channels + 1), or one sketch and one photo image
    (C, S, S; the paper scale, with the sketch's ``strokes``): the first level's sketch-to-photo attention (ks, kp)
    (None without cross-modal co-attention) and each branch's merges in order, [(a, b), ...] (slot a absorbs
    slot b). For the chapter's figure."""
    was = method.training
    method.eval()
    try:
        if q.ndim == 3:  # an image: its nodes first, as the method takes them at test
            q = method.embed_query(q[None], strokes=None if strokes is None else [strokes])[0]
        if g.ndim == 3:
            g = method.embed_gallery(g[None])[0]
        x, mask = method.project(torch.stack([q[None], g[None]]))
        x = method._level_norm(x) if method.fusion is not None else x  # as the head's first level reads them
        n_s, n_p = int(mask[0, 0].sum()), int(mask[1, 0].sum())
        out = {"attention": None, "sketch_merges": [], "photo_merges": []}
        if method.coattn is not None and method.coattn.gate in ("slide", "code"):
            out["attention"] = method.coattn.attention(x, mask)[0, 0, :n_s, :n_p].numpy()
        k = x.shape[-2]
        iu = torch.triu_indices(k, k, 1)
        for _ in range(k - 1 if method.fusion is not None else 0):
            if not (mask.sum(-1) > 1).any():
                break
            x = method._level_norm(method.coattn(x, mask)) if method.coattn is not None else x
            pair_ok = mask[..., iu[0]] & mask[..., iu[1]]
            scores = method.fusion.scores(x)[..., iu[0], iu[1]].masked_fill(~pair_ok, float("-inf"))
            for branch, key in enumerate(("sketch_merges", "photo_merges")):
                if pair_ok[branch, 0].any():
                    j = int(scores[branch, 0].argmax())
                    out[key].append((int(iu[0, j]), int(iu[1, j])))
            x, mask = method.fusion(x, mask)
        return out
    finally:
        method.train(was)


def _flip_each(boxes: list, size: float, flip) -> list:
    if flip is None:
        return boxes
    return [flip_boxes(b, size).astype(np.float32) if bool(f) else b for b, f in zip(boxes, flip)]


class _TrunkMap(nn.Module):
    """A pretrained trunk (``models.trunk``) giving its feature map, trained with the head (the paper scale)."""

    def __init__(self, spec: dict):
        super().__init__()
        from sbir_core.models.trunk import Trunk, TrunkSpec

        self.trunk = Trunk(TrunkSpec.of(spec), trainable=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return trunk_map(self.trunk, x)


def build_hierarchy(
    variant: str = "proposed",
    channels: int | None = None,
    trunk: dict | None = None,
    width: int = 16,
    depth: int = 2,
    d: int = 64,
    d_h: int = 32,
    max_nodes: int = 16,
    margin: float = 0.2,
    flip: bool = True,
    roi_size: int = 3,
    **overrides,
) -> HierarchySBIR:
    """A ``HierarchySBIR`` of a Table 1 row (``variant``, one of ``VARIANTS``; ``overrides`` change its options).

    channels: the nodes are ready-made, of this size (the ci scale's frozen trunk). Else the nodes are
    RoI-aligned from a backbone trained with the head: ``trunk`` (a ``models.trunk.TrunkSpec`` dict: the
    pretrained trunk, the paper scale) or a ``SmallCNN`` conv stack of ``depth`` stride-2 blocks (the tests).
    """
    if variant not in VARIANTS:
        raise MethodError(f"variant must be one of {sorted(VARIANTS)}, got {variant!r}")
    opts = {"fusion_variant": "slide", **VARIANTS[variant], **overrides}
    common = {"d": d, "d_h": d_h, "max_nodes": max_nodes, "margin": margin, "flip": flip, "roi_size": roi_size}
    if channels is not None:
        return HierarchySBIR(int(channels), **common, **opts)
    if trunk is not None:
        backbone = _TrunkMap(trunk)
        return HierarchySBIR(backbone.trunk.blocks[-1]._project_conv.out_channels, backbone=backbone, **common, **opts)
    from sbir_core.models.encoders import SmallCNN

    cnn = SmallCNN(width=width, depth=depth, embed_dim=d, double_conv=False)
    return HierarchySBIR(width * min(2 ** (depth - 1), 8), backbone=cnn.features, **common, **opts)
