"""Process launching: one process per GPU (or one CPU process per machine), from torchrun's or
SLURM's environment, or PySlowFast's `--init_method --num_shards --shard_id` flags (spawning the
GPU processes of this machine with torch.multiprocessing)."""

import errno
import gc
import logging
import os
import signal
import sys
import time
import traceback

import torch.multiprocessing as mp

from vov3d.engine import run_dir, signals
from vov3d.engine.meters import LossExplosionError
from vov3d.engine.signals import EXIT_PREEMPTED, Preempted  # noqa: F401 (re-exported)
from vov3d.utils import distributed as du
from vov3d.utils import logging as vlog
from vov3d.utils.parser import ConfigError

logger = logging.getLogger(__name__)

# Problems the user fixes in the config or on disk: printed as one line, exit code 2.
USER_ERRORS = (ConfigError, FileNotFoundError, NotADirectoryError, KeyError, ValueError, NotImplementedError,
               run_dir.RunDirBusy)
EXIT_USER_ERROR = 2
EXIT_LOSS_EXPLOSION = 3
EXIT_INTERRUPTED = 130
# Operating-system errors that are the machine's state, not a bug: one line each.
_DISK_ERRNOS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EIO: "an input/output error (failing disk or network file system)",
}


def _message(e):
    """Returns an exception's message on one line; for an error re-raised from a DataLoader worker, the
    worker's own message (the last line of the traceback it carries)."""
    msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
    if msg.startswith("Caught ") and "Original Traceback" in msg:
        last = [line for line in msg.splitlines() if line.strip()][-1]
        msg = last.split(": ", 1)[1] if ": " in last else last
    return " ".join(msg.split())


def error_line(e):
    """Returns the one-line message shown for an exception."""
    return f"vov3d: error: {_message(e)}"


def _os_error_line(e):
    reason = _DISK_ERRNOS.get(e.errno)
    if reason is None:
        return None
    where = f" ({e.filename})" if getattr(e, "filename", None) else ""
    hint = "; free some space or set OUTPUT_DIR elsewhere" if e.errno in (errno.ENOSPC, errno.EDQUOT) else ""
    return f"vov3d: error: {reason}{where}: {e.strerror or e}{hint}"


def _os_error_in(e):
    """Returns the OSError behind `e` (torch.save wraps a failed write in a RuntimeError), or None."""
    seen = 0
    while e is not None and seen < 5:
        if isinstance(e, OSError) and e.errno in _DISK_ERRNOS:
            return e
        e = e.__cause__ or e.__context__
        seen += 1
    return None


def classify_stop(e, cfg):
    """Returns (exit code, one-line reason) for an exception that ended a run; code None means a bug
    (its traceback is shown)."""
    from vov3d.datasets.base import UnusableDatasetError

    if isinstance(e, Preempted):
        sig = signals.requested_signal() or "a stop signal"
        return EXIT_PREEMPTED, f"vov3d: stopped by {sig}; the same command resumes from the last checkpoint"
    if isinstance(e, KeyboardInterrupt):
        return EXIT_INTERRUPTED, "vov3d: interrupted; the same command resumes from the last checkpoint"
    if isinstance(e, LossExplosionError):
        return EXIT_LOSS_EXPLOSION, error_line(e)
    os_error = _os_error_in(e)
    if os_error is not None:
        return EXIT_USER_ERROR, _os_error_line(os_error)
    if isinstance(e, USER_ERRORS) or isinstance(e, UnusableDatasetError):
        return EXIT_USER_ERROR, error_line(e)
    msg = str(e)
    if isinstance(e, RuntimeError) and "DataLoader worker" in msg and ("exited unexpectedly" in msg or "killed" in msg):
        return EXIT_USER_ERROR, (f"vov3d: error: a data loader worker died ({_message(e)}); the out-of-memory "
                                 "killer is the usual cause: lower DATA_LOADER.NUM_WORKERS or TRAIN.BATCH_SIZE")
    if du.get_world_size() > 1 and isinstance(e, RuntimeError) and any(
            k in msg.lower() for k in ("timed out", "timeout", "connection closed", "connection reset", "broken pipe")):
        behind = du.ranks_behind()
        who = (", ".join(f"rank {r} (last step {s})" if s >= 0 else f"rank {r}" for r, s in sorted(behind.items()))
               + " stopped answering") if behind else "another process stopped answering"
        return EXIT_USER_ERROR, (
            f"vov3d: error: rank {du.get_rank()} of {du.get_world_size()} gave up waiting: {who} (frozen, hung "
            f"on I/O or dead; collectives wait DIST_TIMEOUT_MINUTES={cfg.DIST_TIMEOUT_MINUTES:g}): {_message(e)[:200]}")
    return None, None


