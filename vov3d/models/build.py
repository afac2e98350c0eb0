"""Model registry and construction."""

import logging

import torch
from fvcore.common.registry import Registry

from vov3d.config.load import check_model_choice

logger = logging.getLogger(__name__)

MODEL_REGISTRY = Registry("MODEL")
MODEL_REGISTRY.__doc__ = """Registry of video models: MODEL.MODEL_NAME -> nn.Module class taking (cfg)."""


def get_model_class(name):
    """Returns the registered model class for MODEL.MODEL_NAME, with a clear error for unknown names."""
    try:
        return MODEL_REGISTRY.get(name)
    except KeyError:
        known = ", ".join(sorted(k for k, _ in MODEL_REGISTRY))
        raise KeyError(f"MODEL.MODEL_NAME {name!r} is not a registered model; known: {known}") from None


def model_device(cfg, gpu_id=None):
    """Returns the torch.device a model built from cfg lives on (CPU when NUM_GPUS is 0)."""
    if cfg.NUM_GPUS > 0:
        if not torch.cuda.is_available():
            raise RuntimeError(f"NUM_GPUS is {cfg.NUM_GPUS} but CUDA is not available; set NUM_GPUS 0 to run on CPU")
        return torch.device("cuda", torch.cuda.current_device() if gpu_id is None else gpu_id)
    return torch.device("cpu")


def build_model(cfg, gpu_id=None):
    """Returns the plain model named by cfg.MODEL.MODEL_NAME on its device (stock nn modules, NCTHW).

    Speed levers (layout, conv routes, BN folding, fused kernels) are the runtime's job
    (vov3d.runtime.prepare_for_training / prepare_for_inference), wrapping in DistributedDataParallel
    the engine's, so that tools and tests get the bare module.
    """
    check_model_choice(cfg)  # never build another model than the config's MODEL.ARCH names
    model = get_model_class(cfg.MODEL.MODEL_NAME)(cfg)
    if cfg.MODEL.ACT_CHECKPOINT:
        from vov3d.models.stages import set_activation_checkpointing

        if set_activation_checkpointing(model) == 0:
            logger.warning("MODEL.ACT_CHECKPOINT: %s has no residual stages to checkpoint; ignored",
                           cfg.MODEL.MODEL_NAME)
    model.accelerated_eval = cfg.MODEL.ACCELERATED_EVAL
    model.runtime_cfg = cfg  # the MODEL.* levers its fast eval path (vov3d/runtime/eval_path.py) follows
    return model.to(model_device(cfg, gpu_id))
