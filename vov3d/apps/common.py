"""What the applications share: a trained model from a config and a checkpoint, the clip shape it takes."""

import logging

import torch

from vov3d.utils import checkpoint as cu

logger = logging.getLogger(__name__)


def resolve_checkpoint(cfg, checkpoint=None):
    """Returns the checkpoint to use: `checkpoint`, else the multi-view test's choice
    (TEST.CHECKPOINT_FILE_PATH, the newest in OUTPUT_DIR, TRAIN.CHECKPOINT_FILE_PATH), else None."""
    from vov3d.engine.evaluate import pick_test_checkpoint

    return checkpoint or pick_test_checkpoint(cfg)


def load_trained_model(cfg, checkpoint=None, allow_random=False):
    """Returns (plain model in eval mode on cfg's device, checkpoint path or None) with the weights of
    `checkpoint` (see resolve_checkpoint) loaded exactly: a classifier of another class count is an
    error here, not a fresh layer. Without any checkpoint: ValueError unless `allow_random`."""
    from vov3d.models import build_model

    model = build_model(cfg)
    path = resolve_checkpoint(cfg, checkpoint)
    if path:
        cu.load_checkpoint(path, model, data_parallel=False, exact=True)
        logger.info("Loaded weights from %s", path)
    elif allow_random:
        logger.warning("No checkpoint given or found (--checkpoint, TEST.CHECKPOINT_FILE_PATH, OUTPUT_DIR): "
                       "using random weights")
    else:
        raise ValueError("no checkpoint: give --checkpoint PATH (or TEST.CHECKPOINT_FILE_PATH, or a run's OUTPUT_DIR)")
    return model.eval(), path


def test_clip_shape(cfg, batch=1):
    """Returns the shape of a batch of test views under cfg: (batch, C, NUM_FRAMES, TEST_CROP, TEST_CROP)."""
    crop = int(cfg.DATA.TEST_CROP_SIZE)
    return (batch, int(cfg.DATA.INPUT_CHANNEL_NUM[0]), int(cfg.DATA.NUM_FRAMES), crop, crop)


test_clip_shape.__test__ = False


def example_clip(shape, seed=0):
    """Returns a reproducible normalised-looking random clip of `shape` (float32, CPU)."""
    return torch.randn(tuple(shape), generator=torch.Generator().manual_seed(seed))
