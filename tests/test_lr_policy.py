"""The learning rate of every iteration equals PySlowFast's formula for the same config."""

import math

import pytest

from vov3d.config.defaults import get_cfg
from vov3d.engine import solver as optim
from vov3d.utils.parser import build_parser, config_from_args


def pyslowfast_lr(base_lr, policy, e, max_epoch, warmup_epochs, warmup_start, end_lr=0.0, steps=(), lrs=()):
    """PySlowFast slowfast/utils/lr_policy.py, written out independently."""

    def pol(t):
        if policy == "cosine":
            return end_lr + (base_lr - end_lr) * (math.cos(math.pi * t / max_epoch) + 1.0) * 0.5
        st = list(steps) + [max_epoch]
        for ind, s in enumerate(st):
            if t < s:
                break
        return lrs[ind - 1] * base_lr

    lr = pol(e)
    if e < warmup_epochs:
        lr = e * (pol(warmup_epochs) - warmup_start) / warmup_epochs + warmup_start
    return lr


def _cfg(**solver):
    cfg = get_cfg()
    for k, v in solver.items():
        cfg.SOLVER[k] = v
    return cfg


@pytest.mark.parametrize("warmup", [0.0, 1.0, 3.5])
@pytest.mark.parametrize("end_lr", [0.0, 1e-4])
def test_cosine_every_iteration(warmup, end_lr):
    cfg = _cfg(BASE_LR=0.1, LR_POLICY="cosine", MAX_EPOCH=10, WARMUP_EPOCHS=warmup, WARMUP_START_LR=0.01,
               COSINE_END_LR=end_lr)
    iters = 7
    for epoch in range(10):
        for it in range(iters):
            e = epoch + float(it) / iters
            want = pyslowfast_lr(0.1, "cosine", e, 10, warmup, 0.01, end_lr)
            assert optim.get_epoch_lr(e, cfg) == pytest.approx(want, rel=1e-12, abs=1e-15)
    assert optim.get_lr_at_epoch(cfg, 0.0) == pytest.approx(0.01 if warmup else 0.1)


def test_steps_with_relative_lrs():
    steps, lrs = [0, 4, 8], [1.0, 0.1, 0.01]
    cfg = _cfg(BASE_LR=0.2, LR_POLICY="steps_with_relative_lrs", MAX_EPOCH=12, STEPS=steps, LRS=lrs,
               WARMUP_EPOCHS=2.0, WARMUP_START_LR=0.02)
    for i in range(12 * 5):
        e = i / 5
        want = pyslowfast_lr(0.2, "steps", e, 12, 2.0, 0.02, steps=steps, lrs=lrs)
        assert optim.get_lr_at_epoch(cfg, e) == pytest.approx(want, rel=1e-12)
    assert optim.get_lr_at_epoch(cfg, 4.0) == pytest.approx(0.02)
    assert optim.get_lr_at_epoch(cfg, 11.99) == pytest.approx(0.002)


def test_official_ssv1_warmup_values():
    # VoV3D SSv1 recipe: BASE_LR 0.1, 1 warm-up epoch from 0.01, cosine over 100 epochs.
    cfg = _cfg(BASE_LR=0.1, LR_POLICY="cosine", MAX_EPOCH=100, WARMUP_EPOCHS=1.0, WARMUP_START_LR=0.01)
    end = 0.1 * (math.cos(math.pi / 100) + 1) * 0.5
    assert optim.get_lr_at_epoch(cfg, 0.5) == pytest.approx(0.01 + 0.5 * (end - 0.01))
    assert optim.get_lr_at_epoch(cfg, 50.0) == pytest.approx(0.05)


def test_base_lr_scale_num_shards_applied_once_at_load():
    args = build_parser().parse_args(["--num_shards", "4", "--shard_id", "1"])
    args.opts = ["NUM_GPUS", "0", "SOLVER.BASE_LR_SCALE_NUM_SHARDS", "True", "SOLVER.BASE_LR", "0.1",
                 "SOLVER.WARMUP_START_LR", "0.01", "SOLVER.COSINE_END_LR", "0.001", "TRAIN.BATCH_SIZE", "8",
                 "TEST.BATCH_SIZE", "4"]
    cfg = config_from_args(args)
    assert (cfg.NUM_SHARDS, cfg.SHARD_ID) == (4, 1)
    assert cfg.SOLVER.BASE_LR == pytest.approx(0.4)
    assert cfg.SOLVER.WARMUP_START_LR == pytest.approx(0.04)
    assert cfg.SOLVER.COSINE_END_LR == pytest.approx(0.004)
    args.opts[3] = "False"
    assert config_from_args(args).SOLVER.BASE_LR == pytest.approx(0.1)


def test_unknown_policy_is_a_clear_error():
    with pytest.raises(ValueError, match="LR_POLICY"):
        optim.get_lr_at_epoch(_cfg(LR_POLICY="exp"), 1.0)
