"""Loaders (batching, workers, distributed sharding), bad-data handling, check_dataset, data benchmark."""

import argparse
import logging
import os
import random

import pytest
import torch

from vov3d.config.defaults import get_cfg
from vov3d.datasets import build_dataset, loader, synthetic

pytestmark = pytest.mark.filterwarnings("ignore:The image decoding:DeprecationWarning")
T = 4


def tiny_cfg(data, name, *opts):
    cfg = get_cfg()
    cfg.merge_from_list(data.cfg_opts() + ["TRAIN.DATASET", name, "TEST.DATASET", name, "NUM_GPUS", 0])
    cfg.merge_from_list(["DATA.NUM_FRAMES", T, "DATA.SAMPLING_RATE", 2, "DATA.TARGET_FPS", 15,
                         "DATA.TRAIN_JITTER_SCALES", [48, 56], "DATA.TRAIN_CROP_SIZE", 40, "DATA.TEST_CROP_SIZE", 48,
                         "TEST.NUM_ENSEMBLE_VIEWS", 2, "TEST.NUM_SPATIAL_CROPS", 3, "TRAIN.BATCH_SIZE", 2,
                         "TEST.BATCH_SIZE", 2, "DATA_LOADER.NUM_WORKERS", 0,
                         "DATA.MIN_VIDEO_FRAMES", T])  # short videos count as bad here (default: repeat frames)
    cfg.merge_from_list(list(opts))
    return cfg


@pytest.fixture(scope="module")
def ssv1(tmp_path_factory):
    return synthetic.make_ssv1(str(tmp_path_factory.mktemp("ssv1")), videos_per_split={"train": 6, "val": 7, "test": 0})


@pytest.fixture(scope="module")
def bad_kinetics(tmp_path_factory):
    """Kinetics with 8 train / 5 val clips, of which: truncated mp4, empty, garbage, 2-frame clip, cut webm."""
    data = synthetic.make_kinetics(str(tmp_path_factory.mktemp("k_bad")), annotations=("official",),
                                   videos_per_split={"train": 8, "val": 5, "test": 0})
    train, val = data.split("train"), data.split("val")
    synthetic.corrupt_file(train[0].path, "truncate")
    synthetic.corrupt_file(train[1].path, "empty")
    synthetic.corrupt_file(train[2].path, "garbage")
    synthetic.write_video(train[3].path, 2, 64, 48, fps=15)  # fewer frames than NUM_FRAMES
    webm = os.path.splitext(val[0].path)[0] + ".webm"  # same clip name, other container: still found
    os.remove(val[0].path)
    synthetic.write_video(webm, 60, 64, 48, fps=15, codec="vp9", pattern="texture")
    synthetic.corrupt_file(webm, "truncate")
    data.bad = {"train": [v.path for v in train[:4]], "val": [webm]}
    return data


@pytest.mark.parametrize("workers", [0, 2])
def test_loaders_batches_and_meta(ssv1, workers):
    cfg = tiny_cfg(ssv1, "ssv1", "DATA_LOADER.NUM_WORKERS", workers)
    train = loader.construct_loader(cfg, "train")
    assert len(train) == 3 and not train.pin_memory
    for inputs, labels, index, meta in train:
        assert len(inputs) == 1 and inputs[0].shape == (2, 3, T, 40, 40)
        assert labels.dtype == torch.long and index.shape == (2,)
        assert set(meta) >= {"video_id", "valid", "bad_samples", "error"} and len(meta["video_id"]) == 2
        assert meta["valid"] == [True, True] and meta["bad_samples"] == [[], []]
    test = loader.construct_loader(cfg, "test")
    seen = []
    for inputs, labels, index, meta in test:
        assert inputs[0].shape[1:] == (6, 3, T, 48, 48)
        seen += index.tolist()
    assert seen == list(range(7))  # every video once, last partial batch kept
    val = loader.construct_loader(cfg, "val")
    assert next(iter(val))[0][0].shape == (2, 3, T, 48, 48)


@pytest.mark.parametrize("split", ["val", "test"])
def test_batches_are_written_in_place_and_equal_single_items(ssv1, split):
    ds = build_dataset("ssv1", tiny_cfg(ssv1, "ssv1"), split)
    batch = ds.__getitems__([2, 0, 1])
    inputs, labels, index, meta = loader.collate(batch)
    assert inputs[0] is batch.inputs and index.tolist() == [2, 0, 1]
    for k, i in enumerate([2, 0, 1]):
        assert torch.equal(inputs[0][k], ds[i][0][0])


