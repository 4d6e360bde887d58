"""Cross-modal hierarchical FG-SBIR (Sain et al., BMVC 2020; METHODS.md §B).

A sketch is a set of nodes (one box per stroke), a photo a set of nodes (selective-search
proposals, the full image first). Node features are RoI-aligned from the backbone's feature map
and max-pooled. Per (sketch, photo) pair, levels of

* **cross-modal co-attention**: A = (S W_S)(P W_P)^T, P~ = softmax(A / sqrt(d_h)) P,
  G = sigma([S, P~] W_G) (slide; ``coattn="code"``: G = sigma(S * P~)), S^ = ReLU(Z(G * (S + P~))) + S,
  and the mirror for the photo;
* **hierarchical node fusion**: C = (X W_C)(X W_C)^T over the strict upper triangle of node pairs,
  one pair picked by straight-through Gumbel-softmax in training and argmax at test, merged by
  ReLU(W_F [x_a; x_b]) (slide; ``fusion_variant="code"``: C = X X^T, no ReLU),

run until each branch holds one node: the two vectors are the pair's embeddings, and the loss is
mean max(0, 0.2 + |S+ - P+|^2 - |S- - P-|^2). The embedding depends on the pair, so the method is
``pairwise``: ``embed_query`` / ``embed_gallery`` return per-item padded nodes (N, K, d + 1) whose
last channel is the node mask, and ``pair_distance`` runs the head on aligned pairs.

Variants (the paper's Table 1 rows, ``VARIANTS``): ``coattn`` in none | gated (self-gating, no
cross-modal term) | slide | code; ``fusion`` in hierarchy | maxpool (max over nodes after one
co-attention step, L2-normalised: the public code's HEAD since commit e42c1a5).

Fixed from the public code (METHODS.md §B pitfalls): the hierarchy runs to one node; boxes are
rescaled to the input size and flipped with the images; each query is scored only against the
photos it is ranked among (or a shortlist, two-stage retrieval).
"""

from __future__ import annotations

import math
import threading

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sbir_core import strokes as S
from sbir_core.models.base import Method

COATTN = ("none", "gated", "slide", "code")
FUSION = ("hierarchy", "maxpool")
FUSION_VARIANTS = ("slide", "code")

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


def stroke_node_boxes(strokes, size: int, max_nodes: int, pad: float = 1.0) -> np.ndarray:
    """One box per stroke in ``size``-pixel image coordinates, widened by ``pad`` pixels each side
    (the ink's width), clipped to the image: (min(n, max_nodes), 4) float32. Strokes beyond
    ``max_nodes`` join the last node's box (a bounded node count keeps batches rectangular)."""
    boxes = resize_boxes(S.stroke_boxes(strokes), S.CANVAS, size)
    if len(boxes) > max_nodes:
        tail = boxes[max_nodes - 1 :]
        boxes = np.vstack([boxes[: max_nodes - 1], [[*tail[:, :2].min(0), *tail[:, 2:].max(0)]]])
    boxes = boxes + np.array([-pad, -pad, pad, pad])
    return clip_boxes(boxes, size)


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
    if len(boxes) > max_nodes:
        tail = boxes[max_nodes - 1 :]
        boxes = np.vstack([boxes[: max_nodes - 1], [[*tail[:, :2].min(0), *tail[:, 2:].max(0)]]])
    return clip_boxes(boxes, size)  # pixel extents [start, stop) already hold the ink's width


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


def selective_search(image: np.ndarray, top: int = 16, min_side: float = 2.0) -> np.ndarray:
    """Region proposals of an (H, W, 3) uint8 image: the full image first, then up to ``top - 1``
    distinct selective-search boxes (fast mode) of at least ``min_side`` pixels: (k, 4) float32,
    1 <= k <= top, x1, y1, x2, y2 in pixels. Fewer than asked is fine (small or flat images)."""
    import cv2

    h, w = image.shape[:2]
    boxes = [[0.0, 0.0, float(w), float(h)]]
    if top > 1:
        cv2.setNumThreads(1)
        ss = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
        ss.setBaseImage(np.ascontiguousarray(image[..., ::-1]))  # OpenCV wants BGR
        ss.switchToSelectiveSearchFast()
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


