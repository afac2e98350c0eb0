"""PySlowFast compatibility: the keys of PySlowFast's and the official VoV3D code's config trees that
vov3d does not read, so that their YAML files (and the config stored in their checkpoints) still load.

Such a key is accepted by the loader and dropped: it never enters the tree that is printed, saved in
config.yaml / manifest.json or stored in checkpoints. A value other than the default listed here logs
one warning naming the key (once per process). A row whose default is ``ANY`` covers keys that only mean
something to a feature that is refused elsewhere (``MODEL.ARCH`` slowfast / mvit / ... by validate(),
``TRAIN.DATASET`` ava by the dataset registry) or switched on by a key of its own row; they are dropped
silently. A row may name a whole subtree ("AVA"): every key under it matches.

Defaults are those of PySlowFast (facebookresearch/SlowFast, slowfast/config/defaults.py) and of the
official VoV3D tree, which is PySlowFast's of 2020 plus VOV3D.*.
"""

import logging

logger = logging.getLogger(__name__)

ANY = object()  # any value: no warning of its own

NOT_IMPLEMENTED = "not implemented in vov3d yet; ignored"
UNSUPPORTED = "a PySlowFast feature vov3d does not have; ignored"
# Official VoV3D and PySlowFast X3D YAMLs set some of these; X3D and VoV3D ignore them in the official code too.
RESNET_ONLY = "read only by PySlowFast's ResNet-family models (MODEL.ARCH c2d / i3d / slow / slowfast)"

# PySlowFast MODEL.ARCH values of models vov3d does not build (every PySlowFast config sets MODEL.ARCH).
PYSLOWFAST_ARCHS = {
    "slowfast": "PySlowFast's SlowFast",
    "slow": "PySlowFast's Slow (ResNet)",
    "c2d": "PySlowFast's C2D (ResNet)",
    "i3d": "PySlowFast's I3D (ResNet)",
    "slow_c2d": "PySlowFast's Slow/C2D (ResNet)",
    "2d": "PySlowFast's 2D ResNet",
    "mvit": "PySlowFast's MViT",
    "maskmvit": "PySlowFast's MaskMViT",
    "r2plus1d": "PyTorchVideo's R(2+1)D (vov3d's own: MODEL.ARCH resnet3d, RESNET3D.ARCH r2plus1d)",
    "csn": "PyTorchVideo's CSN (vov3d's own: MODEL.ARCH resnet3d, RESNET3D.ARCH ir_csn / ip_csn)",
}

