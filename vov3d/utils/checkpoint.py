"""Checkpoints in PySlowFast format: a dict with model_state, optimizer_state, epoch and cfg.

Files written here load into the official VoV3D / PySlowFast code and theirs load here, with no
conversion step. Loading never executes code from the file (``torch.load(weights_only=True)``), and
writing is atomic (temporary file, fsync, rename), so a crash mid-write never destroys the last good
checkpoint. Each file gets a ``<name>.sha256`` beside it (``sha256sum -c`` format), checked on every
load; files without one (official releases, older runs) load unchecked.

Names: ``checkpoint_epoch_00005.pyth`` after 5 whole epochs (PySlowFast); ``checkpoint_epoch_00006_iter_000120.pyth``
120 iterations into epoch 6 (a stop mid-epoch, see vov3d.engine.signals), which holds ``epoch`` 4 (the last
whole epoch, 0-based, as PySlowFast) and ``iter_in_epoch`` 120.
"""

import logging
import os
import re

import torch
import torch.nn as nn

from vov3d.utils.files import (  # noqa: F401 (re-exported: the checkpoint API since before files.py)
    CHECKSUM_SUFFIX, CheckpointCorrupt, HashingWriter, file_sha256, verify_checkpoint, write_atomically, write_checksum,
)
from vov3d.utils.weights import read_safetensors, resolve_checkpoint

logger = logging.getLogger(__name__)

_CHECKPOINT_RE = re.compile(r"^checkpoint_epoch_(\d+)(?:_iter_(\d+))?\.pyth$")


def get_checkpoint_dir(path_to_job):
    """Returns the checkpoints folder of a run's OUTPUT_DIR."""
    return os.path.join(path_to_job, "checkpoints")


def make_checkpoint_dir(path_to_job):
    """Creates (if needed) and returns the checkpoints folder of a run's OUTPUT_DIR."""
    path = get_checkpoint_dir(path_to_job)
    os.makedirs(path, exist_ok=True)
    return path


def get_path_to_checkpoint(path_to_job, epoch):
    """Returns the path of the checkpoint of 1-based `epoch` (PySlowFast naming)."""
    return os.path.join(get_checkpoint_dir(path_to_job), f"checkpoint_epoch_{epoch:05d}.pyth")


def get_path_to_mid_epoch_checkpoint(path_to_job, cur_epoch, iters_done):
    """Returns the path of the checkpoint `iters_done` iterations into 0-based epoch `cur_epoch`."""
    return os.path.join(get_checkpoint_dir(path_to_job),
                        f"checkpoint_epoch_{cur_epoch + 1:05d}_iter_{iters_done:06d}.pyth")


def checkpoint_position(path):
    """Returns (whole epochs done, iterations done in the next one) that a checkpoint's name says."""
    m = _CHECKPOINT_RE.match(os.path.basename(path))
    if not m:
        raise ValueError(f"{path} is not named like a checkpoint of a run")
    if m.group(2) is None:
        return int(m.group(1)), 0
    return int(m.group(1)) - 1, int(m.group(2))


def list_checkpoints(path_to_job):
    """Returns the checkpoints of a run (whole-epoch and mid-epoch), oldest first."""
    d = get_checkpoint_dir(path_to_job)
    if not os.path.isdir(d):
        return []
    names = sorted((checkpoint_position(n), n) for n in os.listdir(d) if _CHECKPOINT_RE.match(n))
    return [os.path.join(d, n) for _, n in names]


def get_last_checkpoint(path_to_job):
    """Returns the newest epoch checkpoint of a run, or None."""
    ckpts = list_checkpoints(path_to_job)
    return ckpts[-1] if ckpts else None


def has_checkpoint(path_to_job):
    """Returns True when the run has at least one epoch checkpoint."""
    return bool(list_checkpoints(path_to_job))


def is_checkpoint_epoch(cfg, cur_epoch):
    """Returns True when a checkpoint is due after 0-based `cur_epoch` (always after the last one)."""
    if cur_epoch + 1 == cfg.SOLVER.MAX_EPOCH:
        return True
    return (cur_epoch + 1) % cfg.TRAIN.CHECKPOINT_PERIOD == 0


