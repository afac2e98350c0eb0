"""A run's OUTPUT_DIR: the lock that keeps it to one run, the manifest, the TensorBoard writer, the line
that says why a run stopped, and metrics.jsonl kept free of duplicate steps after a resume."""

import fcntl
import json
import logging
import os
import socket
import sys
import time

from vov3d.utils import distributed as du
from vov3d.utils.files import write_atomically
from vov3d.utils import env

logger = logging.getLogger(__name__)

LOCK_NAME = "run.lock"


# ----------------------------------------------------------------------------------------------- #
# One run per OUTPUT_DIR
# ----------------------------------------------------------------------------------------------- #


class RunDirBusy(RuntimeError):
    """Another live run holds the OUTPUT_DIR lock."""


class RunLock:
    """An exclusive lock on OUTPUT_DIR/run.lock (fcntl.flock, held as long as the process lives).

    The kernel drops a flock when its holder dies, however it dies, so a lock left by a dead run is free
    and is simply taken over; the file's text (pid, host, start time) only names the holder in the
    message a second run prints. On NFS, Linux maps flock to POSIX locks, which hold across machines.
    """

    def __init__(self, output_dir):
        self.path = os.path.join(output_dir, LOCK_NAME)
        self._fd = None

    def acquire(self):
        """Takes the lock; returns self. Raises RunDirBusy naming the holder when another run has it."""
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise RunDirBusy(
                f"OUTPUT_DIR {os.path.dirname(os.path.abspath(self.path))} is in use by another run "
                f"({holder}); wait for it to end or choose another OUTPUT_DIR"
            ) from None
        except OSError:
            os.close(fd)
            raise
        previous = _read_holder(fd)
        if previous != "unknown holder":
            logger.info("Taking over the lock of a run that is no longer alive (%s)", previous)
        text = f"pid {os.getpid()} on host {socket.gethostname()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}\n"
        os.ftruncate(fd, 0)
        os.pwrite(fd, text.encode(), 0)
        self._fd = fd
        return self

    def release(self):
        """Releases the lock (the file stays, its flock is what counts); returns None."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def _read_holder(fd):
    try:
        text = os.pread(fd, 512, 0).decode(errors="replace").strip()
    except OSError:
        text = ""
    return text or "unknown holder"


def lock_output_dir(output_dir):
    """Returns the held RunLock of OUTPUT_DIR (taken by the master; every process gets the same
    RunDirBusy when another run holds it), or None on the other processes."""
    lock, error, failure = None, None, None
    if du.is_master_proc():
        try:
            lock = RunLock(output_dir).acquire()
        except RunDirBusy as e:
            error = str(e)
        except OSError as e:  # read-only or full disk: the other processes must not wait for the master
            error, failure = f"cannot lock OUTPUT_DIR {output_dir}: {e}", e
    if du.get_world_size() > 1:
        error = du.broadcast_object(error)
    if failure is not None:
        raise failure
    if error:
        raise RunDirBusy(error)
    return lock


# ----------------------------------------------------------------------------------------------- #
# Why the run stopped
# ----------------------------------------------------------------------------------------------- #


def append_stop_line(output_dir, line):
    """Appends `line` (the one-line reason a run stopped) to OUTPUT_DIR/stdout.log on the master; returns
    None. Never raises: a full or read-only disk may be the very reason."""
    if not output_dir or not du.is_master_proc():
        return
    try:
        path = os.path.join(output_dir, "stdout.log")
        if os.path.isdir(output_dir):
            with open(path, "a") as f:
                f.write(f"[{time.strftime('%m/%d %H:%M:%S')}] {line}\n")
    except OSError:
        pass


# ----------------------------------------------------------------------------------------------- #
# metrics.jsonl after a resume
# ----------------------------------------------------------------------------------------------- #


def _step_of(row):
    """Returns the training position a metrics row belongs to, as a fractional epoch (None: keep it)."""
    value = row.get("epoch_float")
    return float(value) if isinstance(value, (int, float)) else None


def drop_metrics_after(output_dir, epoch_float):
    """Removes the metrics.jsonl rows of training steps past `epoch_float` (the resume point: the restarted
    run writes them again), so no step appears twice; returns how many rows were dropped."""
    path = os.path.join(output_dir, "metrics.jsonl")
    if not du.is_master_proc() or not os.path.isfile(path):
        return 0
    kept, dropped = [], 0
    with open(path) as f:
        for line in f:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # a line cut by a kill
                dropped += 1
                continue
            step = _step_of(row)
            if step is not None and step > epoch_float + 1e-9 and row.get("_type") != "test_final":
                dropped += 1
                continue
            kept.append(line if line.endswith("\n") else line + "\n")
    if dropped:
        atomic_write_text(path, "".join(kept))
    return dropped


# ----------------------------------------------------------------------------------------------- #
# Manifest, config copy, TensorBoard
# ----------------------------------------------------------------------------------------------- #


def atomic_write_text(path, text):
    """Writes `text` to `path` through a temporary file and a rename (the checkpoints' writer); returns path."""
    return write_atomically(path, lambda f: f.write(text.encode("utf-8")))


def remove_orphan_temp_files(output_dir):
    """Removes the temporary files killed writers left in OUTPUT_DIR (call under the run lock); returns
    their paths."""
    removed = []
    if not os.path.isdir(output_dir):
        return removed
    for name in os.listdir(output_dir):
        if name.endswith(".tmp"):
            path = os.path.join(output_dir, name)
            try:
                os.remove(path)
                removed.append(path)
            except OSError:
                pass
    return removed


def make_tb_writer(cfg):
    """Returns a TensorBoard SummaryWriter on the master when TENSORBOARD.ENABLE, else None."""
    if not cfg.TENSORBOARD.ENABLE or not du.is_master_proc():
        return None
    from torch.utils.tensorboard import SummaryWriter

    log_dir = cfg.TENSORBOARD.LOG_DIR or f"runs-{cfg.TRAIN.DATASET}"
    if not os.path.isabs(log_dir):
        log_dir = os.path.join(cfg.OUTPUT_DIR, log_dir)
    return SummaryWriter(log_dir=log_dir)


def manifest_path(cfg):
    """Returns OUTPUT_DIR/manifest.json."""
    return os.path.join(cfg.OUTPUT_DIR, "manifest.json")


def update_manifest(cfg, updates):
    """Merges `updates` into OUTPUT_DIR/manifest.json (master only; written atomically); returns None."""
    if not du.is_master_proc():
        return
    path = manifest_path(cfg)
    data = {}
    if os.path.isfile(path):
        try:
            with open(path) as f:
                data = json.load(f)
        except (OSError, json.JSONDecodeError):
            data = {}
    for k, v in updates.items():
        if isinstance(v, dict) and isinstance(data.get(k), dict):
            data[k].update(v)
        else:
            data[k] = v
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str))


