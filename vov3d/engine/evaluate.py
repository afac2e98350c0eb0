"""Evaluation: periodic single-view validation during training, and the multi-view test.

The model returns softmax probabilities in eval mode; they are used as they come (never softmaxed
again). Each process scores a disjoint subset of the videos; results are all-gathered keyed by the
video index and de-duplicated, so the numbers are the same for any world size.
"""

import csv
import logging
import os
import time

import torch

from vov3d.engine import run_dir
from vov3d.engine.batch import inputs_to_device, meta_values
from vov3d.engine.meters import gpu_mem_usage
from vov3d import runtime
from vov3d.utils import checkpoint as cu
from vov3d.utils import distributed as du
from vov3d.utils import logging as vlog
from vov3d.utils import metrics

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------- #
# Aggregation (pure functions: unit-tested, and used on saved scores)
# ----------------------------------------------------------------------------------------------- #


def ensemble_views(scores, method="sum"):
    """Returns per-video scores (N, K) from per-view scores (N, V, K): their sum or max over views."""
    if method == "sum":
        return scores.sum(dim=1)
    if method == "max":
        return scores.max(dim=1).values
    raise ValueError(f"DATA.ENSEMBLE_METHOD must be sum or max, got {method!r}")


def dedupe_by_index(index, *tensors):
    """Returns (sorted unique index, tensors reordered to it), keeping the first row of each index."""
    order = torch.argsort(index, stable=True)
    index = index[order]
    keep = torch.ones_like(index, dtype=torch.bool)
    keep[1:] = index[1:] != index[:-1]
    sel = order[keep]
    return (index[keep],) + tuple(t[sel] if torch.is_tensor(t) else [t[i] for i in sel.tolist()] for t in tensors)


def classification_report(video_scores, labels, valid, num_classes):
    """Returns top-1 / top-5 accuracy, mean-class accuracy (all in %), confusion matrix and per-class
    accuracies over the `valid` videos."""
    s = video_scores[valid]
    y = labels[valid].long()
    n = int(y.numel())
    if n == 0:
        cmat = torch.zeros(num_classes, num_classes, dtype=torch.long)
        return {"top1_acc": float("nan"), "top5_acc": float("nan"), "mean_class_acc": float("nan"),
                "num_videos": 0, "confusion_matrix": cmat, "per_class_acc": torch.full((num_classes,), float("nan")),
                "per_class_count": torch.zeros(num_classes, dtype=torch.long)}
    c1, c5 = metrics.topks_correct(s, y, (1, 5))
    pred = s.argmax(dim=1)
    cmat = metrics.confusion_matrix(pred, y, num_classes)
    acc, counts = metrics.per_class_accuracy(cmat)
    present = counts > 0
    return {
        "top1_acc": float(c1) / n * 100.0,
        "top5_acc": float(c5) / n * 100.0,
        "mean_class_acc": float(acc[present].mean()),
        "num_videos": n,
        "confusion_matrix": cmat,
        "per_class_acc": acc,
        "per_class_count": counts,
    }


def select_views(scores, num_clips, num_crops, clips=None, crops=None):
    """Returns the (N, V', K) scores of the chosen temporal clips and spatial crops (clip-major views:
    view = clip * num_crops + crop)."""
    clips = range(num_clips) if clips is None else clips
    crops = range(num_crops) if crops is None else crops
    idx = [c * num_crops + k for c in clips for k in crops]
    for c in clips:
        if not 0 <= c < num_clips:
            raise ValueError(f"clip {c} out of range: the file has {num_clips} clips")
    for k in crops:
        if not 0 <= k < num_crops:
            raise ValueError(f"crop {k} out of range: the file has {num_crops} crops")
    return scores[:, idx]


def reensemble(path, clips=None, crops=None, method=None):
    """Returns the classification report of saved test scores re-ensembled over a subset of views.

    `path`: a test_scores.pt written by test(); `clips` / `crops`: indices to keep (None: all);
    `method`: sum | max (None: the one used by the test).
    """
    data = torch.load(path, map_location="cpu", weights_only=True)
    scores = select_views(data["scores"].float(), data["num_ensemble_views"], data["num_spatial_crops"], clips, crops)
    rep = classification_report(
        ensemble_views(scores, method or data["ensemble_method"]), data["labels"], data["valid"], scores.shape[-1]
    )
    return rep


# ----------------------------------------------------------------------------------------------- #
# Single-view validation during training
# ----------------------------------------------------------------------------------------------- #


