"""In-process training / testing on the toy model and dataset: outputs, resume, fine-tuning, NaN stop,
gradient accumulation, EMA, mixed precision."""

import json
import os
import shutil

import pytest
import torch

from test_engine_toys import EngineToyData, toy_cfg
from vov3d.engine import evaluate
from vov3d.engine.meters import LossExplosionError
from vov3d.engine.train import train
from vov3d.engine import losses
from vov3d.utils import checkpoint as cu
from vov3d.utils import logging as vlog


def _final_state(out, epoch):
    return cu.read_checkpoint(cu.get_path_to_checkpoint(out, epoch))["model_state"]


pytestmark = pytest.mark.usefixtures("one_thread")



def _assert_same_state(a, b, exact=True):
    assert a.keys() == b.keys()
    for k in a:
        if exact:
            assert torch.equal(a[k], b[k]), k
        else:
            assert torch.allclose(a[k], b[k], atol=1e-6, rtol=1e-5), k


def test_train_then_test_outputs(tmp_path, monkeypatch):
    monkeypatch.setattr(EngineToyData, "INVALID_TEST", {2})
    out = tmp_path / "run"
    cfg = toy_cfg(out, "MODEL.MODEL_NAME", "EngineToyBN", "BN.USE_PRECISE_STATS", "True",
                  "BN.NUM_BATCHES_PRECISE", "2", "TENSORBOARD.ENABLE", "True",
                  "TENSORBOARD.CONFUSION_MATRIX.ENABLE", "True")
    res = train(cfg)
    assert res["start_epoch"] == 0 and res["best_epoch"] is not None
    ckpts = cu.list_checkpoints(str(out))
    assert [os.path.basename(p) for p in ckpts] == [f"checkpoint_epoch_{i:05d}.pyth" for i in (1, 2, 3)]
    assert os.path.isfile(out / "checkpoints" / "checkpoint_best.pyth")
    ck = cu.read_checkpoint(ckpts[-1])
    assert ck["epoch"] == 2 and len(ck["rng_state"]) == 1 and "optimizer_state" in ck

    stats = vlog.read_json_stats(str(out))
    kinds = [s["_type"] for s in stats]
    assert kinds.count("train_iter") == 6 and kinds.count("train_epoch") == 3 and kinds.count("val_epoch") == 3
    it = [s for s in stats if s["_type"] == "train_iter"][0]
    for key in ("epoch", "iter", "loss", "lr", "top1_err", "top5_err", "dt_data", "dt_net", "eta"):
        assert key in it
    assert it["lr"] == pytest.approx(0.01)  # WARMUP_START_LR at iteration 0
    assert all(s["bad_samples"] == 1 for s in stats if s["_type"] == "train_epoch")
    log = open(out / "stdout.log").read()
    assert "json_stats: " in log and "substituted" in log and "videos/broken.mp4" in log
    man = json.load(open(out / "manifest.json"))
    assert man["world_size"] == 1 and man["effective_batch_size"] == 4 and man["dataset_sizes"]["train"] == 8
    assert man["bad_samples_per_epoch"] == {"1": 1, "2": 1, "3": 1} and man["env"]["torch"]
    assert os.path.isfile(out / "training_curves.png")
    assert any(n.startswith("events") for _, _, fs in os.walk(out / "runs-engine_toy") for n in fs)

    rep = evaluate.test(cfg)
    assert rep["num_videos"] == 4 and rep["num_invalid"] == 1 and rep["invalid_video_ids"] == ["test_002"]
    assert rep["num_missing"] == 0 and rep["checkpoint"] == ckpts[-1]
    saved = torch.load(out / "test_scores.pt", weights_only=True)
    assert saved["scores"].shape == (5, 6, 3) and saved["video_index"].tolist() == [0, 1, 2, 3, 4]
    assert torch.allclose(saved["scores"].sum(-1), torch.ones(5, 6))  # softmax once, not twice
    again = evaluate.reensemble(str(out / "test_scores.pt"))
    assert again["top1_acc"] == pytest.approx(rep["top1_acc"]) and again["num_videos"] == 4
    for name in ("test_per_class_accuracy.csv", "test_confusion_matrix.csv", "test_confusion_matrix.png"):
        assert os.path.isfile(out / name), name
    assert json.load(open(out / "manifest.json"))["test"]["num_invalid"] == 1


