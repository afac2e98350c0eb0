"""Helpers shared by the loops: moving a batch to the model's device / memory format, reading `meta`
whatever its collate format, autocast settings."""

import contextlib

import torch

from vov3d.runtime import to_model_format


def to_device(x, cfg, device):
    """Returns clip tensor `x` on `device` in the model's memory format (non-blocking copy)."""
    return to_model_format(x, cfg, device)


def inputs_to_device(inputs, cfg, device):
    """Returns the list of pathway tensors moved by to_device."""
    if isinstance(inputs, (list, tuple)):
        return [to_device(x, cfg, device) for x in inputs]
    return [to_device(inputs, cfg, device)]


def meta_values(meta, key, n, default=None):
    """Returns the list of the `n` per-sample values of `key` in a collated `meta`.

    Handles a dict of lists / tensors (default collate), a list of per-sample dicts, and None.
    """
    if meta is None:
        return [default] * n
    if isinstance(meta, dict):
        v = meta.get(key, None)
        if v is None:
            return [default] * n
        if torch.is_tensor(v):
            v = v.tolist()
        v = list(v)
        if len(v) != n:
            raise ValueError(f"meta[{key!r}] has {len(v)} values for a batch of {n}")
        return v
    if isinstance(meta, (list, tuple)):
        if len(meta) != n:
            raise ValueError(f"meta has {len(meta)} entries for a batch of {n}")
        return [m.get(key, default) if isinstance(m, dict) else default for m in meta]
    return [default] * n


def count_bad_samples(meta, n):
    """Returns (count, examples) of the (path, reason) substitutions recorded in a train batch's meta."""
    count, examples = 0, []
    for v in meta_values(meta, "bad_samples", n, default=None):
        if not v:
            continue
        if isinstance(v, (str, bytes)):
            v = [v]
        count += len(v)
        examples.extend(str(e) for e in v[:2])
    return count, examples


def autocast_context(cfg, device):
    """Returns the autocast context of TRAIN.MIXED_PRECISION for `device` (a null context when off)."""
    if not cfg.TRAIN.MIXED_PRECISION:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=amp_dtype(cfg))


def amp_dtype(cfg):
    """Returns the torch dtype named by TRAIN.MIXED_PRECISION_DTYPE (bfloat16 or float16: config.validate)."""
    return {"bfloat16": torch.bfloat16, "float16": torch.float16}[cfg.TRAIN.MIXED_PRECISION_DTYPE]
