"""Process launching: one process per GPU (or one CPU process per machine), from torchrun's or
SLURM's environment, or PySlowFast's `--init_method --num_shards --shard_id` flags (spawning the
GPU processes of this machine with torch.multiprocessing)."""

import logging
import os
import signal
import subprocess
import sys
import traceback

import torch.multiprocessing as mp

from vov3d.engine.meters import LossExplosionError
from vov3d.utils import distributed as du
from vov3d.utils import logging as vlog
from vov3d.utils.parser import ConfigError

logger = logging.getLogger(__name__)

# Problems the user fixes in the config or on disk: printed as one line, exit code 2.
USER_ERRORS = (ConfigError, FileNotFoundError, NotADirectoryError, KeyError, ValueError, NotImplementedError)
EXIT_USER_ERROR = 2
EXIT_LOSS_EXPLOSION = 3
EXIT_PREEMPTED = 4


class Preempted(SystemExit):
    """Raised in the main thread when SLURM / the scheduler asks the job to stop."""


def error_line(e):
    """Returns the one-line message shown for an exception."""
    msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
    return f"vov3d: error: {msg}"


def _on_preempt(signum, frame):
    name = signal.Signals(signum).name
    job = os.environ.get("SLURM_JOB_ID")
    if signum == signal.SIGUSR1 and job and du.get_rank() == 0:
        try:
            subprocess.run(["scontrol", "requeue", job], check=False, timeout=30)
            logger.warning("Received %s: requeued SLURM job %s; it resumes from the last checkpoint.", name, job)
        except (OSError, subprocess.SubprocessError) as e:
            logger.warning("Received %s: could not requeue SLURM job %s: %s", name, job, e)
    else:
        logger.warning("Received %s: stopping; restart the same command to resume from the last checkpoint.", name)
    raise Preempted(EXIT_PREEMPTED)


def install_preemption_handlers():
    """Makes SIGUSR1 (SLURM's pre-timeout signal: requeue) and SIGTERM stop the run cleanly.

    Not installed under submitit, which handles preemption itself (tools/submit.py)."""
    if os.environ.get("SUBMITIT_EXECUTOR") or os.environ.get("VOV3D_NO_SIGNAL_HANDLERS"):
        return
    try:
        signal.signal(signal.SIGUSR1, _on_preempt)
        signal.signal(signal.SIGTERM, _on_preempt)
    except ValueError:  # not the main thread
        pass


def run_worker(func, cfg, rank, world_size, local_rank, init_method):
    """Runs `func(cfg)` in this process after creating its process group; returns an exit code."""
    try:
        du.init_process_group(cfg, rank, world_size, local_rank, init_method)
        vlog.setup_logging(cfg.OUTPUT_DIR)
        install_preemption_handlers()
        func(cfg)
        return 0
    except LossExplosionError as e:
        logger.error("%s", e)
        print(error_line(e), file=sys.stderr, flush=True)
        return EXIT_LOSS_EXPLOSION
    except Preempted:
        return EXIT_PREEMPTED
    except USER_ERRORS as e:
        if os.environ.get("VOV3D_DEBUG"):
            traceback.print_exc()
        logger.debug("traceback:\n%s", traceback.format_exc())
        print(error_line(e) + ("" if os.environ.get("VOV3D_DEBUG") else "  (VOV3D_DEBUG=1 shows the traceback)"),
              file=sys.stderr, flush=True)
        return EXIT_USER_ERROR
    finally:
        du.destroy_process_group()


def _spawn_entry(local_rank, func, cfg, procs, init_method):
    code = run_worker(func, cfg, cfg.SHARD_ID * procs + local_rank, cfg.NUM_SHARDS * procs, local_rank, init_method)
    if code:
        sys.exit(code)


def launch_job(cfg, init_method, func):
    """Runs `func(cfg)` in every process of the job; returns the exit code (0 on success).

    torchrun / SLURM environment: this process is one rank. Otherwise: NUM_GPUS > 1 spawns one process
    per GPU of this machine (ranks SHARD_ID * NUM_GPUS + i); else this process is rank SHARD_ID.
    """
    env = du.detect_launch_env(cfg.NUM_GPUS)
    if env is not None:
        return run_worker(func, cfg, env["rank"], env["world_size"], env["local_rank"], env["init_method"])
    procs = du.procs_per_shard(cfg)
    world = du.expected_world_size(cfg)
    if procs > 1:
        try:
            mp.spawn(_spawn_entry, args=(func, cfg, procs, init_method), nprocs=procs, join=True, daemon=False)
        except mp.ProcessExitedException as e:
            return e.exit_code if e.exit_code and e.exit_code > 0 else 1
        return 0
    return run_worker(func, cfg, cfg.SHARD_ID, world, 0, init_method)


def train_then_test(cfg):
    """Trains (TRAIN.ENABLE) and then runs the multi-view test (TEST.ENABLE) in this process."""
    from vov3d.engine.evaluate import test
    from vov3d.engine.train import train

    if cfg.TRAIN.ENABLE:
        train(cfg)
    report = test(cfg) if cfg.TEST.ENABLE else None
    if du.is_master_proc():
        print_run_summary(cfg, report)


def print_run_summary(cfg, report):
    """Prints where a finished run's results are, and what to try next."""
    from vov3d.utils import checkpoint as cu

    out = os.path.abspath(cfg.OUTPUT_DIR)
    lines = ["", "=" * 78]
    if report is not None:
        views = f"{cfg.TEST.NUM_ENSEMBLE_VIEWS} clips x {cfg.TEST.NUM_SPATIAL_CROPS} crops"
        lines.append(f"Multi-view test ({views}): top-1 {report['top1_acc']:.2f}%  top-5 {report['top5_acc']:.2f}%"
                     f"  over {report['num_videos']} videos ({report['num_invalid']} undecodable excluded)")
    last = cu.get_last_checkpoint(cfg.OUTPUT_DIR)
    lines += [
        f"Checkpoints:  {cu.get_checkpoint_dir(out)}",
        f"Logs:         {os.path.join(out, 'stdout.log')} (json_stats lines), {os.path.join(out, 'manifest.json')}",
        f"Plots:        {os.path.join(out, 'training_curves.png')}, {os.path.join(out, 'test_confusion_matrix.png')}",
        f"Scores:       {os.path.join(out, 'test_scores.pt')} (every view; re-ensemble with vov3d.engine.evaluate.reensemble)",
    ]
    if cfg.TENSORBOARD.ENABLE:
        lines.append(f"TensorBoard:  tensorboard --logdir {out}")
    if last:
        lines.append(f"Next: predict one video:  python tools/demo_net.py --cfg <this config> --video <file> "
                     f"TEST.CHECKPOINT_FILE_PATH {last}")
    lines.append("=" * 78)
    print("\n".join(lines), flush=True)