def write_run_manifest(cfg, datasets, resumed_from):
    """Writes config.yaml and the run manifest (config, versions, world size, effective batch and LR,
    dataset sizes); returns None."""
    if not du.is_master_proc():
        return
    world = du.get_world_size()
    atomic_write_text(os.path.join(cfg.OUTPUT_DIR, "config.yaml"), cfg.dump())
    accum = cfg.TRAIN.GRAD_ACCUM_STEPS
    update_manifest(cfg, {
        "command": " ".join(sys.argv),
        "config": cfg.dump(),
        "env": env.collect_env_info(),
        "world_size": world,
        "num_shards": cfg.NUM_SHARDS,
        "num_gpus_per_shard": cfg.NUM_GPUS,
        "batch_size_per_process": cfg.TRAIN.BATCH_SIZE // world,
        "grad_accum_steps": accum,
        "effective_batch_size": cfg.TRAIN.BATCH_SIZE * accum,
        "base_lr": cfg.SOLVER.BASE_LR,
        "base_lr_scaled_by_num_shards": bool(cfg.SOLVER.BASE_LR_SCALE_NUM_SHARDS),
        "lr_policy": cfg.SOLVER.LR_POLICY,
        "dataset_sizes": datasets,
        "resumed_from": resumed_from,
        "start_time": time.strftime("%Y-%m-%d %H:%M:%S"),
    })
