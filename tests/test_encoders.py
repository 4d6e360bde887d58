"""Encoders: shapes, unit norm, gradient flow, FLOP counts, the registry's clear failures."""

import pytest
import torch

from sbir_core.models.encoders import (
    CNNConfig,
    Dropout,
    EncoderUnavailable,
    SmallCNN,
    build_encoder,
    flops_per_image,
    layer_macs,
)


def test_small_cnn_shapes_norm_and_gradients():
    torch.manual_seed(0)
    enc = build_encoder("cnn", width=8, depth=3, embed_dim=16)
    for channels in (1, 3):
        x = torch.randn(5, channels, 32, 32, requires_grad=True)
        z = enc(x)
        assert z.shape == (5, 16) and z.dtype == torch.float32
        assert torch.allclose(z.norm(dim=1), torch.ones(5), atol=1e-5)
        z[:, 0].sum().backward()
        assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in enc.parameters())


def test_sketch_is_a_grey_photo():
    # one encoder for both modalities: a 1-channel sketch equals the same image repeated to RGB
    enc = SmallCNN(CNNConfig(width=4, depth=2, embed_dim=8))
    x = torch.rand(3, 1, 16, 16)
    assert torch.allclose(enc(x), enc(x.repeat(1, 3, 1, 1)), atol=1e-6)


def test_bad_input_and_config():
    enc = SmallCNN(width=4, depth=2, embed_dim=8)
    with pytest.raises(ValueError, match="channels"):
        enc(torch.rand(2, 2, 16, 16))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        enc(torch.rand(2, 16, 16))
    with pytest.raises(ValueError, match="width"):
        CNNConfig(width=0)


def test_flops_match_a_hand_count():
    enc = SmallCNN(CNNConfig(width=8, depth=2, embed_dim=10, double_conv=False))
    # conv1 3->8 stride 2, 16 -> 8 px; conv2 8->16 stride 2, 8 -> 4 px; linear 16 -> 10
    macs = [8 * 8 * 8 * 3 * 9, 4 * 4 * 16 * 8 * 9, 16 * 10]
    assert [m for _, m in layer_macs(enc, 16)] == macs
    assert flops_per_image(enc, 16) == 2 * sum(macs)
    assert flops_per_image(enc, 16, training=True) == 2 * sum(macs) * 2 + 2 * sum(macs[1:])


def test_flops_match_a_profiler_count():
    # torch's own counter (matmul/conv FLOPs) agrees with the analytic forward count
    from torch.utils.flop_counter import FlopCounterMode

    enc = SmallCNN(CNNConfig(width=8, depth=3, embed_dim=16))
    with FlopCounterMode(display=False) as counter:
        enc(torch.rand(1, 3, 32, 32))
    assert counter.get_total_flops() == flops_per_image(enc, 32)


def test_paper_backbones_fail_with_a_clear_message(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_torchvision(name, *args, **kwargs):
        if name.startswith("torchvision"):
            raise ImportError("No module named 'torchvision'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torchvision)
    for name in ("vgg16", "inceptionv3"):
        with pytest.raises(EncoderUnavailable) as err:
            build_encoder(name)
        msg = str(err.value)
        assert name in msg and "torchvision" in msg and "install" in msg and "weights" in msg


def test_unknown_encoder_names_the_known_ones():
    with pytest.raises(EncoderUnavailable, match="cnn, mlp, trunk_mlp, vgg16, inceptionv3"):
        build_encoder("resnet9000")


def test_documented_flops_of_the_ci_encoder():
    # the figures written in flops_per_image's docstring
    enc = SmallCNN(CNNConfig())
    assert flops_per_image(enc, 48) == 59_420_672
    assert flops_per_image(enc, 48, training=True) == 177_266_688
    assert sum(p.numel() for p in enc.parameters()) == 1_188_704


def test_pretrained_backbones_get_imagenet_input():
    import torch

    from sbir_core.models.encoders import IMAGENET_MEAN, IMAGENET_STD, _PooledBackbone, imagenet_input

    blank_sketch = torch.zeros(1, 1, 4, 4)  # no ink -> white page
    black_photo = -torch.ones(1, 3, 4, 4)  # darkest photo -> 0
    white = imagenet_input(blank_sketch)[0, :, 0, 0]
    black = imagenet_input(black_photo)[0, :, 0, 0]
    for c in range(3):
        assert white[c].item() == pytest.approx((1 - IMAGENET_MEAN[c]) / IMAGENET_STD[c], rel=1e-6)
        assert black[c].item() == pytest.approx(-IMAGENET_MEAN[c] / IMAGENET_STD[c], rel=1e-6)
    seen = []

    class Spy(torch.nn.Module):
        def forward(self, x):
            seen.append(x)
            return x

    out = _PooledBackbone(Spy(), 3)(blank_sketch)
    assert torch.allclose(seen[0], imagenet_input(blank_sketch)) and out.shape == (1, 3)
    with pytest.raises(ValueError):
        imagenet_input(torch.zeros(1, 2, 4, 4))


def test_dropout_keeps_each_unit_with_probability_one_minus_p_and_scales_it():
    """The head's dropout (uniform draws compared with p, faster than nn.Dropout's Bernoulli draws on the CPU):
    in training each unit is zeroed with probability p and the rest scaled by 1 / (1 - p), so the mean is kept, and
    the gradient passes exactly through the kept units; in eval mode, and at p = 0, it is the identity."""
    torch.manual_seed(0)
    x = torch.full((400, 500), 2.0, requires_grad=True)
    for p in (0.1, 0.5, 0.8):
        drop = Dropout(p).train()
        y = drop(x)
        kept = y != 0
        assert abs(kept.float().mean().item() - (1 - p)) < 0.01  # 200,000 draws: a standard error of ~0.001
        assert torch.allclose(y[kept], torch.tensor(2.0 / (1 - p)))
        y.sum().backward()
        assert torch.allclose(x.grad, kept.float() / (1 - p))
        x.grad = None
        assert torch.equal(drop.eval()(x), x)
    assert torch.equal(Dropout(0.0).train()(x), x)
    assert not Dropout(1.0).train()(x).any()
    a, b = Dropout(0.5).train(), Dropout(0.5).train()
    torch.manual_seed(3)
    first = a(x)
    torch.manual_seed(3)
    assert torch.equal(first, b(x))  # one seed, one mask
