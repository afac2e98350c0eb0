"""What a cluster does to a run: stop signals, kills, two runs on one folder, damaged checkpoints, bad
period keys, a full disk. Each run is the toy model (with dropout) on a toy dataset whose augmentation
draws come from vov3d's per-sample RNG, a few iterations, through tools/run_net.py's main in a process
forked from a fork server that imported this module (see `run`).

A test hook in the toy dataset (env VOV3D_TEST_SIGNAL="SIG,epoch,index[,rank]", index * for any) sends
SIG to its own training process when it produces that sample: the signal then lands at whatever iteration the loader
workers have reached, as a scheduler's would.
"""

import atexit
import errno
import json
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest
import torch
import torch.nn as nn

from test_engine_toys import EngineToyData, _EngineToyBase
from vov3d.datasets import sampling
from vov3d.datasets.build import DATASET_REGISTRY
from vov3d.models.build import MODEL_REGISTRY
from vov3d.utils import checkpoint as cu

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.dirname(os.path.abspath(__file__))


class AugToyData(EngineToyData):
    """The toy clips plus a per-sample random brightness shift and flip drawn from sample_rng(index)."""

    BAD_TRAIN = set()

    def __getitem__(self, index):
        inputs, label, idx, meta = super().__getitem__(index)
        if self.split == "train":
            rng = sampling.sample_rng(index)
            x = inputs[0] + rng.uniform(-0.5, 0.5)
            inputs = [x.flip(-1) if rng.random() < 0.5 else x]
            _signal_hook(index)
        return inputs, label, idx, meta


def _signal_hook(index):
    spec = os.environ.get("VOV3D_TEST_SIGNAL")
    if not spec or not isinstance(index, sampling.SampleIndex):
        return
    name, epoch, at, *rank = spec.split(",")
    if rank and os.environ.get("RANK", "0") != rank[0]:
        return
    if index.epoch == int(epoch) and at in ("*", str(int(index))):
        if name == "WORKER_SIGKILL":  # this loader worker dies (the out-of-memory killer's way)
            os.kill(os.getpid(), signal.SIGKILL)
        os.kill(int(os.environ["VOV3D_TEST_MAIN_PID"]), getattr(signal, name))


class EngineToyDrop(_EngineToyBase):
    """The toy model with dropout: a resumed run must also restore the main process's RNG."""

    def __init__(self, cfg):
        super().__init__(cfg)
        self.drop = nn.Dropout(0.3)

    def forward(self, x):
        x = self.act(self.bn(self.conv(x[0]))).mean(dim=(2, 3, 4))
        x = self.head(self.drop(x))
        return x if self.training else torch.softmax(x, dim=1)


if "EngineToyDrop" not in [k for k, _ in MODEL_REGISTRY]:
    MODEL_REGISTRY.register()(EngineToyDrop)
if "engine_toy_aug" not in [k for k, _ in DATASET_REGISTRY]:
    DATASET_REGISTRY._do_register("engine_toy_aug", AugToyData)

TOY = [
    "NUM_GPUS", "0", "TRAIN.DATASET", "engine_toy_aug", "TEST.DATASET", "engine_toy_aug",
    "MODEL.MODEL_NAME", "EngineToyDrop", "MODEL.NUM_CLASSES", "3", "DATA.NUM_FRAMES", "2",
    "DATA.TRAIN_CROP_SIZE", "8", "DATA.TEST_CROP_SIZE", "8", "DATA_LOADER.NUM_WORKERS", "2",
    "TRAIN.BATCH_SIZE", "2", "TEST.ENABLE", "False", "SOLVER.MAX_EPOCH", "3", "SOLVER.BASE_LR", "0.2",
    "SOLVER.WARMUP_EPOCHS", "1.0", "TRAIN.EVAL_PERIOD", "2", "TRAIN.CHECKPOINT_PERIOD", "1", "LOG_PERIOD", "1",
    "LOG_MODEL_INFO", "False", "MODEL.MEMORY_FORMAT", "contiguous", "RNG_SEED", "5", "TRAIN.EMA.ENABLE", "True",
    "SOLVER.BASE_LR_SCALE_NUM_SHARDS", "False", "TENSORBOARD.ENABLE", "False",
]


