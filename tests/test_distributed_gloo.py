"""Two CPU processes (gloo) train and test like one: same LR schedule and effective batch, averaged
gradients (same weights with a BN-free model), and the same per-video test scores on a test set whose
size (5) does not divide by 2. Launched both by torchrun and by PySlowFast's --num_shards flags."""

import os
import socket
import subprocess
import sys

import pytest
import torch

from vov3d.utils import checkpoint as cu
from vov3d.utils import logging as vlog

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.dirname(os.path.abspath(__file__))

DRIVER = f"""
import sys
sys.path[:0] = [{TESTS!r}, {REPO!r}, {os.path.join(REPO, 'tools')!r}]
import test_engine_toys  # registers the toy model and dataset
import run_net
sys.exit(run_net.main(sys.argv[1:]))
"""

TOY = [
    "NUM_GPUS", "0", "TRAIN.DATASET", "engine_toy", "TEST.DATASET", "engine_toy", "MODEL.MODEL_NAME", "EngineToy",
    "MODEL.NUM_CLASSES", "3", "DATA.NUM_FRAMES", "2", "DATA.TRAIN_CROP_SIZE", "8", "DATA.TEST_CROP_SIZE", "8",
    "DATA_LOADER.NUM_WORKERS", "0", "TRAIN.BATCH_SIZE", "8", "TEST.BATCH_SIZE", "2",
    "TEST.NUM_ENSEMBLE_VIEWS", "2", "TEST.NUM_SPATIAL_CROPS", "3", "SOLVER.MAX_EPOCH", "3", "SOLVER.BASE_LR", "0.2",
    "SOLVER.WARMUP_EPOCHS", "1.0", "SOLVER.BASE_LR_SCALE_NUM_SHARDS", "False", "TRAIN.EVAL_PERIOD", "1",
    "TRAIN.CHECKPOINT_PERIOD", "1", "LOG_PERIOD", "1", "LOG_MODEL_INFO", "False", "MODEL.MEMORY_FORMAT",
    "contiguous", "RNG_SEED", "1",
]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    path = tmp_path_factory.mktemp("driver") / "driver.py"
    path.write_text(DRIVER)
    return str(path)


def _env():
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "SLURM_PROCID", "SLURM_NTASKS")}
    env["OMP_NUM_THREADS"] = "1"
    return env


def _single(driver, out, *opts):
    r = subprocess.run([sys.executable, driver, *TOY, "OUTPUT_DIR", str(out), *opts], cwd=REPO, env=_env(),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return r


def _torchrun(driver, out, *opts):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), driver, *TOY, "OUTPUT_DIR", str(out), *opts]
    r = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=400)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r


@pytest.fixture(scope="module")
def runs(driver, tmp_path_factory):
    root = tmp_path_factory.mktemp("gloo")
    _single(driver, root / "one")
    _torchrun(driver, root / "two")
    return root


def test_same_lr_schedule_and_effective_batch(runs):
    import json

    def lrs(d):
        return [(s["epoch_float"], s["lr"]) for s in vlog.read_json_stats(str(d)) if s["_type"] == "train_iter"]

    assert lrs(runs / "one") == lrs(runs / "two") and len(lrs(runs / "one")) == 3
    one, two = (json.load(open(runs / d / "manifest.json")) for d in ("one", "two"))
    assert (one["world_size"], two["world_size"]) == (1, 2)
    assert one["effective_batch_size"] == two["effective_batch_size"] == 8
    assert two["batch_size_per_process"] == 4 and one["base_lr"] == two["base_lr"]
    assert two["bad_samples_per_epoch"] == one["bad_samples_per_epoch"] == {"1": 1, "2": 1, "3": 1}


def test_gradients_averaged_same_weights(runs):
    a = cu.read_checkpoint(cu.get_path_to_checkpoint(str(runs / "one"), 3))
    b = cu.read_checkpoint(cu.get_path_to_checkpoint(str(runs / "two"), 3))
    for k in a["model_state"]:
        assert torch.allclose(a["model_state"][k], b["model_state"][k], atol=1e-6, rtol=1e-5), k
    assert len(b["rng_state"]) == 2  # one RNG state per process


def test_validation_and_test_identical(runs):
    v1 = [s for s in vlog.read_json_stats(str(runs / "one")) if s["_type"] == "val_epoch"]
    v2 = [s for s in vlog.read_json_stats(str(runs / "two")) if s["_type"] == "val_epoch"]
    assert [s["num_videos"] for s in v1] == [s["num_videos"] for s in v2] == [5, 5, 5]
    assert [s["top1_err"] for s in v1] == [s["top1_err"] for s in v2]
    s1 = torch.load(runs / "one" / "test_scores.pt", weights_only=True)
    s2 = torch.load(runs / "two" / "test_scores.pt", weights_only=True)
    assert s1["video_index"].tolist() == s2["video_index"].tolist() == [0, 1, 2, 3, 4]
    assert s1["video_ids"] == s2["video_ids"]
    assert torch.allclose(s1["scores"], s2["scores"], atol=1e-5)
    t1 = [s for s in vlog.read_json_stats(str(runs / "one")) if s["_type"] == "test_final"][-1]
    t2 = [s for s in vlog.read_json_stats(str(runs / "two")) if s["_type"] == "test_final"][-1]
    assert t1["top1_acc"] == t2["top1_acc"] and t2["num_videos"] == 5 and t2["num_missing"] == 0


def test_pyslowfast_shard_flags_test_only(runs, driver, tmp_path):
    """Two machines' worth of CPU processes started with --init_method/--num_shards/--shard_id."""
    ckpt = cu.get_path_to_checkpoint(str(runs / "one"), 3)
    port = _free_port()
    out = tmp_path / "shards"
    procs = [
        subprocess.Popen([sys.executable, driver, "--init_method", f"tcp://127.0.0.1:{port}", "--num_shards", "2",
                          "--shard_id", str(i), *TOY, "OUTPUT_DIR", str(out), "TRAIN.ENABLE", "False",
                          "TEST.CHECKPOINT_FILE_PATH", ckpt], cwd=REPO, env=_env(), stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
        for i in range(2)
    ]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs[0][-2000:] + outs[1][-2000:]
    s1 = torch.load(runs / "one" / "test_scores.pt", weights_only=True)
    s2 = torch.load(out / "test_scores.pt", weights_only=True)
    assert s2["video_index"].tolist() == [0, 1, 2, 3, 4]
    assert torch.allclose(s1["scores"], s2["scores"], atol=1e-6)
