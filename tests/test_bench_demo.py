"""vov3d-benchmark (tools/benchmark.py) --mode demo on a tiny version of the demo: every (seed, workers) run in its own
folder, a table with min / median / max, and the same result whatever the number of loader workers."""

import json
import os

import pytest
import torch

from vov3d.bench.demo import format_demo_table, read_test_top1, spread, take_int_lists, train_levers

# One epoch of 2 steps on 10 + 10 generated videos with a 4-channel VoV3D: seconds per run.
TINY = ["DEMO_DATA.TRAIN_PER_CLASS", 1, "DEMO_DATA.VAL_PER_CLASS", 1, "SOLVER.MAX_EPOCH", 1,
        "TRAIN.BATCH_SIZE", 4, "TEST.BATCH_SIZE", 5, "TEST.NUM_ENSEMBLE_VIEWS", 1, "TEST.NUM_SPATIAL_CROPS", 1,
        "DATA.NUM_FRAMES", 4, "DATA.TRAIN_JITTER_SCALES", "[32,40]", "DATA.TRAIN_CROP_SIZE", 32,
        "DATA.TEST_CROP_SIZE", 32, "VOV3D.INNER_CH", 4, "X3D.DIM_C5", 16, "BN.NUM_BATCHES_PRECISE", 1,
        "LOG_MODEL_INFO", False, "TENSORBOARD.ENABLE", False, "TRAIN.EVAL_PERIOD", 0,
        # Fixed speed levers: nothing is measured (the autotune has its own tests).
        "MODEL.MEMORY_FORMAT", "contiguous", "MODEL.DEPTHWISE_IMPL", "conv3d", "MODEL.CPU_FUSED_UNITS", "off",
        "MODEL.INFERENCE_AMP", "off", "MODEL.FOLD_BN", False]


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    from vov3d.cli.benchmark import main
    root = tmp_path_factory.mktemp("bench_demo")
    opts = [str(v) for v in TINY] + ["DEMO_DATA.ROOT", str(root / "data")]
    out = root / "runs"
    env = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        rc = main(["--mode", "demo", "--seeds", "3", "--workers", "1", "2", "--out", str(out),
                   "--output", str(root / "result.json"), *opts])
    finally:
        if env is None:
            os.environ.pop("OMP_NUM_THREADS")
        else:
            os.environ["OMP_NUM_THREADS"] = env
    with open(root / "result.json") as f:
        return rc, json.load(f), out


def test_demo_benchmark_runs_each_combination_in_its_own_folder(bench, capsys):
    rc, result, out = bench
    assert rc == 0, [r["log"] for r in result["runs"]]
    assert [(r["seed"], r["workers"]) for r in result["runs"]] == [(3, 1), (3, 2)]
    for r in result["runs"]:
        assert r["output_dir"] == str(out / f"seed3_workers{r['workers']}")
        assert os.path.isfile(os.path.join(r["output_dir"], "test_confusion_matrix.csv"))
        assert r["top1"] == read_test_top1(r["output_dir"]) is not None and r["wall_s"] > 0
        with open(r["log"]) as f:
            tail = f.read().rsplit("=" * 78, 2)[-2]  # the run's closing summary
        assert "Reached:      top-1" in tail and "Documented:   top-1 >= " in tail
        assert "test_confusion_matrix.csv" in tail and "metrics.jsonl" in tail and "checkpoints" in tail
    table = format_demo_table(result)
    assert "min" in table and "median" in table and result["machine"]["cpu"] in table
    assert result["data_generation_s"] > 0  # the tiny data did not exist before: generated and timed apart


def test_loader_workers_do_not_change_the_result(bench):
    # Each sample's augmentation is drawn from (seed, epoch, index), not from a worker's stream: 1 and 2
    # workers train the same weights and give the same test scores.
    _, result, _ = bench
    scores = [torch.load(os.path.join(r["output_dir"], "test_scores.pt"), weights_only=False)
              for r in result["runs"]]
    a, b = scores
    for key in a:
        if torch.is_tensor(a[key]):
            assert torch.equal(a[key], b[key]), key


def test_spread_and_levers_parsing():
    assert spread([91.0, None, 93.5, 90.5]) == {"min": 90.5, "median": 91.0, "max": 93.5}
    assert spread([None]) == {"min": None, "median": None, "max": None}
    assert train_levers("Speed levers (train): cl3d+dw_conv2d, measured on AMD") == "cl3d+dw_conv2d (measured)"
    assert train_levers("Speed levers (train): stock (cached for AMD EPYC, 32x3)") == "stock (cached)"
    assert train_levers("nothing") == "-"


def test_documented_verdict_uses_the_worst_run():
    run = {"seed": 0, "workers": 1, "wall_s": 200.0, "load_before": 0.1, "load_after": 0.2, "returncode": 0,
           "levers": "-", "log": "x"}
    result = {"config": "c.yaml", "opts": [], "data_generation_s": 0.0,
              "machine": {"cpu": "CPU X", "isa": [], "torch_cpu_capability": "avx2", "threads": 2,
                          "logical_cpus": 2, "torch": "2"},
              "runs": [dict(run, top1=92.0), dict(run, seed=1, top1=89.5, wall_s=310.0)],
              "top1": spread([92.0, 89.5]), "wall_s": spread([200.0, 310.0]),
              "documented": {"top1_acc": 90.0, "wall_minutes": 5.0, "machine": "CPU X"}}
    table = format_demo_table(result)
    assert "top-1 >= 90.0%: NOT met" in table and "<= 5.0 min: NOT met" in table
    result["runs"][1].update(top1=90.5, wall_s=250.0)
    result["top1"], result["wall_s"] = spread([92.0, 90.5]), spread([200.0, 250.0])
    table = format_demo_table(result)
    assert "top-1 >= 90.0%: met" in table and "<= 5.0 min: met" in table


def test_overrides_may_follow_the_number_lists():
    import argparse

    args = take_int_lists(argparse.Namespace(seeds=["0", "1", "2"], workers=["1", "2", "SOLVER.MAX_EPOCH", "5"],
                                             opts=["TRAIN.BATCH_SIZE", "16"]))
    assert args.seeds == [0, 1, 2] and args.workers == [1, 2]
    assert args.opts == ["SOLVER.MAX_EPOCH", "5", "TRAIN.BATCH_SIZE", "16"]
    with pytest.raises(ValueError, match="--seeds"):
        take_int_lists(argparse.Namespace(seeds=["SOLVER.MAX_EPOCH"], workers=["1"], opts=[]))


def test_summary_compares_with_the_documented_figures():
    from vov3d.config.defaults import get_cfg
    from vov3d.engine.launch import reached_vs_documented

    cfg = get_cfg()
    report = {"top1_acc": 91.0}
    assert reached_vs_documented(cfg, report, 200.0) == []  # nothing documented, nothing compared
    cfg.DOCUMENTED.TOP1_ACC, cfg.DOCUMENTED.WALL_MINUTES, cfg.DOCUMENTED.MACHINE = 90.0, 5.0, "CPU X"
    reached, documented = reached_vs_documented(cfg, report, 330.0, generation_s=40.0)
    assert "top-1 91.00% in 5.5 min" in reached and "40 s generating" in reached
    assert documented == ("Documented:   top-1 >= 90.0% (met), <= 5.0 min with the data cached (met), "
                          "measured on CPU X")
    _, documented = reached_vs_documented(cfg, {"top1_acc": 89.9}, 301.0)
    assert "top-1 >= 90.0% (NOT met)" in documented and "(NOT met), measured" in documented
