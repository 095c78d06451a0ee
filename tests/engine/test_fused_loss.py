"""The fused output layer + cross-entropy (engine.model.linear_cross_entropy) is the plain maths:
loss and every gradient match ``F.cross_entropy(F.linear(...))`` within 1e-5 relative, fp32."""

import pytest
import torch
import torch.nn.functional as F

from engine.config import ModelConfig
from engine.model import OneLayerTransformer, linear_cross_entropy


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("chunk", [7, 64, 1000])         # a ragged last chunk, several, one for all
def test_linear_cross_entropy_matches_plain(bias, chunk):
    g = torch.Generator().manual_seed(0)
    N, C, V = 300, 24, 97
    h = torch.randn(N, C, generator=g, requires_grad=True)
    W = (torch.randn(V, C, generator=g) * 0.5).requires_grad_()
    b = torch.randn(V, generator=g).requires_grad_() if bias else None
    y = torch.randint(0, V, (N,), generator=g)
    y[:5] = y[0]                                           # repeated targets: scatter_add, not set
    inputs = [t for t in (h, W, b) if t is not None]

    plain = F.cross_entropy(F.linear(h, W, b), y)
    fused = linear_cross_entropy(h, W, b, y, chunk=chunk)
    assert fused.grad_fn is not None and type(fused.grad_fn).__name__ != "NllLossBackward0"
    assert abs(fused.item() - plain.item()) <= 1e-5 * abs(plain.item())
    # a non-unit upstream gradient is passed through
    for gp, gf in zip(torch.autograd.grad(3.0 * plain, inputs), torch.autograd.grad(3.0 * fused, inputs)):
        assert _rel(gf, gp) <= 1e-5


def test_model_loss_fused_equals_plain_with_all_parameter_gradients():
    cfg = ModelConfig(vocab_size=300, n_ctx=16, d_model=32, n_heads=2, d_mlp=64, unembed_bias=True)
    torch.manual_seed(0)
    model = OneLayerTransformer(cfg)
    idx = torch.randint(0, cfg.vocab_size, (5, cfg.n_ctx))
    tgt = torch.randint(0, cfg.vocab_size, (5, cfg.n_ctx))
    params = list(model.parameters())
    lp = model.loss(idx, tgt, fused=False)
    gp = torch.autograd.grad(lp, params)
    lf = model.loss(idx, tgt)
    gf = torch.autograd.grad(lf, params)
    assert abs(lf.item() - lp.item()) <= 1e-5 * lp.item()
    for (name, _), a, b in zip(model.named_parameters(), gf, gp):
        assert _rel(a, b) <= 1e-5, name


def test_without_grad_or_under_autocast_it_is_the_plain_expression():
    g = torch.Generator().manual_seed(1)
    h, W = torch.randn(50, 8, generator=g), torch.randn(40, 8, generator=g)
    y = torch.randint(0, 40, (50,), generator=g)
    with torch.no_grad():
        out = linear_cross_entropy(h, W, None, y, chunk=8)
    assert torch.allclose(out, F.cross_entropy(h @ W.T, y), rtol=1e-6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = linear_cross_entropy(h.requires_grad_(), W, None, y)
    assert type(out.grad_fn).__name__ == "NllLossBackward0"
