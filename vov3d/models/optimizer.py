"""Optimizer construction (PySlowFast param groups) and per-iteration learning-rate setting."""

import logging

import torch
import torch.nn as nn

from vov3d.models import lr_policy

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
    if method == "sgd":
        return torch.optim.SGD(
            groups,
            lr=cfg.SOLVER.BASE_LR,
            momentum=cfg.SOLVER.MOMENTUM,
            weight_decay=cfg.SOLVER.WEIGHT_DECAY,
            dampening=cfg.SOLVER.DAMPENING,
            nesterov=cfg.SOLVER.NESTEROV,
        )
    if method == "adam":
        return torch.optim.Adam(
            groups, lr=cfg.SOLVER.BASE_LR, betas=(0.9, 0.999), weight_decay=cfg.SOLVER.WEIGHT_DECAY
        )
    if method == "adamw":
        return torch.optim.AdamW(
            groups, lr=cfg.SOLVER.BASE_LR, betas=(0.9, 0.999), eps=1e-08, weight_decay=cfg.SOLVER.WEIGHT_DECAY
        )
    raise ValueError(f"SOLVER.OPTIMIZING_METHOD {cfg.SOLVER.OPTIMIZING_METHOD!r} is not supported; use sgd, adam or adamw")


def get_epoch_lr(cur_epoch, cfg):
    """Returns the learning rate at fractional epoch `cur_epoch` (PySlowFast signature)."""
    return lr_policy.get_lr_at_epoch(cfg, cur_epoch)


def set_lr(optimizer, new_lr):
    """Sets `new_lr` on every param group of `optimizer`."""
    for group in optimizer.param_groups:
        group["lr"] = new_lr