@torch.no_grad()
def eval_epoch(val_loader, model, cur_epoch, cfg, device, writer=None):
    """Returns the single-view validation stats (top-1/top-5 error, mean-class accuracy) of `model`
    (a bare module, not DDP: processes run different numbers of batches) over the whole val set."""
    model = runtime.prepare_for_inference(model, cfg)  # fastest measured route (MODEL.*), eval only
    start = time.perf_counter()
    idx_l, lab_l, top_l, valid_l = [], [], [], []
    for inputs, labels, index, meta in val_loader:
        inputs = inputs_to_device(inputs, cfg, device)
        probs = model(inputs)  # under MODEL.INFERENCE_AMP's autocast (runtime)
        n = labels.size(0)
        k = min(5, probs.size(1))
        top_l.append(torch.topk(probs.float(), k, dim=1).indices.cpu())
        lab_l.append(labels.view(-1).cpu())
        idx_l.append(torch.as_tensor(index).view(-1).cpu())
        valid_l.append(torch.tensor([bool(v) for v in meta_values(meta, "valid", n, True)]))
    k = min(5, cfg.MODEL.NUM_CLASSES)
    cat = lambda xs, shape, dt: torch.cat(xs) if xs else torch.zeros(shape, dtype=dt)  # noqa: E731
    index = cat(idx_l, (0,), torch.long).long()
    labels = cat(lab_l, (0,), torch.long).long()
    top = cat(top_l, (0, k), torch.long)
    valid = cat(valid_l, (0,), torch.bool)
    index, labels, top, valid = du.all_gather([index, labels, top, valid.to(torch.uint8)])
    index, labels, top, valid = dedupe_by_index(index, labels, top, valid.bool())
    labels, top = labels[valid], top[valid]
    n = max(int(labels.numel()), 1)
    hit = top == labels.view(-1, 1)
    top1 = float(hit[:, :1].any(dim=1).sum()) / n * 100.0
    top5 = float(hit.any(dim=1).sum()) / n * 100.0
    mca = metrics.mean_class_accuracy(top[:, 0], labels, cfg.MODEL.NUM_CLASSES) if labels.numel() else float("nan")
    stats = {
        "_type": "val_epoch",
        "epoch": f"{cur_epoch + 1}/{cfg.SOLVER.MAX_EPOCH}",
        "epoch_float": float(cur_epoch + 1),
        "top1_err": 100.0 - top1,
        "top5_err": 100.0 - top5,
        "mean_class_acc": mca,
        "num_videos": int(labels.numel()),
        "num_invalid": int((~valid).sum()),
        "time_diff": time.perf_counter() - start,
        "mem": round(gpu_mem_usage(), 3),
    }
    if writer is not None:
        writer.add_scalar("Val/Top1_err", stats["top1_err"], cur_epoch + 1)
        writer.add_scalar("Val/Top5_err", stats["top5_err"], cur_epoch + 1)
        writer.add_scalar("Val/mean_class_acc", mca, cur_epoch + 1)
    return stats


# ----------------------------------------------------------------------------------------------- #
# Multi-view test
# ----------------------------------------------------------------------------------------------- #


@torch.no_grad()
def collect_test_scores(test_loader, model, cfg, device):
    """Returns (index, labels, valid, scores (N, V, K) float32 on CPU, video_ids) of this process's videos."""
    model = runtime.prepare_for_inference(model, cfg)  # fastest measured route (MODEL.*), eval only
    views = cfg.TEST.NUM_ENSEMBLE_VIEWS * cfg.TEST.NUM_SPATIAL_CROPS
    per_forward = cfg.TEST.CLIPS_PER_FORWARD or max(cfg.TEST.BATCH_SIZE // du.get_world_size(), 1)
    idx_l, lab_l, valid_l, score_l, ids = [], [], [], [], []
    t0 = time.perf_counter()
    n_batches = len(test_loader)
    for it, (inputs, labels, index, meta) in enumerate(test_loader):
        x = inputs[0] if isinstance(inputs, (list, tuple)) else inputs
        if x.dim() != 6:
            raise ValueError(f"test items must be N,V,C,T,H,W clips; got shape {tuple(x.shape)}")
        n, v = x.shape[:2]
        if v != views:
            raise ValueError(
                f"test batch has {v} views per video, expected TEST.NUM_ENSEMBLE_VIEWS x TEST.NUM_SPATIAL_CROPS = {views}"
            )
        flat = x.reshape((n * v,) + tuple(x.shape[2:]))
        outs = []
        for chunk in flat.split(per_forward):
            outs.append(model(inputs_to_device(chunk, cfg, device)).float().cpu())
        scores = torch.cat(outs).view(n, v, -1)
        score_l.append(scores)
        lab_l.append(labels.view(-1).cpu().long())
        idx_l.append(torch.as_tensor(index).view(-1).cpu().long())
        valid_l.append(torch.tensor([bool(x) for x in meta_values(meta, "valid", n, True)]))
        ids.extend(str(x) for x in meta_values(meta, "video_id", n, ""))
        if (it + 1) % cfg.LOG_PERIOD == 0 or it + 1 == n_batches:
            logger.info("test iter %d/%d (%.2fs per batch)", it + 1, n_batches, (time.perf_counter() - t0) / (it + 1))
    k = cfg.MODEL.NUM_CLASSES
    if score_l:
        return torch.cat(idx_l), torch.cat(lab_l), torch.cat(valid_l), torch.cat(score_l), ids
    return (torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.bool),
            torch.zeros(0, views, k), ids)