class Finished:
    """A finished run: its exit code (negative: killed by that signal) and what it printed."""

    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def _child(args, env, log_prefix):
    """Body of a forked run: the fork server's imports (torch, its compiler, matplotlib) are already
    done, so a run costs its own work only; signals, exits and kills are those of a real process."""
    os.environ.update(env)
    os.environ["VOV3D_TEST_MAIN_PID"] = str(os.getpid())
    out, err = open(log_prefix + ".out", "w", buffering=1), open(log_prefix + ".err", "w", buffering=1)
    os.dup2(out.fileno(), 1)
    os.dup2(err.fileno(), 2)
    sys.stdout, sys.stderr = out, err
    torch.set_num_threads(1)
    sys.path.insert(0, os.path.join(REPO, "tools"))
    import run_net

    try:
        code = run_net.main(args)
    except SystemExit as e:  # leave through os._exit below, never through multiprocessing's exit path
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:  # a crash is the test's failure to report, not a hang in multiprocessing's exit
        import traceback

        traceback.print_exc()
        code = 99
    out.flush()
    err.flush()
    os._exit(code or 0)


LOGS = tempfile.mkdtemp(prefix="vov3d_run_faults_")  # off the runs' own disks (one of them gets full)
atexit.register(shutil.rmtree, LOGS, True)


# Runs fork from a server process that imported this module once, not from the test process: earlier tests
# may have started autograd's worker threads here, and PyTorch refuses backward in a process forked after that.
_FORK_SERVER = multiprocessing.get_context("forkserver")
_FORK_SERVER.set_forkserver_preload([__name__])