def unwrap_model(model):
    """Returns the bare module inside DistributedDataParallel / DataParallel / torch.compile wrappers."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def atomic_torch_save(obj, path):
    """Writes `obj` with torch.save so that `path` is either the old file or the complete new one, then
    its checksum file; returns path."""
    digest = {}

    def write(f):
        w = HashingWriter(f)
        torch.save(obj, w)
        digest["hex"] = w.sha.hexdigest()

    write_atomically(path, write)
    # Killed between the two renames, the checkpoint is complete (fsynced) but has no checksum: it then
    # loads as an unchecked file, with a warning.
    write_checksum(path, digest["hex"])
    return path


def remove_orphan_temp_files(path_to_job):
    """Removes the temporary files of writes a kill interrupted in a run's checkpoints folder (call only
    while holding the run's lock: no writer is active); returns their paths."""
    d = get_checkpoint_dir(path_to_job)
    removed = []
    if os.path.isdir(d):
        for name in os.listdir(d):
            if name.startswith(".") and name.endswith(".tmp"):
                os.remove(os.path.join(d, name))
                removed.append(os.path.join(d, name))
    return removed


def remove_checkpoint(path):
    """Removes a checkpoint and its checksum file; returns None."""
    for p in (path, path + CHECKSUM_SUFFIX):
        if os.path.exists(p):
            os.remove(p)


def remove_superseded_mid_epoch_checkpoints(path_to_job, newest):
    """Removes the mid-epoch checkpoints older than `newest` (a stop's checkpoint is only needed until
    the next one); returns their paths."""
    pos = checkpoint_position(newest)
    old = [p for p in list_checkpoints(path_to_job)
           if "_iter_" in os.path.basename(p) and checkpoint_position(p) < pos]
    for p in old:
        remove_checkpoint(p)
    return old


def find_resume_checkpoint(path_to_job):
    """Returns (path, dict) of the newest checkpoint of a run that reads and verifies, or (None, None);
    logs a warning for each newer one passed over."""
    for path in reversed(list_checkpoints(path_to_job)):
        try:
            return path, read_checkpoint(path)
        except (CheckpointCorrupt, FileNotFoundError) as e:
            logger.warning("Passing over checkpoint %s: %s", path, e)
    return None, None


def save_checkpoint(path_to_job, model, optimizer, epoch, cfg, scaler=None, extra_state=None, path=None):
    """Saves a PySlowFast-format checkpoint of 0-based `epoch`; returns its path.

    Only the master process writes (call it from every process; the others return None).
    `extra_state` adds keys the official code ignores (RNG state, EMA weights, ...).
    """
    from vov3d.utils import distributed as du

    if not du.is_master_proc(cfg.NUM_GPUS * cfg.NUM_SHARDS):
        return None
    state = {
        "epoch": epoch,
        "model_state": unwrap_model(model).state_dict(),
        "optimizer_state": optimizer.state_dict() if optimizer is not None else {},
        "cfg": cfg.dump(),
    }
    if scaler is not None:
        state["scaler_state"] = scaler.state_dict()
    if extra_state:
        state.update(extra_state)
    if path is None:
        make_checkpoint_dir(path_to_job)
        path = get_path_to_checkpoint(path_to_job, epoch + 1)
    atomic_torch_save(state, path)
    return path


