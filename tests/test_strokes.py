"""Property and edge-case tests of the canonical stroke format."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from sbir_core import strokes as S

coords = st.floats(-100, 400, allow_nan=False, allow_infinity=False)


@st.composite
def sketches(draw):
    n = draw(st.integers(1, 40))
    xy = draw(arrays(np.float64, (n, 2), elements=coords))
    pen = draw(arrays(np.float64, (n,), elements=st.sampled_from([0.0, 1.0])))
    return np.column_stack([xy, pen])


@settings(max_examples=60, deadline=None)
@given(sketches())
def test_split_join_roundtrip(sk):
    arr = S.check_strokes(sk)
    parts = S.split_strokes(arr)
    assert sum(len(p) for p in parts) == len(arr)
    assert len(parts) == S.n_strokes(arr) == int(arr[:, 2].sum())
    np.testing.assert_array_equal(S.join_strokes(parts), arr)


@settings(max_examples=60, deadline=None)
@given(sketches(), st.sampled_from([8, 33, 64]), st.floats(0.5, 4))
def test_rasterise_range_shape_and_ink(sk, size, width):
    img = S.rasterise(sk, size, width)
    assert img.shape == (size, size) and img.dtype == np.float32
    assert img.min() >= 0 and img.max() <= 1
    inside = ((sk[:, :2] >= 0) & (sk[:, :2] < S.CANVAS)).all(1)
    if inside.any():
        assert img.min() < 1  # a point on the canvas leaves ink


@settings(max_examples=40, deadline=None)
@given(sketches())
def test_boxes_contain_their_strokes(sk):
    boxes = S.stroke_boxes(sk)
    for box, part in zip(boxes, S.split_strokes(sk)):
        assert (part >= box[:2]).all() and (part <= box[2:]).all()


@settings(max_examples=40, deadline=None)
@given(sketches(), st.floats(0.01, 1.0))
def test_truncate_keeps_a_prefix_of_strokes(sk, frac):
    parts = S.split_strokes(sk)
    cut = S.split_strokes(S.truncate(sk, frac))
    assert 1 <= len(cut) <= len(parts)
    assert len(cut) == max(1, int(np.ceil(frac * len(parts) - 1e-9)))
    for a, b in zip(cut, parts):
        np.testing.assert_array_equal(a, b)


@settings(max_examples=40, deadline=None)
@given(sketches())
def test_stroke3_roundtrip(sk):
    arr = S.check_strokes(sk)
    back = np.column_stack([np.cumsum(S.to_stroke3(arr)[:, :2], 0), arr[:, 2]])
    np.testing.assert_allclose(back, arr, atol=1e-8)


@settings(max_examples=40, deadline=None)
@given(sketches())
def test_normalise_fits_canvas(sk):
    out = S.normalise(sk, margin=0.1)
    extent = out[:, :2].max(0) - out[:, :2].min(0)
    assert (out[:, :2] >= 25.6 - 1e-6).all() and (out[:, :2] <= 230.4 + 1e-6).all()
    if extent.max() > 0:
        assert extent.max() == pytest.approx(0.8 * 256)


def test_last_pen_flag_is_forced():
    assert S.check_strokes([[1, 2, 0], [3, 4, 0]])[-1, 2] == 1


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros((3, 2)), "shape"),
        (np.zeros((0, 3)), "at least one point"),
        ([[0, 0, 1], [np.nan, 1, 1]], "NaN"),
        ([[0, 0, 2]], "pen flags"),
        ("abc", "numeric|shape"),
    ],
)
def test_bad_strokes_get_clear_errors(bad, match):
    with pytest.raises(S.StrokeError, match=match):
        S.check_strokes(bad)


def test_degenerate_sketches_render():
    dot = S.rasterise(np.array([[128, 128, 1]]), 32, 2)
    assert dot.min() < 0.5 and dot[0, 0] == 1
    zero_len = S.rasterise(np.array([[50, 50, 0], [50, 50, 1], [10, 10, 1]]), 32, 2)
    assert (zero_len < 1).sum() > 0
    outside = S.rasterise(np.array([[-50, -50, 0], [-10, -20, 1]]), 32, 2)
    assert (outside == 1).all()


def test_rasterise_draws_where_the_line_is():
    img = S.rasterise(np.array([[0, 128, 0], [255, 128, 1]]), 64, 2)
    assert img[32].mean() < 0.5 and img[5].min() == 1.0
    assert ((img > 0.05) & (img < 0.95)).any()


def test_rasterise_rejects_bad_sizes():
    with pytest.raises(ValueError):
        S.rasterise(np.array([[1, 1, 1]]), 0)
    with pytest.raises(ValueError):
        S.rasterise(np.array([[1, 1, 1]]), 8, 0)


def test_quickdraw_conversion():
    drawing = [[[0, 10, 20], [0, 5, 0], [0, 1, 2]], [[5], [30]]]
    arr = S.from_quickdraw(drawing)
    assert arr.shape == (4, 3) and S.n_strokes(arr) == 2
    assert arr[:, :2].min() >= 0 and arr[:, :2].max() <= 256
    with pytest.raises(S.StrokeError):
        S.from_quickdraw([[[0, 1], [0]]])
    with pytest.raises(S.StrokeError):
        S.from_quickdraw([])


def test_from_stroke3_matches_manual_sum():
    s3 = np.array([[10, 10, 0], [5, 0, 1], [0, 20, 0], [3, 3, 1]], float)
    arr = S.from_stroke3(s3, margin=0.0)
    assert S.n_strokes(arr) == 2
    with pytest.raises(S.StrokeError):
        S.from_stroke3(np.zeros((3, 2)))


def test_sketch_stats_on_known_sketch():
    sk = np.array([[0, 0, 0], [3, 4, 1], [3, 14, 0], [3, 24, 1]], float)
    st_ = S.sketch_stats(sk)
    assert st_["strokes"] == 2 and st_["points"] == 4
    assert st_["length"] == pytest.approx(15.0)
    assert st_["gap"] == pytest.approx(10.0)
    assert st_["extent"] == pytest.approx(24.0)
