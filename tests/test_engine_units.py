"""Unit tests of the engine's pieces: metrics, view aggregation, meta reading, losses, EMA, RNG state."""

import random

import numpy as np
import pytest
import torch

from vov3d.config.defaults import get_cfg
from vov3d.engine import evaluate
from vov3d.engine.batch import count_bad_samples, meta_values
from vov3d.engine.ema import ModelEMA
from vov3d.engine.losses import build_loss
from vov3d.utils import env, metrics


def test_topk_and_errors():
    preds = torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.1, 0.4], [0.2, 0.3, 0.5], [0.3, 0.4, 0.3]])
    labels = torch.tensor([1, 2, 0, 2])
    c1, c2 = metrics.topks_correct(preds, labels, (1, 2))
    assert (float(c1), float(c2)) == (1.0, 2.0)
    e1, e2 = metrics.topk_errors(preds, labels, (1, 2))
    assert float(e1) == pytest.approx(75.0) and float(e2) == pytest.approx(50.0)
    # k larger than the class count counts every row as correct.
    assert float(metrics.topks_correct(preds, labels, (5,))[0]) == 4.0


def test_confusion_and_mean_class_accuracy():
    pred = torch.tensor([0, 0, 1, 1, 2, 0])
    true = torch.tensor([0, 0, 1, 0, 2, 2])
    cm = metrics.confusion_matrix(pred, true, 4)
    assert cm[0].tolist() == [2, 1, 0, 0] and cm[2].tolist() == [1, 0, 1, 0] and cm.sum() == 6
    acc, counts = metrics.per_class_accuracy(cm)
    assert counts.tolist() == [3, 1, 2, 0] and torch.isnan(acc[3])
    assert metrics.mean_class_accuracy(pred, true, 4) == pytest.approx((200 / 3 + 100 + 50) / 3)


def test_ensemble_select_and_dedupe():
    # 2 videos, 2 clips x 3 crops, 3 classes; view = clip * 3 + crop.
    scores = torch.rand(2, 6, 3)
    assert torch.allclose(evaluate.ensemble_views(scores, "sum"), scores.sum(1))
    assert torch.allclose(evaluate.ensemble_views(scores, "max"), scores.max(1).values)
    sub = evaluate.select_views(scores, 2, 3, clips=[1], crops=[0, 2])
    assert torch.equal(sub, scores[:, [3, 5]])
    with pytest.raises(ValueError):
        evaluate.select_views(scores, 2, 3, clips=[2])
    idx = torch.tensor([4, 1, 4, 0])
    vals = torch.tensor([40, 10, 41, 0])
    u, v, ids = evaluate.dedupe_by_index(idx, vals, ["a", "b", "c", "d"])
    assert u.tolist() == [0, 1, 4] and v.tolist() == [0, 10, 40] and ids == ["d", "b", "a"]


def test_classification_report_excludes_invalid():
    s = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    y = torch.tensor([0, 0, 1])
    valid = torch.tensor([True, False, True])
    rep = evaluate.classification_report(s, y, valid, 2)
    assert rep["num_videos"] == 2 and rep["top1_acc"] == pytest.approx(50.0)
    assert rep["confusion_matrix"].tolist() == [[1, 0], [1, 0]]


def test_reensemble_from_saved_scores(tmp_path):
    g = torch.Generator().manual_seed(0)
    scores = torch.softmax(torch.randn(7, 6, 4, generator=g), -1)
    labels = torch.arange(7) % 4
    path = tmp_path / "s.pt"
    torch.save({"scores": scores, "labels": labels, "valid": torch.ones(7, dtype=torch.bool),
                "num_ensemble_views": 2, "num_spatial_crops": 3, "ensemble_method": "sum"}, path)
    full = evaluate.reensemble(str(path))
    want = float((scores.sum(1).argmax(1) == labels).float().mean() * 100)
    assert full["top1_acc"] == pytest.approx(want)
    one = evaluate.reensemble(str(path), clips=[0], crops=[1])
    want1 = float((scores[:, 1].argmax(1) == labels).float().mean() * 100)
    assert one["top1_acc"] == pytest.approx(want1)


def test_meta_values_both_collate_formats():
    assert meta_values({"valid": [True, False]}, "valid", 2) == [True, False]
    assert meta_values([{"valid": True}, {"valid": False}], "valid", 2) == [True, False]
    assert meta_values({"valid": torch.tensor([1, 0])}, "valid", 2) == [1, 0]
    assert meta_values(None, "video_id", 3, "") == ["", "", ""]
    assert meta_values({}, "valid", 2, True) == [True, True]
    n, ex = count_bad_samples({"bad_samples": [[("a.mp4", "truncated")], [], [("b", "x"), ("c", "y")]]}, 3)
    assert n == 3 and len(ex) == 3


def test_label_smoothing_loss():
    cfg = get_cfg()
    cfg.SOLVER.LABEL_SMOOTHING = 0.1
    loss = build_loss(cfg)
    x = torch.tensor([[2.0, 0.0, -1.0]])
    y = torch.tensor([0])
    logp = torch.log_softmax(x, -1)
    want = -(0.9 * logp[0, 0] + 0.1 * logp[0].mean())
    assert float(loss(x, y)) == pytest.approx(float(want), rel=1e-6)
    cfg.MODEL.LOSS_FUNC = "bce"
    with pytest.raises(ValueError, match="LABEL_SMOOTHING"):
        build_loss(cfg)


def test_ema_update():
    m = torch.nn.Linear(2, 1)
    ema = ModelEMA(m, decay=0.5)
    w0 = m.weight.detach().clone()
    with torch.no_grad():
        m.weight.add_(2.0)
    ema.update(m)
    assert torch.allclose(ema.module.weight, w0 + 1.0)
    state = ema.state_dict()
    ema2 = ModelEMA(torch.nn.Linear(2, 1), decay=0.5)
    ema2.load_state_dict(state)
    assert torch.equal(ema2.module.weight, ema.module.weight) and ema2.updates == 1


def test_rng_state_roundtrip_through_weights_only_load(tmp_path):
    env.set_seed(5)
    state = env.get_rng_state()
    a = (random.random(), np.random.rand(), torch.rand(2))
    torch.save({"rng_state": [state]}, tmp_path / "r.pt")
    loaded = torch.load(tmp_path / "r.pt", weights_only=True)["rng_state"][0]
    env.set_rng_state(loaded)
    b = (random.random(), np.random.rand(), torch.rand(2))
    assert a[0] == b[0] and a[1] == b[1] and torch.equal(a[2], b[2])
    with env.rng_preserved():
        torch.rand(10)
        random.random()
    c = torch.rand(1)
    env.set_rng_state(loaded)
    torch.rand(2)
    assert torch.equal(c, torch.rand(1))


def test_data_time_warning_names_num_workers(tmp_path, caplog):
    import logging

    from vov3d.engine.meters import TrainMeter

    cfg = get_cfg()
    cfg.OUTPUT_DIR = str(tmp_path)
    cfg.DATA_LOADER.NUM_WORKERS = 2
    meter = TrainMeter(2, cfg, torch.device("cpu"))
    for it in range(2):
        meter._tic, meter._data_done = 0.0, 1.0  # 1 s waiting for data
        meter.update(torch.randn(4, 3), torch.tensor([0, 1, 2, 0]), torch.tensor(1.0), 0.1, it)
    meter.tot_net_time = 0.1
    with caplog.at_level(logging.WARNING):
        stats = meter.log_epoch(0)
    assert stats["samples"] == 8
    assert any("DATA_LOADER.NUM_WORKERS (now 2)" in r.getMessage() for r in caplog.records)
