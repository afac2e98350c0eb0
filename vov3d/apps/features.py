"""Features and logits of every video of a list, from the multi-view test sampling.

    results = extract(cfg, ["val", "my_list.json"], "out/features", checkpoint="ckpt.pyth")

Each list is a split name of TEST.DATASET (train | val | test: its own annotation file) or an
annotation file in TEST.DATASET's format. Videos are decoded once and cut into the test views
(TEST.NUM_ENSEMBLE_VIEWS clips x TEST.NUM_SPATIAL_CROPS crops, clip-major) exactly as the multi-view
test cuts them. Per video and view it keeps the pre-logit vector (`forward_head(..., pre_logits=True)`,
what the classifier reads: X3D / VoV3D's lin_5 output, the pooled last map elsewhere) and the logits.

One file per list, `<output>/<name>.pt` (or `.npz`): video_ids, labels, features (N, V, D), logits
(N, V, K), the bad videos (id, path, reason; listed and skipped), the view layout, checkpoint and
config. A video's feature is usually the mean over views: `features.mean(1)`.

Processes share the videos (rank r takes every W-th of those not done yet). Each writes its results
so far to `<output>/.partial/<name>.<rank>-<token>.pt` every `save_every` videos, atomically; a rerun
reads every partial file of the list (whatever the earlier world size), skips the videos done, and
the final merge removes them. A finished list (its output file exists) is skipped unless `overwrite`.
"""

import glob
import logging
import os
import time
import uuid

import numpy as np
import torch

from vov3d.utils import checkpoint as cu
from vov3d.utils import distributed as du

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
FORMATS = ("pt", "npz")


def list_dataset(cfg, name):
    """Returns (list name for files, the test-mode dataset of list `name`: a split of TEST.DATASET or
    an annotation file in its format)."""
    from vov3d.datasets import build_dataset

    if name in SPLITS:
        annotation = build_dataset(cfg.TEST.DATASET, cfg, name).annotation_path if name != "test" else None
        stem = name
    else:
        if not os.path.isfile(name):
            raise FileNotFoundError(f"--list {name}: neither a split ({', '.join(SPLITS)}) nor an existing annotation file")
        annotation, stem = os.path.abspath(name), os.path.splitext(os.path.basename(name))[0]
    if annotation is not None:
        cfg = cfg.clone()
        cfg.defrost()
        cfg.DATA.TEST_ANNOTATION = annotation  # the test split's views, this list's videos
    return stem, build_dataset(cfg.TEST.DATASET, cfg, "test")


def _partial_paths(output_dir, stem):
    # <stem>.<rank>-<token>.pt: list "val" never picks up the partial files of a list "val.x"
    return sorted(glob.glob(os.path.join(output_dir, ".partial", f"{glob.escape(stem)}.[0-9]*-*.pt")))


def load_partials(output_dir, stem):
    """Returns {video_id: result} from every partial file of list `stem` (results of earlier runs)."""
    done = {}
    for path in _partial_paths(output_dir, stem):
        try:
            part = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - a damaged partial file is redone, not fatal
            logger.warning("Ignoring unreadable partial results %s (%s): its videos are extracted again", path, e)
            continue
        done.update(part["results"])
    return done


def _save_partial(path, results):
    cu.write_atomically(path, lambda f: torch.save({"results": results}, f))


