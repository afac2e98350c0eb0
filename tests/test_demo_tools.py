"""The demo dataset and the tools built on the test views: demo_net and temporal_robustness."""

import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import REPO
from vov3d.config.defaults import get_cfg
from vov3d.datasets import build_dataset
from vov3d.datasets.demo import TEMPLATES, class_names, ensure_demo_data

TINY = ["NUM_GPUS", 0, "DEMO_DATA.TRAIN_PER_CLASS", 1, "DEMO_DATA.VAL_PER_CLASS", 1,
        "DATA_LOADER.NUM_WORKERS", 0, "TEST.NUM_ENSEMBLE_VIEWS", 1, "TEST.NUM_SPATIAL_CROPS", 1,
        "VOV3D.INNER_CH", 8, "X3D.DIM_C5", 32, "TRAIN.BATCH_SIZE", 4, "TEST.BATCH_SIZE", 4]


@pytest.fixture(scope="module")
def demo_cfg(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    cfg = get_cfg()
    cfg.merge_from_file(str(REPO / "configs/demo/VoV3D_M_demo.yaml"))
    cfg.merge_from_list(TINY + ["DEMO_DATA.ROOT", str(root / "data"), "OUTPUT_DIR", str(root / "out")])
    ensure_demo_data(cfg, progress=False)
    return cfg


def test_demo_data_is_released_ssv2_layout(demo_cfg):
    root = os.path.expanduser(demo_cfg.DEMO_DATA.ROOT)
    with open(os.path.join(root, "something-something-v2-labels.json")) as f:
        labels = json.load(f)
    assert sorted(labels, key=lambda k: int(labels[k])) == class_names() == sorted(labels)
    with open(os.path.join(root, "something-something-v2-train.json")) as f:
        train = json.load(f)
    assert len(train) == len(TEMPLATES) and {"id", "label", "template", "placeholders"} <= set(train[0])
    assert all(os.path.isfile(os.path.join(root, "20bn-something-something-v2", e["id"] + ".webm")) for e in train)
    ds = build_dataset("demo", demo_cfg, "train")
    assert ds.class_names == class_names() and len(ds) == len(TEMPLATES)
    clip = ds[0][0][0]
    crop = demo_cfg.DATA.TRAIN_CROP_SIZE
    assert clip.shape == (3, demo_cfg.DATA.NUM_FRAMES, crop, crop)
    # A second call finds the data and does not regenerate it.
    stamp = os.path.getmtime(os.path.join(root, "DEMO_VERSION"))
    ensure_demo_data(demo_cfg, progress=False)
    assert os.path.getmtime(os.path.join(root, "DEMO_VERSION")) == stamp


def test_demo_net_prints_top5(demo_cfg, tmp_path):
    root = os.path.expanduser(demo_cfg.DEMO_DATA.ROOT)
    video = os.path.join(root, "20bn-something-something-v2", sorted(os.listdir(os.path.join(root, "20bn-something-something-v2")))[0])
    cmd = [sys.executable, str(REPO / "tools/demo_net.py"), "--cfg", str(REPO / "configs/demo/VoV3D_M_demo.yaml"),
           "--video", video, "--json"] + [str(v) for v in TINY] + [
           "DEMO_DATA.ROOT", root, "OUTPUT_DIR", str(tmp_path / "none")]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert len(result["top"]) == 5 and result["views"] == 1
    assert {name for name, _ in result["top"]} <= set(class_names())
    assert abs(sum(result["scores"]) - 1.0) < 1e-4
    missing = subprocess.run(cmd[:5] + [str(tmp_path / "nope.mp4")] + cmd[6:], capture_output=True, text=True, timeout=300)
    assert missing.returncode == 2 and "nope.mp4" in missing.stderr


def test_temporal_robustness_sweeps_rates(demo_cfg, tmp_path):
    from vov3d.engine import robustness
    from vov3d.models import build_model
    from vov3d.utils.checkpoint import save_checkpoint

    torch.manual_seed(0)
    cfg = demo_cfg.clone()
    ckpt = save_checkpoint(str(tmp_path), build_model(cfg), None, 0, cfg)
    cfg.TEST.CHECKPOINT_FILE_PATH = ckpt
    cfg.DATA.TARGET_FPS = 12
    summary = robustness.run([("tiny", cfg)], [1, 2], str(tmp_path / "sweep"))
    assert set(summary["tiny"]["accuracy"]) == {1, 2}
    assert os.path.isfile(tmp_path / "sweep" / "robustness.png")
    assert os.path.isfile(tmp_path / "sweep" / "robustness.json")


def test_flip_demo_config_differs_only_in_flipping():
    base, flip = get_cfg(), get_cfg()
    base.merge_from_file(str(REPO / "configs/demo/VoV3D_M_demo.yaml"))
    flip.merge_from_file(str(REPO / "configs/demo/VoV3D_M_demo_flip.yaml"))
    assert not base.DATA.RANDOM_FLIP and flip.DATA.RANDOM_FLIP
    flip.DATA.RANDOM_FLIP, flip.OUTPUT_DIR = False, base.OUTPUT_DIR
    # The documented figures are the demo's; the flip variant promises none.
    assert flip.DOCUMENTED.TOP1_ACC == 0.0 and base.DOCUMENTED.TOP1_ACC > 0
    flip.DOCUMENTED = base.DOCUMENTED
    assert flip.dump() == base.dump()
