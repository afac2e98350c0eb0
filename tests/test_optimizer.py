"""Parameter groups of construct_optimizer in both BN grouping modes, and optimizer settings."""

import pytest
import torch
import torch.nn as nn

from vov3d.config.defaults import get_cfg
from vov3d.engine.solver import construct_optimizer, set_lr, split_bn_params


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(3, 4, 1)
        self.bn = nn.BatchNorm3d(4)  # named "bn": both rules put it in the BN group
        # A D(2+1)D-like unit whose BN is named "a.1": only the module rule sees it.
        self.a = nn.Sequential(nn.Conv3d(4, 4, 1, bias=False), nn.BatchNorm3d(4))
        self.bnorm_proj = nn.Linear(4, 2)  # a non-BN layer whose name contains "bn"
        self.frozen = nn.Linear(2, 2)
        self.frozen.weight.requires_grad_(False)
        self.frozen.bias.requires_grad_(False)


def _ids(params):
    return {id(p) for p in params}


def test_module_grouping_default():
    cfg = get_cfg()
    m = Net()
    bn, other, names = split_bn_params(cfg, m)
    assert sorted(names) == ["a.1.bias", "a.1.weight", "bn.bias", "bn.weight"]
    assert _ids(other) == _ids([m.conv.weight, m.conv.bias, m.a[0].weight, m.bnorm_proj.weight, m.bnorm_proj.bias])


def test_official_name_grouping():
    cfg = get_cfg()
    cfg.BN.OFFICIAL_NAME_GROUPING = True
    m = Net()
    bn, other, names = split_bn_params(cfg, m)
    assert sorted(names) == ["bn.bias", "bn.weight", "bnorm_proj.bias", "bnorm_proj.weight"]
    assert id(m.a[1].weight) in _ids(other)


@pytest.mark.parametrize("official", [False, True])
def test_groups_weight_decay_and_sgd_settings(official):
    cfg = get_cfg()
    cfg.BN.OFFICIAL_NAME_GROUPING = official
    cfg.BN.WEIGHT_DECAY = 0.0
    cfg.SOLVER.WEIGHT_DECAY = 5e-5
    cfg.SOLVER.NESTEROV = True
    cfg.SOLVER.MOMENTUM = 0.9
    m = Net()
    opt = construct_optimizer(cfg, m)
    assert isinstance(opt, torch.optim.SGD)
    bn_group, other_group = opt.param_groups
    assert bn_group["weight_decay"] == 0.0 and other_group["weight_decay"] == 5e-5
    assert other_group["nesterov"] and other_group["momentum"] == 0.9
    n_trainable = sum(1 for p in m.parameters() if p.requires_grad)
    assert len(bn_group["params"]) + len(other_group["params"]) == n_trainable
    set_lr(opt, 0.123)
    assert all(g["lr"] == 0.123 for g in opt.param_groups)


@pytest.mark.parametrize("method,cls", [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)])
def test_adam_variants(method, cls):
    cfg = get_cfg()
    cfg.SOLVER.OPTIMIZING_METHOD = method
    assert isinstance(construct_optimizer(cfg, Net()), cls)


def test_unknown_method():
    cfg = get_cfg()
    cfg.SOLVER.OPTIMIZING_METHOD = "lamb"
    with pytest.raises(ValueError, match="OPTIMIZING_METHOD"):
        construct_optimizer(cfg, Net())


def test_sync_batchnorm_is_grouped_as_bn():
    cfg = get_cfg()
    m = nn.SyncBatchNorm.convert_sync_batchnorm(Net())
    _, _, names = split_bn_params(cfg, m)
    assert "a.1.weight" in names


@pytest.mark.parametrize("method", ["sgd", "adamw"])
def test_fused_update_is_the_loop_update_and_survives_loading_state(method):
    """SOLVER.FUSED_UPDATE: one fused step where torch has one for the parameters' device (CPU here),
    the same parameters after steps as torch's per-parameter loop, the same state_dict format, and
    the choice kept when a checkpoint made with the loop (a PySlowFast one) is loaded."""
    torch.manual_seed(0)
    start, runs = Net().state_dict(), {}
    for fused in (False, True):
        cfg = get_cfg()
        cfg.SOLVER.OPTIMIZING_METHOD = method
        cfg.SOLVER.FUSED_UPDATE = fused
        cfg.SOLVER.WEIGHT_DECAY = 1e-3
        m = Net()
        m.load_state_dict(start)
        opt = construct_optimizer(cfg, m)
        assert all(bool(g.get("fused")) == fused for g in opt.param_groups)
        g = torch.Generator().manual_seed(1)
        for _ in range(3):
            for p in m.parameters():
                p.grad = torch.randn(p.shape, generator=g) if p.requires_grad else None
            opt.step()
        runs[fused] = (m, opt)
    (m0, o0), (m1, o1) = runs[False], runs[True]
    for p0, p1 in zip(m0.parameters(), m1.parameters()):
        assert torch.allclose(p0, p1, rtol=0, atol=1e-6)
    assert o0.state_dict()["state"].keys() == o1.state_dict()["state"].keys()
    o1.load_state_dict(o0.state_dict())  # the loop's state, param groups included
    assert all(g["fused"] for g in o1.param_groups)
    o1.step()
