"""The solver: optimizer construction (PySlowFast param groups) and the learning-rate policy.

Schedules follow PySlowFast's formulas, evaluated at fractional epochs: the train loop calls
``get_epoch_lr(cur_epoch + cur_iter / iters_per_epoch, cfg)`` before every optimizer step, so the
learning rate of each iteration equals PySlowFast's for the same config.
"""

import logging
import math

import torch
import torch.nn as nn

logger = logging.getLogger(__name__)


def split_bn_params(cfg, model):
    """Returns (bn_params, other_params, bn_names) of the trainable parameters of `model`.

    BN.OFFICIAL_NAME_GROUPING False: every parameter of a BatchNorm module (any _NormBase, incl.
    SyncBatchNorm) is a BN parameter. True: the official VoV3D rule, a parameter is a BN parameter
    when its name contains "bn".
    """
    bn_params, other_params, bn_names = [], [], []
    if cfg.BN.OFFICIAL_NAME_GROUPING:
        for name, p in model.named_parameters():
            if not p.requires_grad:
                continue
            if "bn" in name:
                bn_params.append(p)
                bn_names.append(name)
            else:
                other_params.append(p)
        return bn_params, other_params, bn_names
    seen = set()
    for mname, m in model.named_modules():
        is_bn = isinstance(m, nn.modules.batchnorm._NormBase)
        for pname, p in m.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            if is_bn:
                bn_params.append(p)
                bn_names.append(f"{mname}.{pname}" if mname else pname)
            else:
                other_params.append(p)
    return bn_params, other_params, bn_names


try:  # the device types torch's fused optimizer steps run on (a private helper of torch.optim)
    from torch.utils._foreach_utils import _get_fused_kernels_supported_devices
except ImportError:  # pragma: no cover - moved in some torch release: CUDA, which has had them longest
    def _get_fused_kernels_supported_devices():
        return ["cuda"]

_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def fused_update_kwargs(enabled, params):
    """Returns {"fused": True} for a torch optimizer over `params` when `enabled` (SOLVER.FUSED_UPDATE)
    and torch has a fused step for every parameter's device and dtype, else {} (torch's default)."""
    params = list(params)
    devices = _get_fused_kernels_supported_devices()
    ok = enabled and bool(params) and all(p.device.type in devices and p.dtype in _FLOATS for p in params)
    return {"fused": True} if ok else {}


def _keep_fused_flag(optimizer, fused):
    """Keeps the constructed `fused` choice when a checkpoint's optimizer state is loaded (torch takes
    every param-group option from the saved state, a PySlowFast checkpoint's included)."""
    def restore(opt):
        for group in opt.param_groups:
            group["fused"] = fused
            if fused:
                group["foreach"] = None
    if hasattr(optimizer, "register_load_state_dict_post_hook"):
        optimizer.register_load_state_dict_post_hook(restore)
    return optimizer


def construct_optimizer(cfg, model):
    """Returns the SOLVER.OPTIMIZING_METHOD optimizer over two groups: BN params (BN.WEIGHT_DECAY) first,
    then the rest (SOLVER.WEIGHT_DECAY), as PySlowFast orders them."""
    bn_params, other_params, _ = split_bn_params(cfg, model)
    n_trainable = sum(1 for p in model.parameters() if p.requires_grad)
    if len(bn_params) + len(other_params) != n_trainable:
        raise RuntimeError(
            f"parameter grouping lost parameters: {n_trainable} trainable, "
            f"{len(bn_params)} BN + {len(other_params)} others"
        )
    groups = [
        {"params": bn_params, "weight_decay": cfg.BN.WEIGHT_DECAY},
        {"params": other_params, "weight_decay": cfg.SOLVER.WEIGHT_DECAY},
    ]
    method = cfg.SOLVER.OPTIMIZING_METHOD.lower()
    extra = fused_update_kwargs(bool(cfg.SOLVER.FUSED_UPDATE), bn_params + other_params)
    if method == "sgd":
        optimizer = torch.optim.SGD(
            groups,
            lr=cfg.SOLVER.BASE_LR,
            momentum=cfg.SOLVER.MOMENTUM,
            weight_decay=cfg.SOLVER.WEIGHT_DECAY,
            dampening=cfg.SOLVER.DAMPENING,
            nesterov=cfg.SOLVER.NESTEROV,
            **extra,
        )
    elif method == "adam":
        optimizer = torch.optim.Adam(
            groups, lr=cfg.SOLVER.BASE_LR, betas=(0.9, 0.999), weight_decay=cfg.SOLVER.WEIGHT_DECAY, **extra
        )
    elif method == "adamw":
        optimizer = torch.optim.AdamW(
            groups, lr=cfg.SOLVER.BASE_LR, betas=(0.9, 0.999), eps=1e-08, weight_decay=cfg.SOLVER.WEIGHT_DECAY,
            **extra,
        )
    else:
        raise ValueError(f"SOLVER.OPTIMIZING_METHOD {cfg.SOLVER.OPTIMIZING_METHOD!r} is not supported; use sgd, adam or adamw")
    return _keep_fused_flag(optimizer, bool(extra))


def clip_gradients(cfg, optimizer, scaler=None):
    """Clips the gradients of `optimizer`'s parameters by SOLVER.CLIP_GRAD_VAL (elementwise) or else
    SOLVER.CLIP_GRAD_L2NORM (global norm), as PySlowFast; returns the global L2 norm before clipping
    (None when neither key is set).

    With a float16 GradScaler the gradients are unscaled first (the scaler remembers it, so its step does
    not unscale twice): the thresholds apply to the true gradients, not to the loss-scaled ones."""
    val, max_norm = cfg.SOLVER.CLIP_GRAD_VAL, cfg.SOLVER.CLIP_GRAD_L2NORM
    if val is None and max_norm is None:
        return None
    if scaler is not None and scaler.is_enabled():
        scaler.unscale_(optimizer)
    params = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
    if val is not None:
        norm = torch.nn.utils.get_total_norm([p.grad for p in params])
        torch.nn.utils.clip_grad_value_(params, val)
        return norm
    return torch.nn.utils.clip_grad_norm_(params, max_norm)


def get_epoch_lr(cur_epoch, cfg):
    """Returns the learning rate at fractional epoch `cur_epoch` (PySlowFast signature)."""
    return get_lr_at_epoch(cfg, cur_epoch)


def set_lr(optimizer, new_lr):
    """Sets `new_lr` on every param group of `optimizer`."""
    for group in optimizer.param_groups:
        group["lr"] = new_lr


# ----------------------------------------------------------------------------------------------- #
# Learning-rate policy
# ----------------------------------------------------------------------------------------------- #


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