def _loader(cfg, dataset, indices):
    from vov3d.datasets.loader import collate

    per_process = max(1, cfg.TEST.BATCH_SIZE // du.get_world_size())
    return torch.utils.data.DataLoader(
        torch.utils.data.Subset(dataset, indices), batch_size=per_process, shuffle=False,
        num_workers=cfg.DATA_LOADER.NUM_WORKERS, collate_fn=collate,
        pin_memory=bool(cfg.DATA_LOADER.PIN_MEMORY) and cfg.NUM_GPUS > 0)


@torch.no_grad()
def features_and_logits(model, clips, per_forward):
    """Returns (pre-logit vectors (M, D), logits (M, K)) of a stack of clips (M, C, T, H, W), float32 on
    the CPU, run `per_forward` clips at a time."""
    classifier = model.get_submodule(model.CLASSIFIER)
    feats, logits = [], []
    for chunk in clips.split(per_forward):
        vec = model.forward_head(model.forward_features(chunk), pre_logits=True)
        feats.append(vec.float().cpu())
        logits.append(classifier(vec).float().cpu())  # linear: the same as averaging per-position logits
    return torch.cat(feats), torch.cat(logits)


def extract_list(cfg, model, device, name, output_dir, fmt="pt", save_every=64, overwrite=False, meta=None):
    """Extracts list `name` into `<output_dir>/<name>.<fmt>` (see the module docstring); returns the
    output path (written by the master process)."""
    from vov3d.engine.batch import inputs_to_device, meta_values

    stem, dataset = list_dataset(cfg, name)
    out_path = os.path.join(output_dir, f"{stem}.{fmt}")
    if os.path.exists(out_path) and not overwrite:
        logger.info("%s exists: list %s is done (overwrite to redo)", out_path, name)
        return out_path
    done = load_partials(output_dir, stem)
    du.synchronize()  # every process has read the same partial files before any writes one
    ids = dataset.video_ids
    todo = [i for i, vid in enumerate(ids) if vid not in done]
    rank, world = du.get_rank(), du.get_world_size()
    mine = todo[rank::world]
    logger.info("List %s: %d videos, %d done before, %d to extract (%d on this process)", name, len(ids),
                len(ids) - len(todo), len(todo), len(mine))
    partial = os.path.join(output_dir, ".partial", f"{stem}.{rank}-{uuid.uuid4().hex[:8]}.pt")
    results, unsaved, start = {}, 0, time.perf_counter()
    views = dataset.num_views
    per_forward = cfg.TEST.CLIPS_PER_FORWARD or views
    for inputs, labels, index, batch_meta in _loader(cfg, dataset, mine):
        x = inputs[0]
        n = x.shape[0]
        valid = [bool(v) for v in meta_values(batch_meta, "valid", n, True)]
        errors = meta_values(batch_meta, "error", n, "")
        paths = meta_values(batch_meta, "path", n, "")
        good = [k for k in range(n) if valid[k]]  # undecodable videos come as zeros: not run
        if good:
            x = x[good] if len(good) < n else x
            clips = inputs_to_device(x.reshape((len(good) * views,) + tuple(x.shape[2:])), cfg, device)[0]
            feats, logits = features_and_logits(model, clips, per_forward)
            feats, logits = feats.view(len(good), views, -1), logits.view(len(good), views, -1)
        for k in range(n):
            vid = ids[int(index[k])]
            if valid[k]:
                j = good.index(k)
                results[vid] = {"label": int(labels[k]), "features": feats[j].clone(), "logits": logits[j].clone()}
            else:
                results[vid] = {"label": int(labels[k]), "error": str(errors[k]), "path": str(paths[k])}
        unsaved += n
        if unsaved >= save_every:
            _save_partial(partial, results)
            unsaved = 0
    if unsaved:
        _save_partial(partial, results)
    logger.info("List %s: %d videos on this process in %.1fs", name, len(results), time.perf_counter() - start)
    du.synchronize()
    if du.is_master_proc(cfg.NUM_GPUS):
        merged = load_partials(output_dir, stem)
        merged.update(results)
        write_output(out_path, fmt, dataset, merged, views, meta or {})
        for path in _partial_paths(output_dir, stem):
            os.remove(path)
    du.synchronize()
    return out_path


def write_output(path, fmt, dataset, results, views, meta):
    """Writes the merged results of a list in dataset order (atomically); returns path."""
    good = [vid for vid in dataset.video_ids if vid in results and "features" in results[vid]]
    bad = [(vid, results[vid]["path"], results[vid]["error"]) for vid in dataset.video_ids
           if vid in results and "error" in results[vid]]
    missing = [vid for vid in dataset.video_ids if vid not in results]
    if missing:
        raise RuntimeError(f"{len(missing)} videos have no results (first: {missing[:3]}); rerun to complete")
    if not good:
        raise ValueError(f"{path}: none of the {len(dataset)} videos could be decoded")
    out = {
        "video_ids": good,
        "labels": torch.tensor([results[v]["label"] for v in good], dtype=torch.long),
        "features": torch.stack([results[v]["features"] for v in good]),
        "logits": torch.stack([results[v]["logits"] for v in good]),
        "bad_videos": bad,
        "num_ensemble_views": dataset.num_clips,
        "num_spatial_crops": dataset.num_crops,
        "view_order": "clip-major: view = clip * num_spatial_crops + crop",
        "class_names": list(dataset.class_names),
        **meta,
    }
    if bad:
        logger.warning("%d video(s) could not be decoded and are left out of %s: %s", len(bad), path,
                       ", ".join(f"{v} ({e})" for v, _, e in bad[:10]))
    if fmt == "pt":
        cu.write_atomically(path, lambda f: torch.save(out, f))
    else:
        arrays = {k: (v.numpy() if torch.is_tensor(v) else np.asarray(v)) for k, v in out.items()}
        arrays["bad_videos"] = np.asarray(bad, dtype=str).reshape(-1, 3)
        cu.write_atomically(path, lambda f: np.savez(f, **arrays))
    logger.info("Wrote %s: %d videos x %d views, features %s, logits %s", path, len(good), views,
                tuple(out["features"].shape[2:]), tuple(out["logits"].shape[2:]))
    return path


def extract(cfg, lists, output_dir, checkpoint=None, fmt="pt", save_every=64, overwrite=False):
    """Extracts every list of `lists` into `output_dir` in this process (one rank of the job; see
    vov3d.engine.launch.launch_job for many); returns the output paths."""
    from vov3d.apps.common import load_trained_model
    from vov3d.models.build import model_device

    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    model, path = load_trained_model(cfg, checkpoint)
    device = model_device(cfg)
    meta = {"checkpoint": path or "", "config": cfg.dump(), "feature": "pre_logits", "score_type": "logits"}
    return [extract_list(cfg, model, device, name, output_dir, fmt, save_every, overwrite, meta) for name in lists]