def run(out, *opts, env=None, procs=1, timeout=120, frozen_peers=False):
    """Returns Finished for the toy config + `opts` run by tools/run_net.py's main in `procs` forked
    processes (2: a torchrun-style gloo job on this machine); env: extra variables (signal hook);
    frozen_peers: kill the other ranks once rank 0 has ended (its exit code is returned)."""
    ctx = _FORK_SERVER
    os.makedirs(os.path.dirname(str(out)), exist_ok=True)
    port = _free_port()
    children = []
    for rank in range(procs):
        e = dict(env or {})
        if procs > 1:
            e.update(RANK=str(rank), WORLD_SIZE=str(procs), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(procs),
                     MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        prefix = os.path.join(LOGS, f"{os.path.basename(str(out))}.rank{rank}.{time.time_ns()}")
        p = ctx.Process(target=_child, args=([*TOY, "OUTPUT_DIR", str(out), *opts], e, prefix))
        p.start()
        children.append((p, prefix))
    if frozen_peers:  # the others may never end by themselves: rank 0's end decides
        children[0][0].join(timeout)
        for p, _ in children[1:]:
            p.kill()
    for p, _ in children:
        p.join(timeout)
        if p.is_alive():
            p.kill()
            p.join()
            raise AssertionError(f"run {out} did not end in {timeout} s")
    codes = [p.exitcode for p, _ in children]
    code = codes[0] if frozen_peers else next((c for c in codes if c), 0)
    texts = [(open(f + ".out").read(), open(f + ".err").read()) for _, f in children]
    return Finished(code, "".join(t[0] for t in texts), "".join(t[1] for t in texts))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def final_state(out, epoch=3):
    ckpt = cu.read_checkpoint(cu.get_path_to_checkpoint(str(out), epoch))
    return ckpt["model_state"], ckpt["ema_state"]["model_state"], ckpt["optimizer_state"]


def assert_bit_equal(a, b):
    for sa, sb in zip(final_state(a), final_state(b)):
        if isinstance(sa, dict) and "state" in sa:  # optimizer: momentum buffers
            sa = {f"{k}.{n}": v for k, st in sa["state"].items() for n, v in st.items()}
            sb = {f"{k}.{n}": v for k, st in sb["state"].items() for n, v in st.items()}
        assert sa.keys() == sb.keys()
        for k in sa:
            assert torch.equal(sa[k], sb[k]), k


def train_steps(out):
    rows = [json.loads(line) for line in open(os.path.join(out, "metrics.jsonl"))]
    return [(r["_type"], r["epoch_float"]) for r in rows if r["_type"] != "test_final"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run with 2 loader workers."""
    out = tmp_path_factory.mktemp("faults") / "ref"
    r = run(out)
    assert r.returncode == 0, r.stderr[-3000:]
    return out


def test_any_number_of_workers_same_weights(reference, tmp_path):
    out = tmp_path / "w0"
    r = run(out, "DATA_LOADER.NUM_WORKERS", "0")
    assert r.returncode == 0, r.stderr[-3000:]
    assert_bit_equal(reference, out)


def _assert_stopped(r, out, sig):
    assert r.returncode == 4, r.stderr[-3000:]
    line = f"vov3d: stopped by {sig}; the same command resumes from the last checkpoint"
    assert r.stderr.strip().splitlines()[-1] == line and "Traceback" not in r.stderr
    assert open(out / "stdout.log").read().rstrip().endswith(line)


def test_video_dataset_train_item_is_a_function_of_seed_epoch_index(tmp_path):
    """The real dataset path (decode, jitter, crop, flip) draws from sample_rng, not the process state."""
    import random

    from vov3d.config.defaults import get_cfg
    from vov3d.datasets import synthetic
    from vov3d.datasets.build import build_dataset

    data = synthetic.make_ssv1(str(tmp_path), videos_per_split={"train": 2, "val": 1, "test": 0})
    cfg = get_cfg()
    cfg.merge_from_list(data.cfg_opts() + ["TRAIN.DATASET", "ssv1", "NUM_GPUS", 0, "DATA.NUM_FRAMES", 4,
                                           "DATA.TRAIN_JITTER_SCALES", [40, 64], "DATA.TRAIN_CROP_SIZE", 32])
    ds = build_dataset("ssv1", cfg, "train")
    clips = []
    for state in (1, 2):
        random.seed(state)
        torch.manual_seed(state)
        clips.append(ds[sampling.SampleIndex(1, 3, 7)][0][0])
    assert torch.equal(clips[0], clips[1])
    assert not torch.equal(clips[0], ds[sampling.SampleIndex(1, 4, 7)][0][0])  # another epoch, other draws


def test_stop_signals_mid_epoch_then_resume_is_bit_exact(reference, tmp_path):
    """SIGTERM in epoch 2, then (resumed) Ctrl-C in epoch 3, then the same command: bit-equal to no stop."""
    out = tmp_path / "stopped"
    r = run(out, env=dict(VOV3D_TEST_SIGNAL="SIGTERM,1,5"))
    _assert_stopped(r, out, "SIGTERM")
    saved = [os.path.basename(p) for p in cu.list_checkpoints(str(out))]
    assert saved[0] == "checkpoint_epoch_00001.pyth" and len(saved) == 2
    assert saved[1].startswith("checkpoint_epoch_00002_iter_") or saved[1] == "checkpoint_epoch_00002.pyth"
    r = run(out, env=dict(VOV3D_TEST_SIGNAL="SIGINT,2,6"))
    _assert_stopped(r, out, "SIGINT")
    assert "Resuming from" in r.stdout and saved[1] in r.stdout
    r = run(out)
    assert r.returncode == 0, r.stderr[-3000:]
    assert_bit_equal(reference, out)
    assert train_steps(out) == train_steps(reference)  # no step twice, none missing
    assert not [p for p in cu.list_checkpoints(str(out)) if "_iter_" in p]  # superseded, removed


def test_sigusr1_defers_to_the_loop_and_requeues_nothing_outside_slurm(monkeypatch):
    from vov3d.engine import signals

    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.delenv("VOV3D_NO_SIGNAL_HANDLERS", raising=False)
    old = {s: signal.getsignal(s) for s in signals.STOP_SIGNALS}
    try:
        signals.install_stop_handlers()
        with signals.deferred_stop():
            os.kill(os.getpid(), signal.SIGUSR1)
            assert signals.stop_requested() and signals.requested_signal() == "SIGUSR1"
        with pytest.raises(signals.Preempted):  # outside the loop: stop at once
            os.kill(os.getpid(), signal.SIGTERM)
    finally:
        signals.clear()
        for s, h in old.items():
            signal.signal(s, h)


def test_sigkill_after_checkpoint_then_resume_is_bit_exact(reference, tmp_path):
    out = tmp_path / "killed"
    r = run(out, env=dict(VOV3D_TEST_SIGNAL="SIGKILL,1,2"))
    assert r.returncode == -signal.SIGKILL
    assert cu.list_checkpoints(str(out)) == [cu.get_path_to_checkpoint(str(out), 1)]
    # What a kill during a write leaves behind: removed by the next run.
    orphan = os.path.join(cu.get_checkpoint_dir(str(out)), ".checkpoint_epoch_00002.pyth.abc123.tmp")
    open(orphan, "wb").write(b"partial")
    r = run(out)
    assert r.returncode == 0, r.stderr[-3000:]
    assert not os.path.exists(orphan)
    assert_bit_equal(reference, out)
    assert train_steps(out) == train_steps(reference)


def test_two_process_gloo_stop_and_resume(tmp_path):
    ref, out = tmp_path / "ref2", tmp_path / "stop2"
    r = run(ref, "TRAIN.BATCH_SIZE", "4", procs=2)
    assert r.returncode == 0, r.stderr[-3000:]
    # Only rank 1 receives the signal: both ranks must still stop after the same iteration.
    r = run(out, "TRAIN.BATCH_SIZE", "4", procs=2, env=dict(VOV3D_TEST_SIGNAL="SIGTERM,1,*,1"))
    assert r.returncode == 4 and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert len(cu.list_checkpoints(str(out))) == 2
    r = run(out, "TRAIN.BATCH_SIZE", "4", procs=2)
    assert r.returncode == 0, r.stderr[-3000:]
    assert_bit_equal(ref, out)


def test_frozen_rank_ends_the_job_naming_it(tmp_path):
    out = tmp_path / "frozen"
    start = time.time()
    # 12 s: longer than any collective of this toy takes on a loaded machine, short for a test.
    r = run(out, "TRAIN.BATCH_SIZE", "4", "DIST_TIMEOUT_MINUTES", "0.2", procs=2, frozen_peers=True,
            env=dict(VOV3D_TEST_SIGNAL="SIGSTOP,1,*,1"))
    assert r.returncode == 2, r.stderr[-3000:]
    line = [x for x in r.stderr.splitlines() if x.startswith("vov3d: error: rank 0 of 2")][0]
    assert "rank 1 (last step" in line and "DIST_TIMEOUT_MINUTES=0.2" in line, r.stderr[-3000:]
    assert time.time() - start < 60


def test_killed_loader_worker_one_line(tmp_path):
    out = tmp_path / "oom"
    r = run(out, env=dict(VOV3D_TEST_SIGNAL="WORKER_SIGKILL,1,*"))
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-3000:]
    line = r.stderr.strip().splitlines()[-1]
    assert line.startswith("vov3d: error: a data loader worker died (") and "DATA_LOADER.NUM_WORKERS" in line
    assert open(out / "stdout.log").read().rstrip().endswith(line.split("  (VOV3D_DEBUG")[0])


class _Unusable(torch.utils.data.Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        from vov3d.datasets.base import UnusableDatasetError

        raise UnusableDatasetError("toy train: 11 bad videos in a row (DATA.MAX_BAD_SAMPLE_RETRIES=10)")


def test_all_videos_bad_in_a_worker_is_one_line():
    from vov3d.config.defaults import get_cfg
    from vov3d.engine import launch

    it = iter(torch.utils.data.DataLoader(_Unusable(), num_workers=1))
    with pytest.raises(RuntimeError) as e:
        next(it)
    code, line = launch.classify_stop(e.value, get_cfg())
    # Stop the worker now: runs forked from this process later must not inherit a live loader.
    e.value.__traceback__ = None
    it._shutdown_workers()
    assert (code, line) == (2, "vov3d: error: toy train: 11 bad videos in a row (DATA.MAX_BAD_SAMPLE_RETRIES=10)")


def test_second_run_on_live_output_dir_refuses(tmp_path):
    from vov3d.engine.run_dir import LOCK_NAME, RunDirBusy, RunLock

    out = tmp_path / "busy"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; sys.path.insert(0, sys.argv[2]); "
                               "from vov3d.engine.run_dir import RunLock; RunLock(sys.argv[1]).acquire(); "
                               "print('held', flush=True); time.sleep(60)", str(out), REPO],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        r = run(out)
        assert r.returncode == 2, r.stderr[-3000:]
        line = r.stderr.strip().splitlines()[-1]
        assert f"is in use by another run (pid {holder.pid} on host {socket.gethostname()}" in line, r.stderr
        assert not os.path.exists(out / "checkpoints")
        with pytest.raises(RunDirBusy):
            RunLock(str(out)).acquire()
    finally:
        holder.kill()
        holder.wait()
    # The holder died without releasing: its lock is stale and taken over.
    assert f"pid {holder.pid}" in open(out / LOCK_NAME).read()
    lock = RunLock(str(out)).acquire()
    assert f"pid {os.getpid()}" in open(out / LOCK_NAME).read()
    lock.release()


def _save_two_checkpoints(tmp_path):
    model = nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    cfg = __import__("vov3d.config.defaults", fromlist=["get_cfg"]).get_cfg()
    p1 = cu.save_checkpoint(str(tmp_path), model, opt, 0, cfg)
    with torch.no_grad():
        model.weight.add_(1.0)
    p2 = cu.save_checkpoint(str(tmp_path), model, opt, 1, cfg)
    return p1, p2


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_damaged_newest_checkpoint_falls_back(tmp_path, damage, caplog):
    p1, p2 = _save_two_checkpoints(tmp_path)
    data = bytearray(open(p2, "rb").read())
    if damage == "truncate":
        data = data[: len(data) // 2]
    else:  # 3 bytes inside the tensor data: the zip still reads, the weights would change silently
        for k in (len(data) // 2, len(data) // 2 + 7, len(data) // 2 + 13):
            data[k] ^= 0xFF
    open(p2, "wb").write(bytes(data))
    with pytest.raises(cu.CheckpointCorrupt, match="checksum"):
        cu.read_checkpoint(p2)
    path, ckpt = cu.find_resume_checkpoint(str(tmp_path))
    assert path == p1 and ckpt["epoch"] == 0
    assert any("Passing over checkpoint" in r.message and p2 in r.message for r in caplog.records)


def test_run_resumes_past_a_bit_flipped_newest_checkpoint(reference, tmp_path):
    out = tmp_path / "flipped"
    shutil.copytree(reference, out)
    newest = cu.get_path_to_checkpoint(str(out), 3)
    data = bytearray(open(newest, "rb").read())
    for k in range(len(data) // 2, len(data) // 2 + 3):
        data[k] ^= 0x5A
    open(newest, "wb").write(bytes(data))
    r = run(out)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"Passing over checkpoint {newest}" in r.stdout and "checksum" in r.stdout
    assert "Resuming from " + cu.get_path_to_checkpoint(str(out), 2) in r.stdout
    assert_bit_equal(reference, out)  # epoch 3 trained again, to the same weights
    assert train_steps(out) == train_steps(reference)


def test_official_checkpoint_without_checksum_loads():
    path = os.path.join(REPO, "..", "shared", "reference", "vov3d_m.pyth")
    if not os.path.isfile(path):
        pytest.skip("no official checkpoint in ../shared/reference")
    assert cu.verify_checkpoint(path) is None
    assert "model_state" in cu.read_checkpoint(path)


def test_checkpoints_follow_umask(tmp_path):
    old = os.umask(0o022)
    try:
        p1, _ = _save_two_checkpoints(tmp_path)
    finally:
        os.umask(old)
    assert os.stat(p1).st_mode & 0o777 == 0o644
    assert os.stat(p1 + cu.CHECKSUM_SUFFIX).st_mode & 0o777 == 0o644


def test_auto_resume_needs_an_exact_fit(reference, tmp_path):
    out = tmp_path / "refit"
    shutil.copytree(reference, out)
    r = run(out, "MODEL.NUM_CLASSES", "4", "SOLVER.MAX_EPOCH", "4")
    assert r.returncode == 2
    line = r.stderr.strip().splitlines()[-1]
    assert line.startswith("vov3d: error: cannot resume from") and "MODEL.NUM_CLASSES" in line, r.stderr
    assert open(out / "stdout.log").read().rstrip().endswith(line.split("  (VOV3D_DEBUG")[0])


@pytest.mark.parametrize("key,value", [("TRAIN.CHECKPOINT_PERIOD", "0"), ("LOG_PERIOD", "0"),
                                       ("TRAIN.EVAL_PERIOD", "-1"), ("DIST_TIMEOUT_MINUTES", "0.0")])
def test_bad_period_keys_one_line(key, value, tmp_path):
    from vov3d.utils.parser import ConfigError, build_parser, config_from_args

    args = build_parser().parse_args([])
    args.opts = [*TOY, "OUTPUT_DIR", str(tmp_path), key, value]
    with pytest.raises(ConfigError, match=f"^{key} {value}: must be"):
        config_from_args(args)


def test_bad_period_key_from_command_line(reference, tmp_path):
    r = run(reference, "TRAIN.CHECKPOINT_PERIOD", "0")  # an existing run folder: the reason lands there
    assert r.returncode == 2 and r.stderr.strip() == "vov3d: error: TRAIN.CHECKPOINT_PERIOD 0: must be >= 1"
    assert open(reference / "stdout.log").read().rstrip().endswith(r.stderr.strip())


@pytest.fixture
def full_disk(tmp_path):
    """Returns a folder on a small tmpfs nearly filled (root), else None."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mnt)],
                                           capture_output=True).returncode != 0:
        yield None
        return
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_full_disk_one_line(full_disk, tmp_path, monkeypatch):
    if full_disk is None:  # no tmpfs here: a checkpoint write that raises ENOSPC, in this process
        from vov3d.engine import launch

        def no_space(*a, **k):
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(torch, "save", no_space)
        cfg = __import__("vov3d.config.defaults", fromlist=["get_cfg"]).get_cfg()
        with pytest.raises(OSError) as e:
            cu.save_checkpoint(str(tmp_path), nn.Linear(2, 2), None, 0, cfg)
        code, line = launch.classify_stop(e.value, cfg)
        assert code == 2 and line.startswith("vov3d: error: the disk is full (") and "checkpoint_epoch_00001" in line
        return
    out = full_disk / "run"
    # The toy's logs fit; its first checkpoint (with optimizer and EMA) does not.
    ballast = full_disk / "ballast"
    ballast.write_bytes(b"\0" * (512 * 1024 - 40 * 1024))
    r = run(out, "SOLVER.MAX_EPOCH", "1", "TRAIN.EVAL_PERIOD", "0")
    assert r.returncode == 2, r.stderr[-3000:]
    line = r.stderr.strip().splitlines()[-1]
    assert line.startswith("vov3d: error: the disk is full (") and "No space left on device" in line, r.stderr
    assert "Traceback" not in r.stderr
    assert open(out / "stdout.log").read().rstrip().endswith(line.split("  (VOV3D_DEBUG")[0])
    assert not [n for n in os.listdir(cu.get_checkpoint_dir(str(out))) if n.endswith(".tmp")]
