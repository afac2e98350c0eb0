"""Training recipes with PySlowFast's keys: gradient clipping, mixup / CutMix, RandAugment and random
erasing, activation checkpointing, multigrid. Each test checks the recipe's effect, not only that it runs."""

import pytest
import torch
import torch.nn as nn

from vov3d.config import get_cfg
from vov3d.config.merge import set_key
from vov3d.engine import solver

pytestmark = pytest.mark.usefixtures("one_thread")


def _cfg(*opts):
    cfg = get_cfg()
    for key, value in zip(opts[::2], opts[1::2]):
        set_key(cfg, key, value, "test")
    return cfg


# ------------------------------------------------------------------------------------------------ #
# Gradient clipping
# ------------------------------------------------------------------------------------------------ #


def _model_with_grads(scale, scaler=None):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = model(torch.randn(4, 6)).pow(2).sum() * scale
    (scaler.scale(loss) if scaler is not None else loss).backward()
    return model, opt


def _norm(model):
    return torch.nn.utils.get_total_norm([p.grad for p in model.parameters()]).item()


def test_clip_grad_l2norm_is_amp_aware():
    ref, _ = _model_with_grads(100.0)
    true_norm = _norm(ref)
    assert true_norm > 2.0
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    model, opt = _model_with_grads(100.0, scaler)
    assert _norm(model) == pytest.approx(1024.0 * true_norm, rel=1e-4)  # loss-scaled gradients
    cfg = _cfg("SOLVER.CLIP_GRAD_L2NORM", "2.0")
    before = solver.clip_gradients(cfg, opt, scaler)
    assert before.item() == pytest.approx(true_norm, rel=1e-4)  # measured on unscaled gradients
    assert _norm(model) == pytest.approx(2.0, rel=1e-4)  # clipped norm of the true gradients
    w = model[0].weight.detach().clone()
    g = model[0].weight.grad.clone()
    scaler.step(opt)  # must not unscale a second time
    assert torch.allclose(model[0].weight, w - 0.1 * g)


def test_clip_grad_value_and_off():
    model, opt = _model_with_grads(100.0)
    assert solver.clip_gradients(_cfg(), opt) is None  # default: off, gradients untouched
    assert max(p.grad.abs().max().item() for p in model.parameters()) > 0.5
    solver.clip_gradients(_cfg("SOLVER.CLIP_GRAD_VAL", "0.5", "SOLVER.CLIP_GRAD_L2NORM", "1e-6"), opt)
    # VAL wins over L2NORM, as in PySlowFast: elements clamped, the norm stays above 1e-6.
    assert max(p.grad.abs().max().item() for p in model.parameters()) == pytest.approx(0.5)
    assert _norm(model) > 0.5


def test_clip_keys_load_from_pyslowfast_yaml(tmp_path):
    from vov3d.config.load import load_config
    from vov3d.config.merge import ConfigError

    y = tmp_path / "c.yaml"
    y.write_text("SOLVER:\n  CLIP_GRAD_L2NORM: 1\n  CLIP_GRAD_VAL: null\n")
    cfg = load_config(str(y))
    assert cfg.SOLVER.CLIP_GRAD_L2NORM == 1.0 and cfg.SOLVER.CLIP_GRAD_VAL is None
    with pytest.raises(ConfigError, match="SOLVER.CLIP_GRAD_VAL"):
        load_config(str(y), opts=["SOLVER.CLIP_GRAD_VAL", "big"])
    with pytest.raises(ConfigError, match="SOLVER.CLIP_GRAD_L2NORM"):
        load_config(str(y), opts=["SOLVER.CLIP_GRAD_L2NORM", "-1"])
