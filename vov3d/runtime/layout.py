"""Clip layout: the memory format batches are born in and reach the model in.

Datasets ask `clip_memory_format(cfg)` for the layout of the batches they allocate
(`empty_clip_batch`), the engine moves batches with `to_model_format`; both follow the runtime's
training decision for the model (MODEL.MEMORY_FORMAT, `auto` = what prepare_for_training measured in
this process, channels_last_3d until then). Inference copies move a batch into their own route's
layout: a batch in another layout costs one copy, never a wrong result.
"""

import torch

MEMORY_FORMATS = ("auto", "channels_last_3d", "contiguous")
_FORMATS = {"channels_last_3d": torch.channels_last_3d, "contiguous": torch.contiguous_format}

# The layout `auto` resolved to in this process (set by the prepare steps once measured).
_decided = {}


def format_name(fmt):
    """Returns "channels_last_3d" or "contiguous" for a torch.memory_format."""
    return "channels_last_3d" if fmt == torch.channels_last_3d else "contiguous"


def memory_format_from_name(name):
    """Returns the torch.memory_format of "channels_last_3d" / "contiguous" (a clear error otherwise)."""
    try:
        return _FORMATS[name]
    except KeyError:
        raise ValueError(f"MODEL.MEMORY_FORMAT must be one of {MEMORY_FORMATS}, got {name!r}") from None


def record_decision(name):
    """Remembers that `auto` resolved to layout `name` in this process (batches follow it)."""
    _decided["memory_format"] = name


def clip_memory_format(cfg):
    """Returns the torch.memory_format batches of clips should have for cfg's model."""
    choice = cfg.MODEL.MEMORY_FORMAT
    if choice == "auto":
        return _FORMATS[_decided.get("memory_format", "channels_last_3d")]
    return memory_format_from_name(choice)


def to_model_format(x, cfg, device=None):
    """Returns a 5-D clip on `device` in the model's memory format (one copy at most)."""
    fmt = clip_memory_format(cfg)
    if device is not None:
        x = x.to(device, non_blocking=True)
    if x.dim() == 5 and not x.is_contiguous(memory_format=fmt):
        x = x.contiguous(memory_format=fmt)
    return x


def empty_clip_batch(shape, memory_format=torch.channels_last_3d):
    """Returns an uninitialised float32 batch of clips, shape (..., C, T, H, W), in which every clip
    is laid out in `memory_format` (a torch.memory_format or a MODEL.MEMORY_FORMAT string).

    Datasets write each clip into it once (vov3d.datasets.base); the batch then reaches the model
    with no re-layout, also after the test path's (N, V, ...) -> (N*V, ...) reshape, which stays a
    view. Inside a DataLoader worker it lives in shared memory, so sending it costs no copy either.
    """
    if isinstance(memory_format, str):
        memory_format = torch.contiguous_format if memory_format == "contiguous" else torch.channels_last_3d
    shape = tuple(int(n) for n in shape)
    lead = len(shape) - 4
    if memory_format == torch.channels_last_3d and lead >= 0:
        alloc = shape[:lead] + shape[lead + 1:] + shape[lead:lead + 1]  # channels innermost
        order = tuple(range(lead)) + (len(shape) - 1,) + tuple(range(lead, len(shape) - 1))
    else:
        alloc, order = shape, tuple(range(len(shape)))
    if torch.utils.data.get_worker_info() is None:
        out = torch.empty(alloc, dtype=torch.float32)
    else:
        numel = 1
        for n in alloc:
            numel *= n
        storage = torch.empty(0)._typed_storage()._new_shared(numel, device="cpu")
        out = torch.empty(0).new(storage).resize_(alloc)
    return out.permute(order)
