"""Grad-CAM (Selvaraju et al., ICCV 2017) for video models, on any layer, as PNG strips and GIFs.

    cams, logits = grad_cam(model, clips)                  # (N, T, H, W) in [0, 1], at the input's size
    visualize(cfg, ["a.webm"], "out/cam")                 # <video>_cam.png / .gif (+ TensorBoard images)

The map is ReLU(sum_c w_c A_c) over the chosen layer's output A (default: the model's FEATURE_LAYER,
the last feature map), w_c the gradient of the target logit (default: the predicted class) averaged
over A's positions; it is upsampled (trilinear) to the clip. Logits, not probabilities, are
differentiated (forward_head), as the paper does; the chosen module's output must not be modified in
place by what follows it (stage and block outputs are not).
"""

import logging
import os

import numpy as np
import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)


def _first(out):
    return out[0] if isinstance(out, (list, tuple)) else out


def grad_cam(model, clips, layer=None, target=None):
    """Returns (cams (N, T, H, W) float in [0, 1] at the clips' size, logits (N, K)) of `clips`
    (N, C, T, H, W) for `layer` (a module name; default model.FEATURE_LAYER) and `target` (class
    indices, an int for all, or None: each clip's predicted class). The model is used in eval mode."""
    name = layer or model.FEATURE_LAYER
    modules = dict(model.named_modules())
    if name not in modules:
        raise KeyError(f"layer {name!r} is not a module of {type(model).__name__}; e.g. "
                       + ", ".join(n for n, _ in list(model.named_children())[:8]))
    saved = {}

    def keep(module, inputs, output):
        saved["out"] = _first(output)

    was_training = model.training
    model.eval()
    handle = modules[name].register_forward_hook(keep)
    try:
        with torch.enable_grad():
            x = clips.detach().clone().requires_grad_(True)  # activations get gradients even with frozen weights
            logits = model.forward_head(model.forward_features(x))
            if target is None:
                target = logits.argmax(dim=1)
            target = torch.as_tensor(target, device=logits.device).long().expand(logits.shape[0])
            if "out" not in saved:
                raise ValueError(f"layer {name!r} does not run in the model's forward_features / forward_head")
            # The gradient of the layer's output only: the weights' .grad stay untouched.
            (grad,) = torch.autograd.grad(logits.gather(1, target.view(-1, 1)).sum(), saved["out"])
    finally:
        handle.remove()
        model.train(was_training)
    act, grad = saved["out"].detach(), grad.detach()
    if act.dim() != 5:
        raise ValueError(f"layer {name!r} gives a {act.dim()}-D output; Grad-CAM needs an N,C,T,H,W feature map")
    weights = grad.mean(dim=(2, 3, 4), keepdim=True)
    cam = F.relu((weights * act).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam, size=tuple(clips.shape[2:]), mode="trilinear", align_corners=False)[:, 0]
    flat = cam.flatten(1)
    lo, hi = flat.min(1).values.view(-1, 1, 1, 1), flat.max(1).values.view(-1, 1, 1, 1)
    cam = (cam - lo) / (hi - lo).clamp_min(1e-12)
    return cam.detach().cpu(), logits.detach().cpu()


def to_frames(clip, mean, std, bgr=False):
    """Returns the uint8 (T, H, W, 3) RGB frames of a normalised (C, T, H, W) model input."""
    mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1, 1)
    std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1, 1)
    x = (clip.detach().float().cpu() * std + mean).clamp(0, 1)
    if bgr:
        x = x.flip(0)
    return (x.permute(1, 2, 3, 0) * 255).round().to(torch.uint8).numpy()


def overlay(frames, cam, alpha=0.5, colormap="jet"):
    """Returns uint8 (T, H, W, 3) frames blended with the colour-mapped (T, H, W) cam."""
    from matplotlib import colormaps

    heat = colormaps[colormap](np.asarray(cam, dtype=np.float32))[..., :3] * 255.0
    return (frames.astype(np.float32) * (1 - alpha) + heat * alpha).round().clip(0, 255).astype(np.uint8)


def _resized(frames, min_side):
    from PIL import Image

    h, w = frames.shape[1:3]
    scale = max(1.0, min_side / min(h, w))
    size = (round(w * scale), round(h * scale))
    return [Image.fromarray(f).resize(size, Image.BILINEAR) for f in frames]


