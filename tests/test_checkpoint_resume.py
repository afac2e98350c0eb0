"""Checkpoints survive kills: atomic writes, and a SIGKILLed run resumed with the same command ends
with the same weights as an uninterrupted one (CPU, fixed RNG_SEED, 2 loader workers)."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from vov3d.config.defaults import get_cfg
from vov3d.utils import checkpoint as cu

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_kill_during_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    cfg = get_cfg()
    cfg.NUM_GPUS = 0
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    path = cu.save_checkpoint(str(tmp_path), model, opt, 0, cfg)
    before = open(path, "rb").read()
    real_save = torch.save

    def dying_save(obj, f, *a, **k):
        f.write(b"PK\x03\x04 partial bytes of a checkpoint")
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(torch, "save", dying_save)
    with torch.no_grad():
        model.weight.add_(1.0)
    with pytest.raises(KeyboardInterrupt):
        cu.save_checkpoint(str(tmp_path), model, opt, 0, cfg)
    monkeypatch.setattr(torch, "save", real_save)
    assert open(path, "rb").read() == before
    assert cu.read_checkpoint(path)["epoch"] == 0
    name = os.path.basename(path)
    assert sorted(os.listdir(os.path.dirname(path))) == [name, name + cu.CHECKSUM_SUFFIX]  # no temp file left


@pytest.fixture(scope="module")
def ssv1_data(tmp_path_factory):
    from vov3d.datasets import synthetic

    root = tmp_path_factory.mktemp("ssv1")
    return synthetic.make_ssv1(str(root), videos_per_split={"train": 8, "val": 3, "test": 3})


def tiny_vov3d_opts(data, out, *extra):
    """Returns run_net.py arguments for a narrow VoV3D on the synthetic SSv1 set, on CPU."""
    return [
        "--cfg", os.path.join(REPO, "configs/SSv1/VoV3D_M_16x1.yaml"), *data.cfg_opts(),
        "NUM_GPUS", "0", "DATA_LOADER.NUM_WORKERS", "2", "VOV3D.INNER_CH", "4", "X3D.DIM_C5", "32",
        "DATA.NUM_FRAMES", "4", "DATA.TRAIN_JITTER_SCALES", "[32, 40]", "DATA.TRAIN_CROP_SIZE", "32",
        "DATA.TEST_CROP_SIZE", "32", "MODEL.NUM_CLASSES", "4", "TRAIN.BATCH_SIZE", "4", "TEST.BATCH_SIZE", "2",
        "TRAIN.CHECKPOINT_PERIOD", "1", "LOG_PERIOD", "1", "TENSORBOARD.ENABLE", "False",
        "BN.NUM_BATCHES_PRECISE", "1", "OUTPUT_DIR", str(out), *extra,
    ]


def run_net(args, **kw):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, os.path.join(REPO, "tools/run_net.py"), *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def _wait_for(pred, proc, timeout):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if pred():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.05)
    return False


def test_sigkill_mid_epoch_then_resume_is_bit_exact(ssv1_data, tmp_path):
    extra = ("SOLVER.MAX_EPOCH", "3", "TRAIN.EVAL_PERIOD", "2", "TEST.ENABLE", "False")
    ref = tmp_path / "ref"
    p = run_net(tiny_vov3d_opts(ssv1_data, ref, *extra))
    out, _ = p.communicate(timeout=400)
    assert p.returncode == 0, out[-3000:]

    run = tmp_path / "killed"
    args = tiny_vov3d_opts(ssv1_data, run, *extra)
    p = run_net(args)
    metrics = run / "metrics.jsonl"

    def mid_epoch_2():
        return os.path.isfile(cu.get_path_to_checkpoint(str(run), 1)) and metrics.exists() and \
            '"epoch": "2/3", "epoch_float": 1.5' in metrics.read_text()

    reached = _wait_for(mid_epoch_2, p, 300)
    p.send_signal(signal.SIGKILL)
    out, _ = p.communicate(timeout=60)
    assert reached, out[-3000:]
    assert cu.list_checkpoints(str(run)) == [cu.get_path_to_checkpoint(str(run), 1)]

    p = run_net(args)
    out, _ = p.communicate(timeout=400)
    assert p.returncode == 0, out[-3000:]
    assert "Resuming from" in out and "checkpoint_epoch_00001.pyth" in out
    a = cu.read_checkpoint(cu.get_path_to_checkpoint(str(ref), 3))
    b = cu.read_checkpoint(cu.get_path_to_checkpoint(str(run), 3))
    for k in a["model_state"]:
        assert torch.equal(a["model_state"][k], b["model_state"][k]), k
    assert a["best_top1_err"] == b["best_top1_err"]


def test_sigterm_stops_cleanly_and_names_resume(ssv1_data, tmp_path):
    run = tmp_path / "term"
    p = run_net(tiny_vov3d_opts(ssv1_data, run, "SOLVER.MAX_EPOCH", "50", "TRAIN.EVAL_PERIOD", "0",
                                "TEST.ENABLE", "False"))
    metrics = run / "metrics.jsonl"
    assert _wait_for(lambda: metrics.exists() and "train_iter" in metrics.read_text(), p, 300)
    p.send_signal(signal.SIGTERM)
    out, _ = p.communicate(timeout=120)
    assert p.returncode == 4, out[-2000:]
    assert "Received SIGTERM" in out and "resume" in out
