"""Loss registry: MODEL.LOSS_FUNC -> loss module, with optional label smoothing."""

import torch
import torch.nn as nn
import torch.nn.functional as F


class SoftTargetCrossEntropy(nn.Module):
    """Cross entropy against soft (probability) targets: mean over the batch of -sum(t * log_softmax(x))."""

    def __init__(self, reduction="mean"):
        super().__init__()
        self.reduction = reduction

    def forward(self, x, y):
        loss = torch.sum(-y * F.log_softmax(x, dim=-1), dim=-1)
        if self.reduction == "mean":
            return loss.mean()
        if self.reduction == "none":
            return loss
        raise NotImplementedError(self.reduction)


_LOSSES = {
    "cross_entropy": nn.CrossEntropyLoss,
    "bce": nn.BCELoss,
    "bce_logit": nn.BCEWithLogitsLoss,
    "soft_cross_entropy": SoftTargetCrossEntropy,
}


def get_loss_func(loss_name):
    """Returns the loss class registered under `loss_name` (PySlowFast names)."""
    if loss_name not in _LOSSES:
        raise ValueError(f"MODEL.LOSS_FUNC {loss_name!r} is not supported; choose one of {', '.join(_LOSSES)}")
    return _LOSSES[loss_name]


def register_loss(name, cls):
    """Adds a loss class under `name` so MODEL.LOSS_FUNC can select it."""
    _LOSSES[name] = cls


def build_loss(cfg, reduction="mean"):
    """Returns the training loss module: MODEL.LOSS_FUNC with SOLVER.LABEL_SMOOTHING when set; the
    soft-target cross entropy with MIXUP.ENABLE (its targets are mixed probability vectors)."""
    name = cfg.MODEL.LOSS_FUNC
    cls = get_loss_func(name)
    if cfg.MIXUP.ENABLE and name in ("cross_entropy", "soft_cross_entropy"):
        return SoftTargetCrossEntropy(reduction=reduction)
    smoothing = float(cfg.SOLVER.get("LABEL_SMOOTHING", 0.0))
    if smoothing > 0:
        if name != "cross_entropy":
            raise ValueError(
                f"SOLVER.LABEL_SMOOTHING is only supported with MODEL.LOSS_FUNC cross_entropy, not {name!r}"
            )
        return nn.CrossEntropyLoss(reduction=reduction, label_smoothing=smoothing)
    return cls(reduction=reduction)
