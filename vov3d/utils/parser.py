"""Command-line arguments (PySlowFast's flags) and config loading: file, then KEY VALUE overrides,
launch-environment inference (torchrun / SLURM), checks, and LR scaling by shards."""

import argparse
import logging
import os
import sys

from vov3d.config.defaults import assert_and_infer_cfg, get_cfg, warn_unimplemented
from vov3d.utils import distributed as du

logger = logging.getLogger(__name__)


class ConfigError(ValueError):
    """A config or command-line problem the user must fix; its message names the key."""


def build_parser(description="vov3d: train and test video classification models."):
    """Returns the argparse parser with PySlowFast's flags."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--cfg", dest="cfg_file", default=None, help="YAML config file")
    parser.add_argument("--init_method", default="tcp://localhost:9999",
                        help="rendezvous of the PySlowFast launch, e.g. tcp://host0:9999 (same on every machine)")
    parser.add_argument("--num_shards", type=int, default=None, help="number of machines (sets NUM_SHARDS)")
    parser.add_argument("--shard_id", type=int, default=None, help="index of this machine (sets SHARD_ID)")
    parser.add_argument("opts", default=None, nargs=argparse.REMAINDER,
                        help="config overrides as KEY VALUE pairs, e.g. NUM_GPUS 0 TRAIN.BATCH_SIZE 8")
    return parser


def parse_args(argv=None):
    """Returns the parsed command line (`--cfg`, `--init_method`, `--num_shards`, `--shard_id`, opts)."""
    return build_parser().parse_args(sys.argv[1:] if argv is None else argv)


def check_cfg(cfg, launched=False, check_devices=True):
    """Raises ConfigError naming the key to fix when values cannot work together (`launched`: the
    processes were started by torchrun / SLURM, which may give each one GPU of its own)."""
    if cfg.SHARD_ID >= cfg.NUM_SHARDS or cfg.SHARD_ID < 0:
        raise ConfigError(f"SHARD_ID {cfg.SHARD_ID} must be in [0, NUM_SHARDS={cfg.NUM_SHARDS})")
    world = du.expected_world_size(cfg)
    procs = f"NUM_SHARDS {cfg.NUM_SHARDS} x " + (f"NUM_GPUS {cfg.NUM_GPUS}" if cfg.NUM_GPUS > 0 else "1 CPU process")
    for key, enabled in (("TRAIN.BATCH_SIZE", cfg.TRAIN.ENABLE), ("TEST.BATCH_SIZE", cfg.TEST.ENABLE)):
        value = cfg.TRAIN.BATCH_SIZE if key.startswith("TRAIN") else cfg.TEST.BATCH_SIZE
        if enabled and (value <= 0 or value % world != 0):
            raise ConfigError(
                f"{key} {value} does not divide by the {world} processes ({procs}): set {key} to a multiple of {world}"
            )
    if cfg.TRAIN.GRAD_ACCUM_STEPS < 1:
        raise ConfigError(f"TRAIN.GRAD_ACCUM_STEPS must be >= 1, got {cfg.TRAIN.GRAD_ACCUM_STEPS}")
    if cfg.TRAIN.MIXED_PRECISION_DTYPE not in ("bfloat16", "float16"):
        raise ConfigError(f"TRAIN.MIXED_PRECISION_DTYPE must be bfloat16 or float16, got {cfg.TRAIN.MIXED_PRECISION_DTYPE!r}")
    if cfg.TRAIN.EMA.ENABLE and not 0.0 < cfg.TRAIN.EMA.DECAY < 1.0:
        raise ConfigError(f"TRAIN.EMA.DECAY must be in (0, 1), got {cfg.TRAIN.EMA.DECAY}")
    if cfg.DATA.ENSEMBLE_METHOD not in ("sum", "max"):
        raise ConfigError(f"DATA.ENSEMBLE_METHOD must be sum or max, got {cfg.DATA.ENSEMBLE_METHOD!r}")
    if cfg.BN.NORM_TYPE not in ("batchnorm", "sync_batchnorm"):
        raise ConfigError(f"BN.NORM_TYPE must be batchnorm or sync_batchnorm, got {cfg.BN.NORM_TYPE!r}")
    if cfg.SOLVER.OPTIMIZING_METHOD not in ("sgd", "adam", "adamw"):
        raise ConfigError(f"SOLVER.OPTIMIZING_METHOD must be sgd, adam or adamw, got {cfg.SOLVER.OPTIMIZING_METHOD!r}")
    if cfg.SOLVER.LR_POLICY not in ("cosine", "steps_with_relative_lrs", "constant"):
        raise ConfigError(f"SOLVER.LR_POLICY must be cosine, steps_with_relative_lrs or constant, got {cfg.SOLVER.LR_POLICY!r}")
    if cfg.SOLVER.LR_POLICY == "steps_with_relative_lrs" and (
        not cfg.SOLVER.STEPS or len(cfg.SOLVER.STEPS) != len(cfg.SOLVER.LRS)
    ):
        raise ConfigError("SOLVER.STEPS and SOLVER.LRS must be non-empty lists of equal length for steps_with_relative_lrs")
    for key, low in (("TRAIN.CHECKPOINT_PERIOD", 1), ("TRAIN.EVAL_PERIOD", 0), ("LOG_PERIOD", 1)):
        value = cfg[key.split(".")[0]][key.split(".")[1]] if "." in key else cfg[key]
        if not isinstance(value, int) or value < low:
            allowed = "an integer >= 1" if low else "an integer >= 0 (0: never)"
            raise ConfigError(f"{key} must be {allowed}, got {value!r}")
    for key in ("DIST_TIMEOUT_MINUTES", "DIST_STARTUP_TIMEOUT_MINUTES"):
        if not cfg[key] > 0:
            raise ConfigError(f"{key} must be > 0 (minutes), got {cfg[key]!r}")
    if cfg.SOLVER.MAX_EPOCH < 1:
        raise ConfigError(f"SOLVER.MAX_EPOCH must be >= 1, got {cfg.SOLVER.MAX_EPOCH}")
    if cfg.NUM_GPUS > 0 and check_devices:
        import torch

        visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if visible < (1 if launched else cfg.NUM_GPUS):
            raise ConfigError(
                f"NUM_GPUS is {cfg.NUM_GPUS} but {visible} CUDA device(s) are visible: set NUM_GPUS {visible}"
                + (" (CPU)" if visible == 0 else "")
            )
    for key in ("TRAIN.CHECKPOINT_FILE_PATH", "TEST.CHECKPOINT_FILE_PATH"):
        node, name = key.split(".")
        path = cfg[node][name]
        if path and not os.path.isfile(path) and (cfg.TRAIN.ENABLE if node == "TRAIN" else cfg.TEST.ENABLE):
            raise ConfigError(f"{key} {path} does not exist")


def scale_lr_by_shards(cfg):
    """Multiplies BASE_LR, WARMUP_START_LR and COSINE_END_LR by NUM_SHARDS when
    SOLVER.BASE_LR_SCALE_NUM_SHARDS (PySlowFast does this once, at config time)."""
    if cfg.SOLVER.BASE_LR_SCALE_NUM_SHARDS:
        cfg.SOLVER.BASE_LR *= cfg.NUM_SHARDS
        cfg.SOLVER.WARMUP_START_LR *= cfg.NUM_SHARDS
        cfg.SOLVER.COSINE_END_LR *= cfg.NUM_SHARDS
    return cfg


def load_config(args, path_to_config=None, check_devices=True):
    """Returns the frozen-free config: defaults <- YAML (`args.cfg_file`) <- `args.opts`, with NUM_SHARDS /
    SHARD_ID from the flags or the launch environment, checked, LR-scaled by shards. `check_devices`
    False skips the visible-GPU check (submitting from a machine without GPUs)."""
    cfg = get_cfg()
    path = path_to_config or getattr(args, "cfg_file", None)
    if path:
        cfg.merge_from_file(path)
    opts = getattr(args, "opts", None)
    if opts:
        cfg.merge_from_list(list(opts))
    if getattr(args, "num_shards", None) is not None:
        cfg.NUM_SHARDS = args.num_shards
    if getattr(args, "shard_id", None) is not None:
        cfg.SHARD_ID = args.shard_id
    launch = du.detect_launch_env(cfg.NUM_GPUS)
    changes = du.apply_launch_env(cfg, launch)
    if changes:
        logger.info("Launch environment (%s) sets %s", launch["source"],
                    ", ".join(f"{k} {old} -> {new}" for k, (old, new) in changes.items()))
    if launch is not None and launch["world_size"] != du.expected_world_size(cfg):
        raise ConfigError(
            f"{launch['source']} started {launch['world_size']} processes but the config describes "
            f"{du.expected_world_size(cfg)} (NUM_SHARDS {cfg.NUM_SHARDS} x NUM_GPUS {cfg.NUM_GPUS})"
        )
    cfg = assert_and_infer_cfg(cfg)
    try:
        check_cfg(cfg, launched=launch is not None, check_devices=check_devices)
    except ConfigError as e:
        e.output_dir = cfg.OUTPUT_DIR  # so the entry point can leave the reason in a run's stdout.log
        raise
    scale_lr_by_shards(cfg)
    warn_unimplemented(cfg)
    return cfg
