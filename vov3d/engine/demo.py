"""Prediction for one video file, with the views and ensembling of the multi-view test."""

import json
import logging

import torch

from vov3d.utils import checkpoint as cu

logger = logging.getLogger(__name__)


def class_names_for(cfg, checkpoint=None):
    """Returns the class names in index order: the checkpoint's, DEMO.LABEL_FILE_PATH's, the
    TEST.DATASET's (when its annotations are reachable), else "class <i>"."""
    if checkpoint is not None and checkpoint.get("class_names"):
        return list(checkpoint["class_names"])
    if cfg.DEMO.LABEL_FILE_PATH:
        with open(cfg.DEMO.LABEL_FILE_PATH, "r", encoding="utf-8") as f:
            mapping = json.load(f)
        names = [None] * len(mapping)
        for name, i in mapping.items():
            names[int(i)] = name
        return names
    try:
        from vov3d.datasets import build_dataset

        return list(build_dataset(cfg.TEST.DATASET, cfg, "test").class_names)
    except (FileNotFoundError, RuntimeError, ValueError, KeyError) as e:
        logger.info("Class names unavailable (%s); printing indices", e)
        return [f"class {i}" for i in range(cfg.MODEL.NUM_CLASSES)]


def predict_video(cfg, path, top=5):
    """Returns {"top": [(name, score)...], "scores": per-class mean probability, views, checkpoint}.

    The video is decoded once and cut into TEST.NUM_ENSEMBLE_VIEWS x TEST.NUM_SPATIAL_CROPS views as
    TEST.DATASET tests its videos; the views' softmax scores are combined by DATA.ENSEMBLE_METHOD.
    """
    from vov3d.datasets.single import SingleVideo
    from vov3d.engine.evaluate import ensemble_views, pick_test_checkpoint
    from vov3d.models import build_model
    from vov3d.models.build import model_device
    from vov3d.runtime import prepare_for_inference, to_model_format

    model = build_model(cfg).eval()
    device = model_device(cfg)
    ckpt_path = pick_test_checkpoint(cfg)
    checkpoint = None
    if ckpt_path:
        cu.load_checkpoint(ckpt_path, model, data_parallel=False)
        checkpoint = cu.read_checkpoint(ckpt_path)
    dataset = SingleVideo(cfg, path, cfg.TEST.DATASET)
    views, _, _, meta = dataset[0]
    if not meta["valid"]:
        raise ValueError(f"{path}: cannot be decoded: {meta['error']}")
    clips = to_model_format(views[0], cfg, device)
    model = prepare_for_inference(model, cfg)
    with torch.no_grad():
        probs = model([clips]).float().cpu()  # eval mode: (V, K) probabilities
    scores = ensemble_views(probs.unsqueeze(0), cfg.DATA.ENSEMBLE_METHOD)[0]
    scores = scores / scores.sum()
    names = class_names_for(cfg, checkpoint)
    k = min(top, scores.numel())
    values, indices = scores.topk(k)
    return {
        "video": path,
        "top": [(names[i] if i < len(names) else f"class {i}", float(v)) for v, i in zip(values.tolist(), indices.tolist())],
        "scores": scores.tolist(),
        "views": int(probs.shape[0]),
        "clips": cfg.TEST.NUM_ENSEMBLE_VIEWS,
        "crops": cfg.TEST.NUM_SPATIAL_CROPS,
        "checkpoint": ckpt_path,
    }