def photo_node_boxes(images: torch.Tensor, top: int = 16, use_cache: bool = True) -> list[np.ndarray]:
    """Selective-search boxes of (B, 3, S, S) photos in [-1, 1] (``views.photo_tensor``), each
    computed once per photo content and cached on disk (``cache.cached_arrays``) and in memory."""
    from sbir_core.cache import cached_arrays, content_hash
    from sbir_core.data.base import cache_dir

    out = []
    u8 = ((images.detach().float().cpu().permute(0, 2, 3, 1) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
    for img in u8:
        key = content_hash(img, "ss-fast-srand0", top)  # proposals since C rand() is seeded
        boxes = _PROPOSALS.get(key) if use_cache else None
        if boxes is None:
            boxes = cached_arrays(
                cache_dir() / "proposals" / f"ss-{key}.npz",
                lambda: {"boxes": selective_search(img, top)},  # noqa: B023 - called before the loop moves on
                {"boxes": ((None, 4), np.float32)},
                use_cache,
            )["boxes"]
            if use_cache:
                with _LOCK:
                    _PROPOSALS[key] = boxes
        out.append(boxes)
    return out


# ---------------------------------------------------------------------- RoI align


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


# ---------------------------------------------------------------------- head


def _masked_softmax(logits: torch.Tensor, mask: torch.Tensor, dim: int = -1) -> torch.Tensor:
    return torch.softmax(logits.masked_fill(~mask, float("-inf")), dim=dim).nan_to_num(0.0)


class CoAttention(nn.Module):
    """One direction of co-attention: X (P, Kx, d) attends Y (P, Ky, d); returns X^ (P, Kx, d).

    gate: "slide" (sigma([X, Y~] W_G)), "code" (sigma(X * Y~)), or "gated" (sigma(X W_G) * X, no
    cross-modal term: the B-Gated-Siamese row).
    """

    def __init__(self, d: int, d_h: int, gate: str):
        super().__init__()
        self.gate = gate
        self.d_h = d_h
        if gate in ("slide", "code"):
            self.w_x = nn.Linear(d, d_h, bias=False)
            self.w_y = nn.Linear(d, d_h, bias=False)
        if gate == "slide":
            self.w_g = nn.Linear(2 * d, d)
        elif gate == "gated":
            self.w_g = nn.Linear(d, d)
        self.z = nn.Linear(d, d)

    def forward(self, x, x_mask, y, y_mask):
        if self.gate == "gated":
            return F.relu(self.z(torch.sigmoid(self.w_g(x)) * x)) + x
        a = self.w_x(x) @ self.w_y(y).transpose(1, 2) / math.sqrt(self.d_h)  # (P, Kx, Ky)
        y_ctx = _masked_softmax(a, y_mask[:, None, :]) @ y
        g = torch.sigmoid(self.w_g(torch.cat([x, y_ctx], -1))) if self.gate == "slide" else torch.sigmoid(x * y_ctx)
        out = F.relu(self.z(g * (x + y_ctx))) + x
        return torch.where(x_mask[..., None], out, x)


def st_gumbel(logits: torch.Tensor, mask: torch.Tensor, training: bool, generator=None) -> torch.Tensor:
    """One-hot choice over the last axis among ``mask``: straight-through Gumbel-softmax (tau 1) in
    training (hard forward, soft gradient), plain argmax at test (no noise)."""
    any_ok = mask.any(-1, keepdim=True)
    # a branch with nothing to choose gets zeros, not all -inf (whose softmax gradient is NaN)
    logits = torch.where(any_ok, logits.masked_fill(~mask, float("-inf")), torch.zeros_like(logits))
    if training:
        u = torch.rand(logits.shape, generator=generator, device=logits.device, dtype=logits.dtype)
        logits = logits - torch.log(-torch.log(u + 1e-20) + 1e-20)
    soft = torch.softmax(logits, -1) * any_ok
    hard = F.one_hot(logits.argmax(-1), logits.shape[-1]).to(soft.dtype) * any_ok
    return hard - soft.detach() + soft if training else hard


class Fusion(nn.Module):
    """One level of hierarchical node fusion over padded nodes X (P, K, d), mask (P, K)."""

    def __init__(self, d: int, d_c: int, variant: str):
        super().__init__()
        self.variant = variant
        self.w_c = nn.Linear(d, d_c, bias=False) if variant == "slide" else None
        self.w_f = nn.Linear(2 * d, d)

    def forward(self, x, mask, generator=None):
        p, k, _ = x.shape
        h = self.w_c(x) if self.w_c is not None else x
        c = h @ h.transpose(1, 2)  # (P, K, K)
        iu = torch.triu_indices(k, k, 1, device=x.device)
        pair_ok = mask[:, iu[0]] & mask[:, iu[1]]  # (P, K(K-1)/2)
        active = pair_ok.any(-1)  # branches with 2 or more nodes left
        y = st_gumbel(c[:, iu[0], iu[1]], pair_ok, self.training, generator)  # (P, pairs)
        eye = torch.eye(k, dtype=x.dtype, device=x.device)
        sel_a, sel_b = y @ eye[iu[0]], y @ eye[iu[1]]  # (P, K) one-hot slots (soft gradient)
        xa, xb = (sel_a[..., None] * x).sum(1), (sel_b[..., None] * x).sum(1)
        merged = self.w_f(torch.cat([xa, xb], -1))
        if self.variant == "slide":
            merged = F.relu(merged)
        new = x * (1 - sel_a - sel_b)[..., None] + sel_a[..., None] * merged[:, None, :]
        new = torch.where(active[:, None, None], new, x)
        drop = sel_b.detach() > 0.5
        return new, mask & ~(drop & active[:, None])


class HierarchySBIR(Method):
    """Cross-modal hierarchical FG-SBIR (see the module docstring); sampler "triplets" with strokes.

    backbone: a conv stack (``encoders.SmallCNN.features`` at the ci scale) of stride ``stride``.
    channels: the size of a node's raw feature (the backbone's channels, or the trunk's output).
    trunk: None (a node is its RoI-aligned map max-pooled) or a module (K, C, r, r) -> (K, channels)
        run on each RoI-aligned crop (the rest of a trained encoder, ``on_encoder``).
    frozen: backbone and trunk are not trained (their node features can be computed once).
    d: node size; d_h: attention size; max_nodes: nodes per sketch and per photo (K).
    coattn, fusion, fusion_variant: the variant (``VARIANTS``); margin: of the squared triplet.

    ``embed_query`` / ``embed_gallery`` return the raw node features (N, K, channels + 1), mask last;
    the head projects them to ``d`` (``node``) and runs co-attention and fusion per pair.
    """

    sampler = "triplets"
    pairwise = True
    needs_strokes = True  # given the queries' strokes when a view has them (else pieces of ink are its nodes)

    def __init__(
        self,
        backbone: nn.Module,
        channels: int,
        stride: int,
        d: int = 64,
        d_h: int = 32,
        max_nodes: int = 16,
        coattn: str = "slide",
        fusion: str = "hierarchy",
        fusion_variant: str = "slide",
        margin: float = 0.2,
        flip: bool = True,
        roi_size: int = 3,
        line_pad: float = 1.0,
        trunk: nn.Module | None = None,
        frozen: bool = False,
        sketch_full_node: bool = False,
    ):
        super().__init__()
        for name, value, allowed in (
            ("coattn", coattn, COATTN),
            ("fusion", fusion, FUSION),
            ("fusion_variant", fusion_variant, FUSION_VARIANTS),
        ):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        if max_nodes < 1:
            raise ValueError(f"max_nodes must be >= 1, got {max_nodes}")
        self.backbone = backbone
        self.trunk = trunk
        self.frozen = bool(frozen)
        if frozen:
            for p in list(backbone.parameters()) + (list(trunk.parameters()) if trunk is not None else []):
                p.requires_grad_(False)
        self.channels = int(channels)
        self.sketch_full_node = bool(sketch_full_node)
        self.stride, self.d, self.max_nodes = stride, d, int(max_nodes)
        self.coattn_kind, self.fusion_kind = coattn, fusion
        self.margin, self.flip, self.roi_size, self.line_pad = float(margin), flip, int(roi_size), float(line_pad)
        self.node = nn.Linear(channels, d)
        if coattn != "none":
            self.co_s = CoAttention(d, d_h, coattn)
            self.co_p = CoAttention(d, d_h, coattn)
        if fusion == "hierarchy":
            self.fuse_s = Fusion(d, d_h, fusion_variant)
            self.fuse_p = Fusion(d, d_h, fusion_variant)
        self.generator = None  # a torch.Generator for the Gumbel noise (None: the global one)

    # -- nodes
    def _nodes(self, x: torch.Tensor, boxes: list) -> torch.Tensor:
        """Images (B, C, S, S) and per-image boxes (k_i, 4) -> padded raw node features
        (B, K, channels + 1), mask last."""
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            fmap = self.backbone(x.contiguous())
            counts = [len(b) for b in boxes]
            flat = torch.as_tensor(np.concatenate(boxes), dtype=fmap.dtype, device=fmap.device)
            idx = torch.repeat_interleave(
                torch.arange(len(boxes), device=fmap.device), torch.as_tensor(counts, device=fmap.device)
            )
            crops = roi_align(fmap, flat, idx, 1.0 / self.stride, self.roi_size)
            feats = crops.amax(dim=(2, 3)) if self.trunk is None else self.trunk(crops)
        c = self.channels
        out = feats.new_zeros(len(boxes), self.max_nodes, c + 1)
        slot = torch.cat([torch.arange(n, device=fmap.device) for n in counts])
        out[idx, slot, :c] = feats
        out[idx, slot, c] = 1.0
        return out

    def sketch_boxes(self, strokes, size: int, flip=None, images=None) -> list[np.ndarray]:
        """Per-sketch node boxes: one per stroke, or (``strokes`` None, ``images`` (B, C, S, S) with ink = 1
        given) one per connected piece of ink (``ink_node_boxes``), for sets that have no strokes."""
        if strokes is None:
            if images is None:
                raise ValueError("HierarchySBIR needs the sketches' strokes or their images for its nodes")
            k = self.max_nodes - 1 if self.sketch_full_node else self.max_nodes
            boxes = [ink_node_boxes(im[0].cpu().numpy(), max(k, 1)) for im in images]
        else:
            k = self.max_nodes - 1 if self.sketch_full_node else self.max_nodes
            boxes = [stroke_node_boxes(s, size, max(k, 1), self.line_pad) for s in strokes]
        if self.sketch_full_node:  # the whole sketch first, as the whole photo leads its proposals
            full = np.array([[0.0, 0.0, size, size]], np.float32)
            boxes = [np.vstack([full, b]) if self.max_nodes > 1 else full for b in boxes]
        return _flip_each(boxes, size, flip)

    def photo_boxes(self, x: torch.Tensor, flip=None) -> list[np.ndarray]:
        boxes = [b[: self.max_nodes] for b in photo_node_boxes(x, self.max_nodes)]
        return _flip_each(boxes, x.shape[-1], flip)

    def embed_query(self, x: torch.Tensor, style=None, strokes=None) -> torch.Tensor:
        """Sketches (B, C, S, S) and their strokes (B arrays; None: pieces of ink stand for strokes) -> raw
        nodes (B, K, channels + 1), mask last."""
        return self._nodes(x, self.sketch_boxes(strokes, x.shape[-1], images=None if strokes is not None else x))

    def embed_gallery(self, x: torch.Tensor) -> torch.Tensor:
        """Photos (B, 3, S, S) -> raw nodes (B, K, channels + 1) on their selective-search boxes, mask last."""
        return self._nodes(x, self.photo_boxes(x))

    # -- head
    def project(self, nodes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw padded nodes (P, K, channels + 1) -> projected nodes (P, K, d) and their mask (P, K) bool."""
        c = self.channels
        return self.node(nodes[..., :c]), nodes[..., c] > 0.5

    def head(self, q: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Aligned pairs of raw padded nodes (P, K, channels + 1) -> the pair's sketch and photo vectors (P, d)."""
        (s, sm), (p, pm) = self.project(q), self.project(g)
        if self.fusion_kind == "maxpool":
            if self.coattn_kind != "none":
                s, p = self.co_s(s, sm, p, pm), self.co_p(p, pm, s, sm)
            pool = lambda x, m: F.normalize(x.masked_fill(~m[..., None], float("-inf")).amax(1), dim=1)
            return pool(s, sm), pool(p, pm)
        for _ in range(self.max_nodes - 1):
            if not ((sm.sum(1) > 1) | (pm.sum(1) > 1)).any():
                break
            if self.coattn_kind != "none":
                s, p = self.co_s(s, sm, p, pm), self.co_p(p, pm, s, sm)
            s, sm = self.fuse_s(s, sm, self.generator)
            p, pm = self.fuse_p(p, pm, self.generator)
        # one node left in each branch: the full hierarchy's vectors are not L2-normalised
        return (s * sm[..., None]).sum(1), (p * pm[..., None]).sum(1)

    def pair_distance(self, q_feats: torch.Tensor, g_feats: torch.Tensor) -> torch.Tensor:
        """Squared Euclidean distance of each aligned (query, photo) pair's embeddings: (P,)."""
        s, p = self.head(q_feats, g_feats)
        return (s - p).pow(2).sum(1)

    def training_loss(self, batch: dict) -> torch.Tensor:
        """Squared-distance triplet loss of a "triplets" batch with ``strokes``; images and boxes flip together."""
        if "strokes" not in batch:
            raise ValueError("HierarchySBIR trains on a view with strokes (batch['strokes'])")
        size = batch["sketch"].shape[-1]
        flip = batch.get("flip") if self.flip else None
        sk, ph, ng = batch["sketch"], batch["photo"], batch["neg"]
        # proposals are content-keyed on the unflipped photos; their boxes are then flipped
        pb, nb = self.photo_boxes(ph, flip), self.photo_boxes(ng, flip)
        sb = self.sketch_boxes(batch["strokes"], size, flip)
        if flip is not None:
            m = flip.view(-1, 1, 1, 1).to(sk.device)
            sk, ph, ng = (torch.where(m, t.flip(-1), t) for t in (sk, ph, ng))
        q = self._nodes(sk, sb)
        g = self._nodes(torch.cat([ph, ng]), pb + nb)
        b = len(q)
        return self.triplet_loss(q, g[:b], g[b:])

    def triplet_loss(self, q: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        """The paper's squared-distance triplet loss of raw nodes (B, K, channels + 1) of anchors,
        positives and negatives: mean max(0, margin + |S+ - P+|^2 - |S- - P-|^2)."""
        return F.relu(self.margin + self.pair_distance(q, pos) - self.pair_distance(q, neg)).mean()


def _flip_each(boxes: list, size: float, flip) -> list:
    if flip is None:
        return boxes
    return [flip_boxes(b, size).astype(np.float32) if bool(f) else b for b, f in zip(boxes, flip)]


def build_hierarchy(
    variant: str = "proposed",
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
    """A ``HierarchySBIR`` with a ``SmallCNN`` conv stack of ``depth`` stride-2 blocks (stride 2^depth)
    as backbone; ``variant`` names a Table 1 row (``VARIANTS``), ``overrides`` change its options."""
    from sbir_core.models.encoders import SmallCNN

    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {sorted(VARIANTS)}, got {variant!r}")
    opts = {"fusion_variant": "slide", **VARIANTS[variant], **overrides}
    cnn = SmallCNN(width=width, depth=depth, embed_dim=d, double_conv=False)
    channels = width * min(2 ** (depth - 1), 8)
    return HierarchySBIR(
        cnn.features, channels, 2**depth, d, d_h, max_nodes, margin=margin, flip=flip, roi_size=roi_size, **opts
    )


# ---------------------------------------------------------------------- the ci design: a frozen encoder's nodes


class EncoderTail(nn.Module):
    """The rest of a ``SmallCNN`` run on RoI-aligned crops: (K, C, r, r) -> its conv blocks, global max
    pool, its head and L2 norm -> (K, embed_dim), so that a node is the encoder's embedding of its region."""

    def __init__(self, blocks: nn.Module, head: nn.Linear):
        super().__init__()
        self.blocks, self.head = blocks, head

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head(self.blocks(crops).amax(dim=(2, 3))), dim=1)


def on_encoder(
    encoder: nn.Module,
    variant: str = "proposed",
    split: int = 2,
    roi_size: int = 8,
    d: int = 64,
    d_h: int = 32,
    max_nodes: int = 8,
    margin: float = 0.2,
    sketch_full_node: bool = True,
    identity_init: bool = True,
    **overrides,
) -> HierarchySBIR:
    """A ``HierarchySBIR`` on a trained, frozen ``SmallCNN`` (e.g. Triplet-SN's ``encoder``, deep-copied):
    its first ``split`` blocks give the feature map (stride 2^split), each node's RoI-aligned crop
    (``roi_size`` square) runs through the remaining blocks and the head (``EncoderTail``). Only the
    head of the hierarchy learns (node projection, co-attention, fusion): ``train_heads``."""
    import copy

    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {sorted(VARIANTS)}, got {variant!r}")
    enc = copy.deepcopy(encoder)
    if enc.config.double_conv:
        raise ValueError("on_encoder expects single-conv blocks (two layers per block)")
    if not 1 <= split < enc.config.depth:
        raise ValueError(f"split must lie in [1, {enc.config.depth - 1}], got {split}")
    layers = list(enc.features)
    backbone, rest = nn.Sequential(*layers[: 2 * split]), nn.Sequential(*layers[2 * split :])
    opts = {"fusion_variant": "slide", **VARIANTS[variant], **overrides}
    m = HierarchySBIR(
        backbone,
        enc.embed_dim,
        2**split,
        d,
        d_h,
        max_nodes,
        margin=margin,
        flip=False,
        roi_size=roi_size,
        trunk=EncoderTail(rest, enc.head),
        frozen=True,
        sketch_full_node=sketch_full_node,
        **opts,
    )
    if identity_init and d == enc.embed_dim:  # start from the encoder's own embedding space
        with torch.no_grad():
            m.node.weight.copy_(torch.eye(d))
            m.node.bias.zero_()
    return m


@torch.no_grad()
def cache_nodes(method: HierarchySBIR, view, batch: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """A frozen method's raw nodes of a view's queries and gallery, computed once:
    ((N, K, channels + 1), (M, K, channels + 1)), for ``train_heads`` and ``evaluate(features=...)``."""
    from sbir_core.evaluation import embed

    if not method.frozen:
        raise ValueError("cache_nodes needs a frozen backbone (on_encoder): trained nodes change every step")
    was = method.training
    method.eval()
    try:
        q = embed(method.embed_query, view.queries, batch, strokes=view.strokes)
        g = embed(method.embed_gallery, view.gallery, batch)
    finally:
        method.train(was)
    return q, g


def train_heads(
    method: HierarchySBIR,
    train,
    train_nodes,
    val=None,
    val_nodes=None,
    steps: int = 200,
    batch_size: int = 32,
    lr: float = 1e-3,
    seed: int = 0,
    eval_every: int = 100,
    ks=(1, 10),
):
    """Train the head of a frozen method on cached nodes with the paper's triplet loss; batches are
    ``train``'s triplet rule (a random other query's photo as the negative), Gumbel noise from a
    generator seeded by ``seed``. With ``val``, evaluate every ``eval_every`` steps and at the end and
    keep the state of the best val Acc@ks[0] (earliest on ties). Returns the history DataFrame
    (step, loss, val/acc_at_K) with ``attrs["selected_step"]``."""
    import pandas as pd

    from sbir_core.evaluation import evaluate

    if not method.frozen:
        raise ValueError("train_heads trains the head of a frozen method (on_encoder)")
    qn, gn = train_nodes
    gen = torch.Generator().manual_seed(seed)
    method.generator = torch.Generator().manual_seed(seed + 1)
    params = [p for p in method.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    target = train.target
    rows, best, best_state, best_step = [], -1.0, None, 0
    losses = []
    method.train()
    for step in range(1, steps + 1):
        idx = torch.randperm(len(train), generator=gen)[:batch_size]
        neg = target[train.other_queries(idx, gen)]
        loss = method.triplet_loss(qn[idx], gn[target[idx]], gn[neg])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        method.sync_gradients()
        opt.step()
        losses.append(float(loss.detach()))
        if val is not None and (step % eval_every == 0 or step == steps):
            ev = evaluate(method, val, ks=ks, features=val_nodes)
            row = {
                "step": step,
                "loss": float(np.mean(losses[-eval_every:])),
                **{f"val/{k}": v for k, v in ev.metrics.items()},
            }
            rows.append(row)
            score = row[f"val/acc_at_{ks[0]}"]
            if score > best:
                best, best_step = score, step
                best_state = {k: v.detach().clone() for k, v in method.state_dict().items()}
            method.train()
    if val is None:
        rows.append({"step": steps, "loss": float(np.mean(losses[-eval_every:]))})
        best_step = steps
    else:
        method.load_state_dict(best_state)
    method.generator = None
    method.eval()
    hist = pd.DataFrame(rows)
    hist.attrs["selected_step"] = best_step
    return hist


# ---------------------------------------------------------------------- sketches with fewer strokes


def restroke(view, strokes: list, line_width: float = 1.5):
    """The same retrieval problem with each query redrawn from ``strokes`` (one array per query, e.g.
    ``synthetic.detail_subset`` or ``strokes.truncate``) at the view's size: a new ``RetrievalView``."""
    from sbir_core.data.views import RetrievalView, sketch_tensor

    if len(strokes) != len(view):
        raise ValueError(f"{len(strokes)} stroke arrays for {len(view)} queries")
    size = view.queries.shape[-1]
    queries = sketch_tensor(S.rasterise_many(strokes, size, line_width))
    if view.queries.shape[1] != 1:
        queries = queries.expand(-1, view.queries.shape[1], -1, -1)
    return RetrievalView(
        view.name,
        queries,
        view.gallery,
        view.target,
        view.table,
        view.gallery_table,
        view.group,
        list(strokes),
        view.dropped,
    )


@torch.no_grad()
def merge_trace(method: HierarchySBIR, q: torch.Tensor, g: torch.Tensor) -> dict:
    """What the head does with one pair of raw nodes (K, channels + 1) at test (no noise): the first
    level's sketch-to-photo attention (ks, kp) (None without cross-modal co-attention) and, per level,
    the slots each branch merged ([(a, b), ...]; the merged node stays in slot a). For the figure."""
    was = method.training
    method.eval()
    try:
        (s, sm), (p, pm) = method.project(q[None]), method.project(g[None])
        out = {
            "attention": None,
            "sketch_merges": [],
            "photo_merges": [],
            "n_sketch": int(sm.sum()),
            "n_photo": int(pm.sum()),
        }
        if method.coattn_kind in ("slide", "code"):
            co = method.co_s
            a = co.w_x(s) @ co.w_y(p).transpose(1, 2) / math.sqrt(co.d_h)
            out["attention"] = _masked_softmax(a, pm[:, None, :])[0, : out["n_sketch"], : out["n_photo"]].numpy()
        if method.fusion_kind != "hierarchy":
            return out
        for _ in range(method.max_nodes - 1):
            if not bool((sm.sum(1) > 1).any() | (pm.sum(1) > 1).any()):
                break
            if method.coattn_kind != "none":
                s, p = method.co_s(s, sm, p, pm), method.co_p(p, pm, s, sm)
            for key, fuse, x, m in (("sketch_merges", method.fuse_s, s, sm), ("photo_merges", method.fuse_p, p, pm)):
                gone = m.clone()
                new, m2 = fuse(x, m)
                dropped = (gone & ~m2)[0].nonzero().flatten().tolist()
                if dropped:
                    changed = ((new - x).abs().sum(-1)[0] > 0) & m2[0]
                    kept = changed.nonzero().flatten().tolist()
                    out[key].append((kept[0] if kept else -1, dropped[0]))
                if key == "sketch_merges":
                    s, sm = new, m2
                else:
                    p, pm = new, m2
        return out
    finally:
        method.train(was)