def read_checkpoint(path):
    """Returns the dict stored in a checkpoint file, loaded without executing code from it, after checking
    its checksum when it has one (CheckpointCorrupt otherwise).

    `path` may also be a URL or a weights name (downloaded once, see vov3d.utils.weights). A bare
    state_dict (e.g. torchvision weights, a .safetensors file) is returned as {"model_state": it}.
    """
    path = resolve_checkpoint(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Checkpoint not found: {path}")
    verify_checkpoint(path)
    try:
        if path.endswith(".safetensors"):
            state, metadata = read_safetensors(path)
            return {"model_state": state, **({"cfg": metadata["cfg"]} if "cfg" in metadata else {})}
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle errors, zip errors, forbidden globals, bad safetensors headers...
        raise CheckpointCorrupt(f"{path} is not a readable PyTorch checkpoint: {type(e).__name__}: {e}") from None
    if not isinstance(ckpt, dict):
        raise ValueError(f"{path} is not a checkpoint: it holds a {type(ckpt).__name__}, not a dict")
    for key in ("model_state", "state_dict", "model"):
        if isinstance(ckpt.get(key), dict):
            if key != "model_state":
                ckpt = dict(ckpt, model_state=ckpt[key])
            break
    else:
        if ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
            ckpt = {"model_state": ckpt}
        else:
            raise ValueError(
                f"{path} is not a checkpoint: no 'model_state' (PySlowFast) or state_dict found; "
                f"top-level keys: {sorted(ckpt)[:10]}"
            )
    return ckpt


def classifier_prefixes(model):
    """Returns the module names of the model's final classifier (the part fine-tuning replaces)."""
    names = getattr(model, "CLASSIFIER", None)
    if names:
        return (names,) if isinstance(names, str) else tuple(names)
    linear = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    return (linear[-1],) if linear else ()


def _strip_prefixes(state, patterns):
    out = {}
    for k, v in state.items():
        for p in patterns:
            if k.startswith(p):
                k = k[len(p):]
        out[k] = v
    return out


def match_state_dict(model, state, source="checkpoint"):
    """Returns (state to load, skipped classifier keys) after checking `state` against `model`.

    Keys are mapped by the model's own `convert_state_dict` when it has one (conversion tables for
    other codebases' names). Only classifier tensors may differ in shape (fine-tuning to another
    class count); any other missing, unexpected or misshapen key is an error naming `source` and the
    first offending keys.
    """
    convert = getattr(model, "convert_state_dict", None)
    if convert is not None:
        state = convert(state)
    own = model.state_dict()
    classifier = classifier_prefixes(model)

    def is_classifier(k):
        return any(k == c or k.startswith(c + ".") for c in classifier)

    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong_shape = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    skipped = [k for k in wrong_shape if is_classifier(k)]
    bad_shape = [k for k in wrong_shape if not is_classifier(k)]
    if missing or unexpected or bad_shape:
        parts = []
        if bad_shape:
            parts.append(
                "shape mismatch: "
                + ", ".join(f"{k} {tuple(state[k].shape)} vs model {tuple(own[k].shape)}" for k in bad_shape[:5])
            )
        if missing:
            parts.append(f"{len(missing)} keys missing from the file, first: {missing[:5]}")
        if unexpected:
            parts.append(f"{len(unexpected)} keys not in the model, first: {unexpected[:5]}")
        raise ValueError(f"{source} does not fit {type(model).__name__}: " + "; ".join(parts))
    return {k: v for k, v in state.items() if k not in skipped}, skipped


def load_checkpoint(
    path_to_checkpoint,
    model,
    data_parallel=True,
    optimizer=None,
    scaler=None,
    inflation=False,
    convert_from_caffe2=False,
    epoch_reset=False,
    clear_name_pattern=(),
    exact=False,
    ckpt=None,
):
    """Loads a checkpoint into `model` (and optimizer / scaler when given); returns its 0-based epoch.

    Signature as PySlowFast's. `data_parallel` is accepted for compatibility: wrappers are detected.
    Returns -1 when the file has no epoch or `epoch_reset` is set. A classifier of another class count is
    re-initialised (fine-tuning) unless `exact` (resuming a run), where any difference is a ValueError.
    `ckpt`: the file's dict when already read.
    """
    if inflation or convert_from_caffe2:
        raise NotImplementedError("Inflating 2D weights and Caffe2 checkpoints are not supported")
    if ckpt is None:
        ckpt = read_checkpoint(path_to_checkpoint)
    bare = unwrap_model(model)
    state = _strip_prefixes(ckpt["model_state"], ("module.", "_orig_mod.", *clear_name_pattern))
    state, skipped = match_state_dict(bare, state, source=path_to_checkpoint)
    if skipped and exact:
        first = skipped[0]
        raise ValueError(
            f"cannot resume from {path_to_checkpoint}: it was written for another model ({first} "
            f"{tuple(ckpt['model_state'][first].shape) if first in ckpt['model_state'] else '?'} vs "
            f"{tuple(bare.state_dict()[first].shape)}; another MODEL.NUM_CLASSES?); use a new OUTPUT_DIR, or "
            "TRAIN.CHECKPOINT_FILE_PATH to fine-tune from it"
        )
    if skipped:
        logger.info(
            "Loaded %s except the classifier (different number of classes); re-initialised: %s",
            path_to_checkpoint,
            ", ".join(skipped),
        )
    bare.load_state_dict(state, strict=not skipped)
    if optimizer is not None and ckpt.get("optimizer_state") and not skipped:
        optimizer.load_state_dict(ckpt["optimizer_state"])
    if scaler is not None and ckpt.get("scaler_state"):
        scaler.load_state_dict(ckpt["scaler_state"])
    if epoch_reset or "epoch" not in ckpt:
        return -1
    return int(ckpt["epoch"])
