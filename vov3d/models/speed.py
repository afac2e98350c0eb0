"""Speed levers that keep one model implementation: memory format, torch.compile, BN folding.

`MODEL.MEMORY_FORMAT: auto` picks channels_last_3d, the measured fastest layout for these
depthwise-heavy 3D CNNs on CPU (tools/benchmark.py --mode model measures it again).
"""

import torch


def resolve_memory_format(cfg):
    """Returns the torch.memory_format that MODEL.MEMORY_FORMAT selects."""
    choice = cfg.MODEL.MEMORY_FORMAT
    if choice in ("auto", "channels_last_3d"):
        return torch.channels_last_3d
    if choice == "contiguous":
        return torch.contiguous_format
    raise ValueError(f"MODEL.MEMORY_FORMAT must be auto, channels_last_3d or contiguous, got {choice!r}")


def apply_memory_format(model, cfg):
    """Returns `model` with its 5-D weights in the configured memory format (in place)."""
    return model.to(memory_format=resolve_memory_format(cfg))


def to_model_format(x, cfg, device=None):
    """Returns a 5-D clip on `device` in the model's memory format (one copy at most)."""
    fmt = resolve_memory_format(cfg)
    if device is not None:
        x = x.to(device, non_blocking=True)
    if x.dim() == 5 and not x.is_contiguous(memory_format=fmt):
        x = x.contiguous(memory_format=fmt)
    return x