def save_strip(path, frames, blended, min_side=112):
    """Writes a PNG with the frames (top row) above their overlays (bottom row); returns path."""
    from PIL import Image

    from vov3d.utils.checkpoint import write_atomically

    top, bottom = _resized(frames, min_side), _resized(blended, min_side)
    w, h = top[0].size
    sheet = Image.new("RGB", (w * len(top), h * 2))
    for i, (a, b) in enumerate(zip(top, bottom)):
        sheet.paste(a, (i * w, 0))
        sheet.paste(b, (i * w, h))
    return write_atomically(path, lambda f: sheet.save(f, format="PNG"))


def save_gif(path, blended, fps=4, min_side=112):
    """Writes the overlays as a looping animated GIF; returns path."""
    from vov3d.utils.checkpoint import write_atomically

    images = _resized(blended, min_side)
    return write_atomically(path, lambda f: images[0].save(f, format="GIF", save_all=True, append_images=images[1:],
                                                           duration=int(1000 / fps), loop=0))


def _videos(cfg, sources):
    """Yields (video id, view tensor (V, C, T, H, W), meta) of every video of `sources` (files, split
    names of TEST.DATASET or annotation files), with the test's views."""
    from vov3d.apps.features import list_dataset
    from vov3d.datasets.single import SingleVideo

    for source in sources:
        if os.path.isfile(source) and not source.endswith((".json", ".csv", ".txt")):
            datasets = [SingleVideo(cfg, source, cfg.TEST.DATASET)]
        else:
            datasets = [list_dataset(cfg, source)[1]]
        for ds in datasets:
            for i in range(len(ds)):
                views, _, _, meta = ds[i]
                vid = meta["video_id"]
                if isinstance(ds, SingleVideo):
                    vid = os.path.splitext(vid)[0]  # a file is named by its stem: clip.webm -> clip_cam.gif
                yield vid, views[0], meta, ds


def visualize(cfg, sources, output_dir, checkpoint=None, layer=None, target=None, view=None, max_videos=None,
              fps=4):
    """Writes <video>_cam.png (frame strip) and <video>_cam.gif (animated overlay) for every video of
    `sources` (files, splits or annotation files) into `output_dir`, and TensorBoard images when
    TENSORBOARD.ENABLE; returns [{video, predicted, target, png, gif}]. `view`: which test view (default:
    the first clip's centre crop); undecodable videos are skipped with a warning."""
    from vov3d.apps.common import load_trained_model
    from vov3d.engine import run_dir
    from vov3d.engine.demo import class_names_for
    from vov3d.models.build import model_device
    from vov3d.utils import checkpoint as cu

    model, path = load_trained_model(cfg, checkpoint)
    names = class_names_for(cfg, cu.read_checkpoint(path) if path else None)
    device = model_device(cfg)
    writer = run_dir.make_tb_writer(cfg)
    os.makedirs(output_dir, exist_ok=True)
    done = []
    for n, (vid, views, meta, ds) in enumerate(_videos(cfg, sources)):
        if max_videos is not None and n >= max_videos:
            break
        if not meta["valid"]:
            logger.warning("Skipping %s: %s", vid, meta["error"])
            continue
        v = view if view is not None else ds.num_crops // 2  # clip 0, centre crop
        if not 0 <= v < views.shape[0]:
            raise ValueError(f"view {v} out of range: the test gives {views.shape[0]} views per video")
        clip = views[v : v + 1].to(device)
        cams, logits = grad_cam(model, clip, layer, target)
        frames = to_frames(clip[0], cfg.DATA.MEAN, cfg.DATA.STD, bgr=ds.transform.bgr)
        blended = overlay(frames, cams[0].numpy())
        stem = os.path.join(output_dir, f"{vid}_cam")
        pred = int(logits[0].argmax())
        tgt = pred if target is None else int(target)
        item = {"video": vid, "predicted": names[pred] if pred < len(names) else pred,
                "target": names[tgt] if tgt < len(names) else tgt,
                "png": save_strip(stem + ".png", frames, blended), "gif": save_gif(stem + ".gif", blended, fps)}
        if writer is not None:
            writer.add_images(f"CAM/{vid}", torch.from_numpy(blended).permute(0, 3, 1, 2), 0, dataformats="NCHW")
        done.append(item)
        logger.info("%s: predicted %s, CAM of %s on %s -> %s", vid, item["predicted"], item["target"],
                    layer or model.FEATURE_LAYER, item["gif"])
    if writer is not None:
        writer.close()
    return done