# (key or subtree, default, why it is not in the tree)
TABLE = (
    # Parts of the training recipes vov3d does not reproduce.
    ("AUG.NUM_SAMPLE", 1, UNSUPPORTED + " (repeated augmentation)"),
    ("AUG.COLOR_JITTER", ANY, "PySlowFast's video loaders do not read it either (RandAugment replaces it)"),
    ("AUG.RE_SPLIT", ANY, "PySlowFast's video loaders do not read it either"),
    ("AUG.GEN_MASK_LOADER", False, UNSUPPORTED + " (MaskFeat masks)"),
    ("AUG.MASK_TUBE", ANY, "read only with AUG.GEN_MASK_LOADER"),
    ("AUG.MASK_FRAMES", ANY, "read only with AUG.GEN_MASK_LOADER"),
    ("AUG.MASK_WINDOW_SIZE", ANY, "read only with AUG.GEN_MASK_LOADER"),
    ("AUG.MASK_RATIO", ANY, "read only by PySlowFast's MViT / MaskFeat"),
    ("AUG.MAX_MASK_PATCHES_PER_BLOCK", ANY, "read only with AUG.GEN_MASK_LOADER"),
    ("MULTIGRID.BN_BASE_SIZE", 8, "sub-batch BN is not implemented: multigrid BN statistics are over the "
     "whole per-process batch; ignored"),
    ("MULTIGRID.LONG_CYCLE_SAMPLING_RATE", ANY, "set at run time by PySlowFast, derived by vov3d"),
    ("MULTIGRID.DEFAULT_B", ANY, "set at run time by PySlowFast, derived by vov3d"),
    ("MULTIGRID.DEFAULT_T", ANY, "set at run time by PySlowFast, derived by vov3d"),
    ("MULTIGRID.DEFAULT_S", ANY, "set at run time by PySlowFast, derived by vov3d"),
    # Models vov3d does not build: refused through MODEL.ARCH (PYSLOWFAST_ARCHS).
    ("SLOWFAST", ANY, "read only by MODEL.ARCH slowfast"),
    ("MVIT", ANY, "read only by MODEL.ARCH mvit"),
    ("MASK.ENABLE", False, UNSUPPORTED),
    ("MASK", ANY, "read only with MASK.ENABLE"),
    ("CONTRASTIVE", ANY, "read only by MODEL.MODEL_NAME ContrastiveModel"),
    ("NONLOCAL.LOCATION", lambda v: not _has_leaf(v), UNSUPPORTED + " (non-local blocks)"),
    ("NONLOCAL", ANY, "read only with NONLOCAL.LOCATION"),
    ("MODEL.SINGLE_PATHWAY_ARCH", ANY, "PySlowFast's list of its architectures"),
    ("MODEL.MULTI_PATHWAY_ARCH", ANY, "PySlowFast's list of its architectures"),
    ("MODEL.DROPCONNECT_RATE", 0.0, NOT_IMPLEMENTED + " (stochastic depth)"),
    ("MODEL.DETACH_FINAL_FC", False, UNSUPPORTED),
    ("MODEL.FROZEN_BN", False, UNSUPPORTED),
    ("MODEL.FP16_ALLREDUCE", False, UNSUPPORTED),
    ("RESNET.NUM_GROUPS", ANY, RESNET_ONLY),
    ("RESNET.STRIDE_1X1", ANY, RESNET_ONLY),
    ("RESNET.INPLACE_RELU", ANY, RESNET_ONLY),
    ("RESNET.NUM_BLOCK_TEMP_KERNEL", ANY, RESNET_ONLY),
    ("RESNET.SPATIAL_STRIDES", ANY, RESNET_ONLY + "; VoV3D reads VOV3D.SPATIAL_STRIDES"),
    ("RESNET.SPATIAL_DILATIONS", ANY, RESNET_ONLY),
    ("RESNET.ZERO_INIT_FINAL_CONV", False, UNSUPPORTED),
    ("VOV3D.TEMPORAL_DILATIONS", [[1], [1], [1], [1]], "has no effect in the official code either; ignored"),
    ("VOV3D.DIM_C5", 2048, "the VoV3D head reads X3D.DIM_C5, as the official code does; ignored"),
    ("VOV3D.BN_LIN5", False, "the VoV3D head reads X3D.BN_LIN5, as the official code does; ignored"),
    # Detection, AVA, demo and visualisation.
    ("DETECTION.ENABLE", False, UNSUPPORTED + " (detection)"),
    ("DETECTION", ANY, "read only with DETECTION.ENABLE"),
    ("AVA", ANY, "read only by the AVA dataset (TRAIN.DATASET ava), which vov3d does not have"),
    ("DEMO.ENABLE", False, UNSUPPORTED + " (webcam / AVA demo); vov3d's is tools/demo_net.py --video"),
    ("DEMO.INPUT_VIDEO", "", "tools/demo_net.py takes the video as --video; ignored"),
    ("DEMO", ANY, "read only with DEMO.ENABLE"),
    ("TENSORBOARD.MODEL_VIS.ENABLE", False, UNSUPPORTED + " (model visualisation)"),
    ("TENSORBOARD.MODEL_VIS", ANY, "read only with TENSORBOARD.MODEL_VIS.ENABLE"),
    ("TENSORBOARD.HISTOGRAM.ENABLE", False, UNSUPPORTED),
    ("TENSORBOARD.HISTOGRAM", ANY, "read only with TENSORBOARD.HISTOGRAM.ENABLE"),
    ("TENSORBOARD.WRONG_PRED_VIS.ENABLE", False, UNSUPPORTED),
    ("TENSORBOARD.WRONG_PRED_VIS", ANY, "read only with TENSORBOARD.WRONG_PRED_VIS.ENABLE"),
    ("TENSORBOARD.PREDICTIONS_PATH", "", UNSUPPORTED),
    ("TENSORBOARD.CLASS_NAMES_PATH", "", UNSUPPORTED + "; plots name classes after the dataset"),
    ("TENSORBOARD.CATEGORIES_PATH", "", UNSUPPORTED),
    ("TENSORBOARD.CONFUSION_MATRIX.SUBSET_PATH", "", UNSUPPORTED),
    ("VIS_MASK.ENABLE", False, UNSUPPORTED),
    ("TASK", "", UNSUPPORTED),
    # Training, data and solver keys of other recipes.
    ("TRAIN.CHECKPOINT_TYPE", "pytorch", "only PyTorch checkpoints load (no Caffe2); ignored"),
    ("TEST.CHECKPOINT_TYPE", "pytorch", "only PyTorch checkpoints load (no Caffe2); ignored"),
    ("TRAIN.CHECKPOINT_INFLATE", False, UNSUPPORTED + " (2D-to-3D inflation)"),
    ("TRAIN.CHECKPOINT_IN_INIT", False, UNSUPPORTED),
    ("TRAIN.KILL_LOSS_EXPLOSION_FACTOR", 0.0, "vov3d always stops on a NaN / infinite loss; ignored"),
    ("TEST.NUM_TEMPORAL_CLIPS", [], UNSUPPORTED),
    ("BN.NUM_SPLITS", 1, NOT_IMPLEMENTED + " (sub-batch BN)"),
    ("BN.NUM_SYNC_DEVICES", 1, "BN.NORM_TYPE sync_batchnorm syncs over all processes; ignored"),
    ("BN.GLOBAL_SYNC", False, "BN.NORM_TYPE sync_batchnorm syncs over all processes; ignored"),
    ("DATA.MULTI_LABEL", False, NOT_IMPLEMENTED + " (multi-label targets)"),
    ("DATA.TRAIN_PCA_EIGVAL", ANY, "PCA colour jitter of PySlowFast's self-supervised recipes; ignored"),
    ("DATA.TRAIN_PCA_EIGVEC", ANY, "PCA colour jitter of PySlowFast's self-supervised recipes; ignored"),
    ("DATA.PATH_TO_PRELOAD_IMDB", "", UNSUPPORTED),
    ("DATA.TRAIN_JITTER_SCALES_RELATIVE", [], UNSUPPORTED + " (random resized crop)"),
    ("DATA.TRAIN_JITTER_ASPECT_RELATIVE", [], UNSUPPORTED + " (random resized crop)"),
    ("DATA.USE_OFFSET_SAMPLING", False, UNSUPPORTED),
    ("DATA.TRAIN_JITTER_MOTION_SHIFT", False, UNSUPPORTED),
    ("DATA.TRAIN_JITTER_FPS", 0.0, UNSUPPORTED),
    ("DATA.DECODING_SHORT_SIZE", 256, "vov3d decodes at full size; ignored"),
    ("DATA.TRAIN_CROP_NUM_TEMPORAL", 1, UNSUPPORTED),
    ("DATA.TRAIN_CROP_NUM_SPATIAL", 1, UNSUPPORTED),
    ("DATA.COLOR_RND_GRAYSCALE", 0.0, UNSUPPORTED),
    ("DATA.LOADER_CHUNK_SIZE", 0, UNSUPPORTED),
    ("DATA.LOADER_CHUNK_OVERALL_SIZE", 0, UNSUPPORTED),
    ("DATA.SKIP_ROWS", 0, UNSUPPORTED),
    ("DATA.TIME_DIFF_PROB", 0.0, UNSUPPORTED),
    ("DATA.SSL_COLOR_JITTER", False, UNSUPPORTED),
    ("DATA.SSL_COLOR_BRI_CON_SAT", ANY, "read only with DATA.SSL_COLOR_JITTER"),
    ("DATA.SSL_COLOR_HUE", ANY, "read only with DATA.SSL_COLOR_JITTER"),
    ("DATA.SSL_MOCOV2_AUG", False, UNSUPPORTED),
    ("DATA.SSL_BLUR_SIGMA_MIN", ANY, "read only with DATA.SSL_MOCOV2_AUG"),
    ("DATA.SSL_BLUR_SIGMA_MAX", ANY, "read only with DATA.SSL_MOCOV2_AUG"),
    ("DATA.IN22K_TRAINVAL", False, UNSUPPORTED),
    ("DATA.IN22k_VAL_IN1K", "", UNSUPPORTED),
    ("DATA.IN_VAL_CROP_RATIO", 0.875, UNSUPPORTED),
    ("DATA.DUMMY_LOAD", False, UNSUPPORTED),
    ("DATA_LOADER.ENABLE_MULTI_THREAD_DECODE", False, "vov3d decodes a test video once for all its views; ignored"),
    ("SOLVER.GAMMA", 0.1, "read only by PySlowFast LR policies vov3d does not have (SOLVER.LR_POLICY)"),
    ("SOLVER.STEP_SIZE", 1, "read only by PySlowFast LR policies vov3d does not have (SOLVER.LR_POLICY)"),
    ("SOLVER.WARMUP_FACTOR", 0.1, "warm-up starts at SOLVER.WARMUP_START_LR; ignored"),
    ("SOLVER.ZERO_WD_1D_PARAM", False, UNSUPPORTED),
    ("SOLVER.LARS_ON", False, UNSUPPORTED),
    ("SOLVER.LAYER_DECAY", 1.0, UNSUPPORTED),
    ("SOLVER.BETAS", [0.9, 0.999], "adam / adamw use torch's default betas; ignored"),
    ("BENCHMARK.LOG_PERIOD", 100, "tools/benchmark.py prints one summary; ignored"),
    ("BENCHMARK.SHUFFLE", True, "tools/benchmark.py reads the loaders as training does; ignored"),
)


def _has_leaf(value):
    """Returns True when a nested list holds any non-list item (a non-local location)."""
    if isinstance(value, (list, tuple)):
        return any(_has_leaf(v) for v in value)
    return True


def row_for(key):
    """Returns the table row (key, default, reason) that covers `key` (a dotted path), or None."""
    for row in TABLE:
        if key == row[0] or key.startswith(row[0] + "."):
            return row
    return None


def is_default(row, value):
    """Returns True when `value` is the row's default (always, for ANY rows)."""
    default = row[1]
    if default is ANY:
        return True
    if callable(default):
        return default(value)
    return _same(value, default)


def _same(a, b):
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


_warned = set()


def accept(key, value, source):
    """Drops a compatibility key's value, warning once per process when it is not the default; returns
    True when `key` is a compatibility key (False: the caller decides)."""
    row = row_for(key)
    if row is None:
        return False
    if not is_default(row, value) and key not in _warned:
        _warned.add(key)
        logger.warning("%s = %r (%s): %s", key, value, source, row[2])
    return True