@pytest.mark.parametrize("world", [2, 3, 4])
def test_distributed_eval_shards_without_duplicates(ssv1, world, monkeypatch):
    cfg = tiny_cfg(ssv1, "ssv1", "TEST.BATCH_SIZE", 4 * world)
    shards = []
    for rank in range(world):
        monkeypatch.setattr(loader, "world_info", lambda r=rank: (r, world))
        test = loader.construct_loader(cfg, "test")
        assert isinstance(test.sampler, loader.ShardSampler) and test.batch_size == 4
        shards.append([i for _, _, idx, _ in test for i in idx.tolist()])
    flat = sorted(i for s in shards for i in s)
    assert flat == list(range(7)), shards  # 7 videos: no padding duplicates, none lost


def test_distributed_train_sampler_and_epochs(ssv1, monkeypatch):
    monkeypatch.setattr(loader, "world_info", lambda: (1, 2))
    train = loader.construct_loader(tiny_cfg(ssv1, "ssv1"), "train")
    assert isinstance(train.sampler, torch.utils.data.DistributedSampler) and train.sampler.rank == 1
    orders = []
    for epoch in (0, 1):
        loader.shuffle_dataset(train, epoch)
        orders.append(list(train.sampler))
    assert orders[0] != orders[1] and len(orders[0]) == 3


@pytest.mark.parametrize("workers", [0, 2])
def test_train_substitutes_bad_videos(bad_kinetics, workers, caplog):
    random.seed(0)
    torch.manual_seed(0)
    cfg = tiny_cfg(bad_kinetics, "kinetics", "DATA_LOADER.NUM_WORKERS", workers)
    train = loader.construct_loader(cfg, "train")
    bad, returned = [], []
    with caplog.at_level(logging.WARNING):
        for epoch in range(3):
            loader.shuffle_dataset(train, epoch)
            for inputs, labels, index, meta in train:
                assert inputs[0].shape == (2, 3, T, 40, 40) and all(meta["valid"])
                returned += index.tolist()
                for item in meta["bad_samples"]:
                    bad += item
    assert not set(returned) & set(range(4))  # the index of the sample actually returned
    assert {p for p, _ in bad} == set(bad_kinetics.bad["train"])
    reasons = {os.path.basename(p): r for p, r in bad}
    assert any("too few frames" in r for r in reasons.values()) and any("empty" in r for r in reasons.values())
    summary = loader.summarize_bad_samples(bad)
    assert summary.startswith(f"{len(bad)} bad samples substituted (4 files")
    if workers == 0:  # logged once per file, not once per failure
        assert sum(bad_kinetics.bad["train"][0] in r.message for r in caplog.records) == 1


def test_val_substitutes_and_test_reports(bad_kinetics):
    cfg = tiny_cfg(bad_kinetics, "kinetics")
    val = build_dataset("kinetics", cfg, "val")
    inputs, _, index, meta = val[0]
    assert index == 1 and meta["bad_samples"][0][0] == bad_kinetics.bad["val"][0]
    assert "truncated" in meta["bad_samples"][0][1] or "no decodable" in meta["bad_samples"][0][1]
    test = build_dataset("kinetics", cfg, "test")
    inputs, label, index, meta = test[0]
    assert index == 0 and meta["valid"] is False and meta["error"] and meta["video_id"] == test.video_ids[0]
    assert inputs[0].shape == (6, 3, T, 48, 48) and not inputs[0].any()
    assert test[1][3]["valid"] is True


def test_retries_exhausted_names_paths(bad_kinetics):
    cfg = tiny_cfg(bad_kinetics, "kinetics", "DATA.MAX_BAD_SAMPLE_RETRIES", 2)
    ds = build_dataset("kinetics", cfg, "train")
    ds.records = ds.records[:4]  # only bad videos left
    with pytest.raises(RuntimeError, match="3 bad videos in a row") as e:
        ds[0]
    assert bad_kinetics.bad["train"][0] in str(e.value)


def _run_tool(script, argv, monkeypatch):
    tools = os.path.join(os.path.dirname(__file__), "..", "tools")
    monkeypatch.syspath_prepend(tools)
    module = __import__(script)
    return module.main(argv)