def test_resume_from_checkpoint_is_bit_exact(tmp_path):
    full = tmp_path / "full"
    train(toy_cfg(full, "MODEL.MODEL_NAME", "EngineToyBN", "BN.USE_PRECISE_STATS", "True",
                  "BN.NUM_BATCHES_PRECISE", "1"))
    part = tmp_path / "part"
    os.makedirs(part / "checkpoints")
    shutil.copy(cu.get_path_to_checkpoint(str(full), 1), part / "checkpoints")
    res = train(toy_cfg(part, "MODEL.MODEL_NAME", "EngineToyBN", "BN.USE_PRECISE_STATS", "True",
                        "BN.NUM_BATCHES_PRECISE", "1"))
    assert res["start_epoch"] == 1
    _assert_same_state(_final_state(str(full), 3), _final_state(str(part), 3))
    a = cu.read_checkpoint(cu.get_path_to_checkpoint(str(full), 3))["optimizer_state"]
    b = cu.read_checkpoint(cu.get_path_to_checkpoint(str(part), 3))["optimizer_state"]
    for k in a["state"]:
        assert torch.equal(a["state"][k]["momentum_buffer"], b["state"][k]["momentum_buffer"])


def test_finetune_with_other_class_count(tmp_path, caplog):
    src = tmp_path / "src"
    train(toy_cfg(src, "SOLVER.MAX_EPOCH", "1", "TRAIN.EVAL_PERIOD", "0"))
    ft = tmp_path / "ft"
    ckpt = cu.get_path_to_checkpoint(str(src), 1)
    res = train(toy_cfg(ft, "MODEL.NUM_CLASSES", "4", "TRAIN.CHECKPOINT_FILE_PATH", ckpt,
                        "TRAIN.CHECKPOINT_EPOCH_RESET", "True", "SOLVER.MAX_EPOCH", "1", "TRAIN.EVAL_PERIOD", "0"))
    assert res["start_epoch"] == 0
    log = open(ft / "stdout.log").read()
    assert "except the classifier" in log and "head.weight" in log
    new = _final_state(str(ft), 1)
    assert new["head.weight"].shape == (4, 6)


class _NanAfterTwo(torch.nn.CrossEntropyLoss):
    calls = 0

    def forward(self, x, y):
        type(self).calls += 1
        loss = super().forward(x, y)
        return loss * float("nan") if type(self).calls > 3 else loss


def test_nan_loss_stops_with_iteration_and_checkpoint(tmp_path):
    losses.register_loss("engine_test_nan", _NanAfterTwo)
    _NanAfterTwo.calls = 0
    out = tmp_path / "nan"
    with pytest.raises(LossExplosionError) as e:
        train(toy_cfg(out, "MODEL.LOSS_FUNC", "engine_test_nan", "TRAIN.EVAL_PERIOD", "0"))
    msg = str(e.value)
    assert "epoch 2, iteration 2/2" in msg and "global iteration 4" in msg
    assert cu.get_path_to_checkpoint(str(out), 1) in msg
    assert cu.list_checkpoints(str(out)) == [cu.get_path_to_checkpoint(str(out), 1)]  # no NaN checkpoint


def test_grad_accumulation_matches_large_batch(tmp_path):
    common = ("SOLVER.MAX_EPOCH", "2", "TRAIN.EVAL_PERIOD", "0", "SOLVER.WEIGHT_DECAY", "0.0")
    train(toy_cfg(tmp_path / "big", "TRAIN.BATCH_SIZE", "8", *common))
    train(toy_cfg(tmp_path / "acc", "TRAIN.BATCH_SIZE", "4", "TRAIN.GRAD_ACCUM_STEPS", "2", *common))
    _assert_same_state(_final_state(str(tmp_path / "big"), 2), _final_state(str(tmp_path / "acc"), 2), exact=False)
    assert json.load(open(tmp_path / "acc" / "manifest.json"))["effective_batch_size"] == 8


def test_ema_and_bf16_autocast(tmp_path):
    out = tmp_path / "ema"
    cfg = toy_cfg(out, "TRAIN.EMA.ENABLE", "True", "TRAIN.EMA.DECAY", "0.5", "TRAIN.MIXED_PRECISION", "True",
                  "SOLVER.MAX_EPOCH", "2")
    train(cfg)
    ck = cu.read_checkpoint(cu.get_path_to_checkpoint(str(out), 2))
    assert ck["ema_state"]["updates"] == 4
    assert not torch.equal(ck["ema_state"]["model_state"]["head.weight"], ck["model_state"]["head.weight"])
    assert evaluate.test(cfg)["num_videos"] == 5