def run_worker(func, cfg, rank, world_size, local_rank, init_method):
    """Runs `func(cfg)` in this process after creating its process group; returns an exit code. Every
    stop but a bug ends with one line on stderr, repeated at the end of OUTPUT_DIR/stdout.log."""
    debug = bool(os.environ.get("VOV3D_DEBUG"))
    try:
        du.init_process_group(cfg, rank, world_size, local_rank, init_method)
        vlog.setup_logging(cfg.OUTPUT_DIR)
        signals.install_stop_handlers()
        func(cfg)
        return 0
    except BaseException as e:
        if isinstance(e, SystemExit) and not isinstance(e, Preempted):
            raise
        code, line = classify_stop(e, cfg)
        if code is None:  # a bug: the traceback is the report
            run_dir.append_stop_line(cfg.OUTPUT_DIR, f"vov3d: crashed: {type(e).__name__}: {_message(e)[:300]} "
                                                     "(traceback on stderr)")
            raise
        if debug:
            traceback.print_exc()
        logger.debug("traceback:\n%s", traceback.format_exc())
        hint = "  (VOV3D_DEBUG=1 shows the traceback)" if code == EXIT_USER_ERROR and not debug else ""
        print(line + hint, file=sys.stderr, flush=True)
        run_dir.append_stop_line(cfg.OUTPUT_DIR, line)
        return code
    finally:
        # Objects of the run still referencing the group (a DDP model, gloo's pending work and the
        # tensors it holds) go first, while the interpreter is whole: left to the interpreter's
        # teardown, their C++ destructors take the GIL after it is gone and the process aborts
        # ("terminate called without an active exception", seen once on rank 1 of a gloo job).
        gc.collect()
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
        return _spawn_and_wait(func, cfg, procs, init_method)
    return run_worker(func, cfg, cfg.SHARD_ID, world, 0, init_method)


def _spawn_and_wait(func, cfg, procs, init_method):
    """Runs one process per GPU of this machine; returns the first non-zero exit code (else 0). A stop
    signal sent to this parent alone (kill PID, a scheduler's) is passed on to every child, which stops
    after its current iteration (vov3d.engine.signals)."""
    ctx = mp.start_processes(_spawn_entry, args=(func, cfg, procs, init_method), nprocs=procs, join=False,
                             daemon=False, start_method="spawn")

    def forward(signum, frame):
        # Ctrl-C reaches the children too (one process group): passed on as SIGTERM, so they do not take
        # it for an impatient second Ctrl-C.
        sent = signal.SIGTERM if signum == signal.SIGINT else signum
        for p in ctx.processes:
            if p.is_alive():
                os.kill(p.pid, sent)

    previous = {}
    try:
        for sig in signals.STOP_SIGNALS:
            previous[sig] = signal.signal(sig, forward)
    except ValueError:  # not the main thread: no forwarding
        pass
    try:
        while not ctx.join():
            pass
    except mp.ProcessExitedException as e:
        return e.exit_code if e.exit_code and e.exit_code > 0 else 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def train_then_test(cfg):
    """Trains (TRAIN.ENABLE) and then runs the multi-view test (TEST.ENABLE) in this process."""
    from vov3d.engine.evaluate import test
    from vov3d.engine.train import train

    started = time.monotonic()
    lock = run_dir.lock_output_dir(cfg.OUTPUT_DIR)  # one run per OUTPUT_DIR
    try:
        if cfg.TRAIN.ENABLE:
            train(cfg)
        report = test(cfg) if cfg.TEST.ENABLE else None
        if du.is_master_proc():
            print_run_summary(cfg, report, wall_s=time.monotonic() - started)
    finally:
        if lock is not None:
            lock.release()


def reached_vs_documented(cfg, report, wall_s, generation_s=0.0):
    """Returns the summary lines comparing the run's top-1 and wall time with cfg.DOCUMENTED (none when
    nothing is documented)."""
    doc = cfg.DOCUMENTED
    if not (doc.TOP1_ACC or doc.WALL_MINUTES):
        return []
    top1 = f"top-1 {report['top1_acc']:.2f}%" if report is not None else "no test"
    gen = f", of which {generation_s:.0f} s generating the demo data" if generation_s else ""
    lines = [f"Reached:      {top1} in {wall_s / 60:.1f} min wall "
             f"({wall_s:.0f} s from start-up to the end of the test{gen})"]
    promise = []
    if doc.TOP1_ACC:
        ok = report is not None and report["top1_acc"] >= doc.TOP1_ACC
        promise.append(f"top-1 >= {doc.TOP1_ACC:.1f}% ({'met' if ok else 'NOT met'})")
    if doc.WALL_MINUTES:
        ok = wall_s - generation_s <= doc.WALL_MINUTES * 60
        promise.append(f"<= {doc.WALL_MINUTES:.1f} min with the data cached ({'met' if ok else 'NOT met'})")
    where = f", measured on {doc.MACHINE}" if doc.MACHINE else ""
    lines.append(f"Documented:   {', '.join(promise)}{where}")
    return lines


def print_run_summary(cfg, report, wall_s=None):
    """Prints what a finished run reached (against cfg.DOCUMENTED), where its results are, and what to
    try next."""
    from vov3d.datasets import demo
    from vov3d.utils import checkpoint as cu

    out = os.path.abspath(cfg.OUTPUT_DIR)
    lines = ["", "=" * 78]
    if report is not None:
        views = f"{cfg.TEST.NUM_ENSEMBLE_VIEWS} clips x {cfg.TEST.NUM_SPATIAL_CROPS} crops"
        lines.append(f"Multi-view test ({views}): top-1 {report['top1_acc']:.2f}%  top-5 {report['top5_acc']:.2f}%"
                     f"  over {report['num_videos']} videos ({report['num_invalid']} undecodable excluded)")
    if wall_s is not None:
        lines += reached_vs_documented(cfg, report, wall_s, demo.generation_seconds())
    last = cu.get_last_checkpoint(cfg.OUTPUT_DIR)
    lines += [
        f"Checkpoints:  {cu.get_checkpoint_dir(out)}",
        f"Logs:         {os.path.join(out, 'stdout.log')} (json_stats lines), {os.path.join(out, 'manifest.json')}",
        f"Metrics:      {os.path.join(out, 'metrics.jsonl')}, "
        f"per class {os.path.join(out, 'test_per_class_accuracy.csv')}",
        f"Confusion:    {os.path.join(out, 'test_confusion_matrix.csv')} (.png beside it)",
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