def gather_test_scores(index, labels, valid, scores, ids):
    """Returns the de-duplicated union over processes of collect_test_scores' results, sorted by index."""
    index_g, labels_g, valid_g, scores_g = du.all_gather([index, labels, valid.to(torch.uint8), scores])
    ids_g = [i for lst in du.all_gather_object(ids) for i in lst]
    index_g, labels_g, valid_g, scores_g, ids_g = dedupe_by_index(index_g, labels_g, valid_g.bool(), scores_g, ids_g)
    return index_g, labels_g, valid_g, scores_g, ids_g


def _class_names(loader, num_classes):
    names = getattr(getattr(loader, "dataset", None), "class_names", None)
    if names is None or len(names) != num_classes:
        return [str(i) for i in range(num_classes)]
    return [str(n) for n in names]


def scores_path(cfg):
    """Returns where the per-view test scores are written (TEST.SAVE_RESULTS_PATH relative to OUTPUT_DIR)."""
    name = cfg.TEST.SAVE_RESULTS_PATH or "test_scores.pt"
    return name if os.path.isabs(name) else os.path.join(cfg.OUTPUT_DIR, name)


def write_test_outputs(cfg, rep, class_names, writer=None):
    """Writes the per-class accuracy CSV, the confusion matrix (CSV + PNG) and TensorBoard figure."""
    out = cfg.OUTPUT_DIR
    with open(os.path.join(out, "test_per_class_accuracy.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["class_index", "class_name", "num_videos", "top1_acc"])
        for i, name in enumerate(class_names):
            acc = float(rep["per_class_acc"][i])
            w.writerow([i, name, int(rep["per_class_count"][i]), "" if acc != acc else f"{acc:.2f}"])
    cmat = rep["confusion_matrix"]
    with open(os.path.join(out, "test_confusion_matrix.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["true\\pred"] + class_names)
        for i, row in enumerate(cmat.tolist()):
            w.writerow([class_names[i]] + row)
    from vov3d.utils import plots

    plots.plot_confusion_matrix(cmat, os.path.join(out, "test_confusion_matrix.png"), class_names,
                                figsize=cfg.TENSORBOARD.CONFUSION_MATRIX.FIGSIZE)
    if writer is not None and cfg.TENSORBOARD.CONFUSION_MATRIX.ENABLE:
        writer.add_figure("Test/confusion_matrix", plots.confusion_matrix_figure(
            cmat, class_names, cfg.TENSORBOARD.CONFUSION_MATRIX.FIGSIZE))


def pick_test_checkpoint(cfg):
    """Returns the checkpoint test() loads: TEST.CHECKPOINT_FILE_PATH, else the newest in OUTPUT_DIR,
    else TRAIN.CHECKPOINT_FILE_PATH, else None (random weights, logged)."""
    if cfg.TEST.CHECKPOINT_FILE_PATH:
        return cfg.TEST.CHECKPOINT_FILE_PATH
    last = cu.get_last_checkpoint(cfg.OUTPUT_DIR)
    if last:
        return last
    return cfg.TRAIN.CHECKPOINT_FILE_PATH or None


def test(cfg):
    """Runs the multi-view test of the configured checkpoint; returns the report dict (top1_acc,
    top5_acc, mean_class_acc, num_videos, invalid ids, ...). Writes test_scores.pt, the per-class
    table and the confusion matrix into OUTPUT_DIR on the master process."""
    from vov3d.config import validate
    from vov3d.datasets import loader as data_loader
    from vov3d.models import build_model
    from vov3d.models.build import model_device
    from vov3d.utils import env

    validate(cfg)  # the Python API path: tools have validated already, a hand-built cfg has not
    os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
    vlog.setup_logging(cfg.OUTPUT_DIR)
    env.set_seed(cfg.RNG_SEED + du.get_rank())
    test_loader = data_loader.construct_loader(cfg, "test")  # data first: wrong paths fail fast
    model = build_model(cfg)
    device = model_device(cfg)
    path = pick_test_checkpoint(cfg)
    if path:
        cu.load_checkpoint(path, model, clear_name_pattern=tuple(cfg.TRAIN.CHECKPOINT_CLEAR_NAME_PATTERN))
        if cfg.TRAIN.EMA.ENABLE and cfg.TRAIN.EMA.EVAL:
            ckpt = cu.read_checkpoint(path)
            if "ema_state" in ckpt:
                model.load_state_dict(ckpt["ema_state"]["model_state"])
                logger.info("Testing the EMA weights of %s", path)
        logger.info("Testing checkpoint %s", path)
    else:
        logger.warning("No checkpoint to test (TEST/TRAIN.CHECKPOINT_FILE_PATH empty, none in %s): testing "
                       "random weights, which is only useful for debugging.", cu.get_checkpoint_dir(cfg.OUTPUT_DIR))
    num_videos = len(test_loader.dataset)
    views = cfg.TEST.NUM_ENSEMBLE_VIEWS * cfg.TEST.NUM_SPATIAL_CROPS
    logger.info("Testing %d videos x %d views (%d clips x %d crops) on %d process(es)", num_videos, views,
                cfg.TEST.NUM_ENSEMBLE_VIEWS, cfg.TEST.NUM_SPATIAL_CROPS, du.get_world_size())
    start = time.perf_counter()
    local = collect_test_scores(test_loader, model, cfg, device)
    index, labels, valid, scores, ids = gather_test_scores(*local)
    video_scores = ensemble_views(scores, cfg.DATA.ENSEMBLE_METHOD)
    rep = classification_report(video_scores, labels, valid, cfg.MODEL.NUM_CLASSES)
    missing = num_videos - int(index.numel())
    invalid_ids = [ids[i] for i in torch.nonzero(~valid).view(-1).tolist()]
    rep.update({"num_invalid": len(invalid_ids), "invalid_video_ids": invalid_ids, "num_missing": missing,
                "checkpoint": path, "num_views": views})
    stats = {
        "_type": "test_final",
        "top1_acc": rep["top1_acc"],
        "top5_acc": rep["top5_acc"],
        "top1_err": 100.0 - rep["top1_acc"],
        "top5_err": 100.0 - rep["top5_acc"],
        "mean_class_acc": rep["mean_class_acc"],
        "num_videos": rep["num_videos"],
        "num_invalid": len(invalid_ids),
        "num_missing": missing,
        "views": f"{cfg.TEST.NUM_ENSEMBLE_VIEWS}x{cfg.TEST.NUM_SPATIAL_CROPS}",
        "ensemble": cfg.DATA.ENSEMBLE_METHOD,
        "time_diff": time.perf_counter() - start,
    }
    if missing:
        logger.error("%d of %d test videos produced no scores (world size %d); accuracy covers the others.",
                     missing, num_videos, du.get_world_size())
    if invalid_ids:
        logger.warning("%d test video(s) could not be decoded and are excluded from the accuracy: %s%s",
                       len(invalid_ids), ", ".join(invalid_ids[:20]), " ..." if len(invalid_ids) > 20 else "")
    logger.info(
        "Test: top-1 %.2f%%  top-5 %.2f%%  mean-class %.2f%%  over %d videos (%d undecodable excluded), %s views, %s",
        rep["top1_acc"], rep["top5_acc"], rep["mean_class_acc"], rep["num_videos"], len(invalid_ids),
        stats["views"], cfg.DATA.ENSEMBLE_METHOD,
    )
    vlog.log_json_stats(stats, cfg.OUTPUT_DIR)
    if du.is_master_proc():
        class_names = _class_names(test_loader, cfg.MODEL.NUM_CLASSES)
        if cfg.TEST.SAVE_SCORES:
            out = {
                "video_index": index,
                "video_ids": ids,
                "labels": labels,
                "valid": valid,
                "scores": scores,
                "num_ensemble_views": cfg.TEST.NUM_ENSEMBLE_VIEWS,
                "num_spatial_crops": cfg.TEST.NUM_SPATIAL_CROPS,
                "view_order": "clip-major: view = clip * num_spatial_crops + crop",
                "score_type": "softmax",
                "ensemble_method": cfg.DATA.ENSEMBLE_METHOD,
                "class_names": class_names,
                "checkpoint": path or "",
            }
            cu.atomic_torch_save(out, scores_path(cfg))
            logger.info("Per-view scores saved to %s (re-ensemble with vov3d.engine.evaluate.reensemble)",
                        scores_path(cfg))
        writer = run_dir.make_tb_writer(cfg)
        write_test_outputs(cfg, rep, class_names, writer)
        if writer is not None:
            writer.add_scalar("Test/Top1_acc", rep["top1_acc"], 0)
            writer.add_scalar("Test/Top5_acc", rep["top5_acc"], 0)
            writer.close()
        run_dir.update_manifest(cfg, {"test": {k: v for k, v in stats.items() if k != "_type"},
                                      "test_dataset_size": num_videos})
    du.synchronize()
    return rep


test.__test__ = False  # not a pytest test when imported into a test module