def _write_cfg(tmp_path, cfg):
    path = tmp_path / "cfg.yaml"
    path.write_text(cfg.dump())
    return str(path)


def test_check_dataset_tool(bad_kinetics, ssv1, tmp_path, monkeypatch, capsys):
    bad_cfg = _write_cfg(tmp_path, tiny_cfg(bad_kinetics, "kinetics"))
    assert _run_tool("check_dataset", ["--cfg", bad_cfg], monkeypatch) == 1
    out = capsys.readouterr().out
    assert "kinetics train: 8 listed" in out and "3 undecodable, 1 with too few frames" in out
    assert "kinetics val: 5 listed" in out and "kinetics test" not in out  # test = val file: checked once
    assert bad_kinetics.bad["train"][1] in out and "empty file" in out
    good_cfg = tmp_path / "good.yaml"
    good_cfg.write_text(tiny_cfg(ssv1, "ssv1").dump())
    assert _run_tool("check_dataset", ["--cfg", str(good_cfg), "--split", "val"], monkeypatch) == 0
    assert "frames per video min" in capsys.readouterr().out


def test_data_benchmark_runs(ssv1):
    from vov3d.bench.data import run_data_benchmark

    cfg = tiny_cfg(ssv1, "ssv1", "BENCHMARK.NUM_EPOCHS", 2)
    result = run_data_benchmark(cfg, argparse.Namespace(num_iters=0, synthetic=""))
    assert result["train"]["clips_per_s"] > 0 and result["train_raw_decode"]["clips_per_s"] > 0
    assert result["test"]["decodes_per_video"] == 1.0 and result["test_views"] == 6


def test_check_dataset_reads_the_runs_splits_and_labels(kinetics_lists, tmp_path, monkeypatch, capsys):
    folder, media = kinetics_lists
    cfg = tiny_cfg_lists(folder, media)
    assert _run_tool("check_dataset", ["--cfg", _write_cfg(tmp_path, cfg)], monkeypatch) == 0
    out = capsys.readouterr().out
    # PySlowFast's test.csv is what the test phase reads: checked as its own split.
    assert "kinetics train:" in out and "kinetics val:" in out and f"kinetics test: 2 listed in {folder}/test.csv" in out
    assert "labels 0..1 of MODEL.NUM_CLASSES 400" in out
    cfg.merge_from_list(["TEST.ENABLE", False, "TRAIN.EVAL_PERIOD", 0])
    assert _run_tool("check_dataset", ["--cfg", _write_cfg(tmp_path, cfg)], monkeypatch) == 0
    out = capsys.readouterr().out
    assert "kinetics train:" in out and "kinetics val:" not in out and "kinetics test:" not in out
    # A bad label in the test list: the same one line a run stops with, and exit 1.
    with open(os.path.join(folder, "test.csv")) as f:
        lines = f.read().splitlines()
    with open(os.path.join(folder, "test.csv"), "w") as f:
        f.write("\n".join(lines[:1] + [lines[1].rsplit(" ", 1)[0] + " 400"]) + "\n")
    assert _run_tool("check_dataset", ["--cfg", _write_cfg(tmp_path, tiny_cfg_lists(folder, media))], monkeypatch) == 1
    assert f"test: cannot build the dataset: {folder}/test.csv:2: label 400 is outside [0, 400)" in capsys.readouterr().out


@pytest.fixture
def kinetics_lists(tmp_path):
    data = synthetic.make_kinetics(str(tmp_path / "k"), annotations=("pyslowfast",), num_classes=2,
                                   videos_per_split={"train": 2, "val": 1, "test": 2})
    media = os.path.join(data.root, "videos")
    folder = tmp_path / "lists"
    folder.mkdir()
    for split in ("train", "val", "test"):
        (folder / f"{split}.csv").write_text(
            "".join(f"{os.path.relpath(v.path, media)} {v.label}\n" for v in data.split(split)))
    return str(folder), media


def tiny_cfg_lists(folder, media):
    cfg = get_cfg()
    cfg.merge_from_list(["DATA.PATH_TO_DATA_DIR", folder, "DATA.PATH_PREFIX", media, "TRAIN.DATASET", "kinetics",
                         "TEST.DATASET", "kinetics", "NUM_GPUS", 0, "DATA_LOADER.NUM_WORKERS", 0, "DATA.NUM_FRAMES", 4])
    return cfg
