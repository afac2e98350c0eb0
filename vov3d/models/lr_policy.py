"""Learning-rate schedules with PySlowFast's formulas, evaluated at fractional epochs.

The train loop calls ``get_lr_at_epoch(cfg, cur_epoch + cur_iter / iters_per_epoch)`` before every
optimizer step, so the learning rate of each iteration equals PySlowFast's for the same config.
"""

import math


def get_lr_at_epoch(cfg, cur_epoch):
    """Returns the learning rate at (fractional) epoch `cur_epoch`, linear warm-up included."""
    policy = get_lr_func(cfg.SOLVER.LR_POLICY)
    lr = policy(cfg, cur_epoch)
    if cur_epoch < cfg.SOLVER.WARMUP_EPOCHS:
        lr_start = cfg.SOLVER.WARMUP_START_LR
        lr_end = policy(cfg, cfg.SOLVER.WARMUP_EPOCHS)
        alpha = (lr_end - lr_start) / cfg.SOLVER.WARMUP_EPOCHS
        lr = cur_epoch * alpha + lr_start
    return lr


def lr_func_cosine(cfg, cur_epoch):
    """Returns the half-cosine learning rate from BASE_LR at epoch 0 to COSINE_END_LR at MAX_EPOCH."""
    offset = cfg.SOLVER.WARMUP_EPOCHS if cfg.SOLVER.get("COSINE_AFTER_WARMUP", False) else 0.0
    return cfg.SOLVER.COSINE_END_LR + (cfg.SOLVER.BASE_LR - cfg.SOLVER.COSINE_END_LR) * (
        math.cos(math.pi * (cur_epoch - offset) / (cfg.SOLVER.MAX_EPOCH - offset)) + 1.0
    ) * 0.5


def lr_func_steps_with_relative_lrs(cfg, cur_epoch):
    """Returns LRS[i] * BASE_LR for the step interval i that contains `cur_epoch`."""
    return cfg.SOLVER.LRS[get_step_index(cfg, cur_epoch)] * cfg.SOLVER.BASE_LR


def lr_func_constant(cfg, cur_epoch):
    """Returns BASE_LR."""
    return cfg.SOLVER.BASE_LR


def get_step_index(cfg, cur_epoch):
    """Returns the index of the last SOLVER.STEPS boundary <= `cur_epoch` (MAX_EPOCH closes the list).

    As in PySlowFast, LRS may be longer than STEPS (its tail is never reached); config.validate checks
    that STEPS start at 0 and that LRS has a value for each step."""
    steps = list(cfg.SOLVER.STEPS) + [cfg.SOLVER.MAX_EPOCH]
    for ind, step in enumerate(steps):
        if cur_epoch < step:
            break
    return ind - 1


_POLICIES = {
    "cosine": lr_func_cosine,
    "steps_with_relative_lrs": lr_func_steps_with_relative_lrs,
    "constant": lr_func_constant,
}


def get_lr_func(lr_policy):
    """Returns the schedule function named by SOLVER.LR_POLICY."""
    try:
        return _POLICIES[lr_policy]
    except KeyError:
        raise ValueError(
            f"SOLVER.LR_POLICY {lr_policy!r} is not supported; choose one of {', '.join(_POLICIES)}"
        ) from None
