"""Command-line arguments (PySlowFast's flags) and their config: vov3d.config.load_config (file, then
KEY VALUE overrides, validation) plus launch-environment inference (torchrun / SLURM), the visible-GPU
check and LR scaling by shards."""

import argparse
import logging
import os
import sys

from vov3d.config.load import ConfigError, load_config
from vov3d.utils import distributed as du
from vov3d.utils.weights import KNOWN_WEIGHTS, is_url

logger = logging.getLogger(__name__)


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


def check_checkpoint_paths(cfg):
    """Raises ConfigError when a checkpoint the run will read is a missing file (before any process
    starts); URLs and weights names pass (they are downloaded when first read)."""
    for key, path, enabled in (("TRAIN.CHECKPOINT_FILE_PATH", cfg.TRAIN.CHECKPOINT_FILE_PATH, cfg.TRAIN.ENABLE),
                               ("TEST.CHECKPOINT_FILE_PATH", cfg.TEST.CHECKPOINT_FILE_PATH, cfg.TEST.ENABLE)):
        if enabled and path and not os.path.isfile(path) and not is_url(path) and path not in KNOWN_WEIGHTS:
            raise ConfigError(f"{key} {path} does not exist (and is neither a URL nor a weights name: "
                              "vov3d-weights list)")


def check_visible_gpus(cfg, launched=False):
    """Raises ConfigError when NUM_GPUS asks for more CUDA devices than this process sees (`launched`: the
    processes were started by torchrun / SLURM, which may give each one GPU of its own)."""
    if cfg.NUM_GPUS == 0:
        return
    import torch

    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if visible < (1 if launched else cfg.NUM_GPUS):
        raise ConfigError(
            f"NUM_GPUS is {cfg.NUM_GPUS} but {visible} CUDA device(s) are visible: set NUM_GPUS {visible}"
            + (" (CPU)" if visible == 0 else "")
        )


def scale_lr_by_shards(cfg):
    """Multiplies BASE_LR, WARMUP_START_LR and COSINE_END_LR by NUM_SHARDS when
    SOLVER.BASE_LR_SCALE_NUM_SHARDS (PySlowFast does this once, at config time)."""
    if cfg.SOLVER.BASE_LR_SCALE_NUM_SHARDS:
        cfg.SOLVER.BASE_LR *= cfg.NUM_SHARDS
        cfg.SOLVER.WARMUP_START_LR *= cfg.NUM_SHARDS
        cfg.SOLVER.COSINE_END_LR *= cfg.NUM_SHARDS
    return cfg


def config_from_args(args, check_devices=True):
    """Returns the validated config of a command line: defaults <- YAML (`args.cfg_file`) <- `args.opts`,
    NUM_SHARDS / SHARD_ID from the flags or the launch environment (torchrun / SLURM), LR-scaled by
    shards. `check_devices` False skips the visible-GPU check (submitting from a machine without GPUs)."""
    overrides = {key: value for key, value in (("NUM_SHARDS", getattr(args, "num_shards", None)),
                                               ("SHARD_ID", getattr(args, "shard_id", None))) if value is not None}
    launch = {}

    def apply_launch_env(cfg):
        launch["output_dir"] = cfg.OUTPUT_DIR
        env = launch["env"] = du.detect_launch_env(cfg.NUM_GPUS)
        changes = du.apply_launch_env(cfg, env)
        if changes:
            logger.info("Launch environment (%s) sets %s", env["source"],
                        ", ".join(f"{k} {old} -> {new}" for k, (old, new) in changes.items()))
        if env is not None and env["world_size"] != du.expected_world_size(cfg):
            raise ConfigError(
                f"{env['source']} started {env['world_size']} processes but the config describes "
                f"{du.expected_world_size(cfg)} (NUM_SHARDS {cfg.NUM_SHARDS} x NUM_GPUS {cfg.NUM_GPUS})"
            )

    try:
        cfg = load_config(getattr(args, "cfg_file", None), getattr(args, "opts", None) or (), overrides,
                          before_validate=apply_launch_env)
        check_checkpoint_paths(cfg)
        if check_devices:
            check_visible_gpus(cfg, launched=launch["env"] is not None)
    except ConfigError as e:
        e.output_dir = launch.get("output_dir")  # so the entry point can leave the reason in a run's stdout.log
        raise
    return scale_lr_by_shards(cfg)


def single_process_config(args, check_devices=True):
    """Returns config_from_args(args) for a program that runs in one process (demo, CAM): one GPU at most."""
    cfg = config_from_args(args, check_devices)
    cfg.NUM_GPUS = min(cfg.NUM_GPUS, 1)
    return cfg
