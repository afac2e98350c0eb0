"""End to end on tiny generated videos with a narrow real VoV3D: pre-train on a Kinetics-layout set
(5 classes), fine-tune on an SSv1-layout set (4 classes: classifier re-initialised), validate with
precise BN, multi-view test, and the same test over 2 gloo processes."""

import os
import socket
import subprocess
import sys

import pytest
import torch

from vov3d.engine import evaluate
from vov3d.engine.train import train
from vov3d.utils import checkpoint as cu
from vov3d.utils.parser import build_parser, config_from_args

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["NUM_GPUS", "0", "DATA_LOADER.NUM_WORKERS", "0", "VOV3D.INNER_CH", "4", "X3D.DIM_C5", "32",
        "DATA.NUM_FRAMES", "4", "DATA.SAMPLING_RATE", "2", "DATA.TRAIN_JITTER_SCALES", "[32, 40]",
        "DATA.TRAIN_CROP_SIZE", "32", "DATA.TEST_CROP_SIZE", "32", "TRAIN.BATCH_SIZE", "2", "TEST.BATCH_SIZE", "2",
        "LOG_PERIOD", "1", "TENSORBOARD.ENABLE", "False", "BN.NUM_BATCHES_PRECISE", "2", "SOLVER.MAX_EPOCH", "1",
        "TRAIN.CHECKPOINT_PERIOD", "1"]


pytestmark = pytest.mark.usefixtures("one_thread")



def _cfg(config, data, out, *opts):
    args = build_parser().parse_args(["--cfg", os.path.join(REPO, config)])
    args.opts = [*data.cfg_opts(), *TINY, "OUTPUT_DIR", str(out), *opts]
    return config_from_args(args)


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory):
    from vov3d.datasets import synthetic

    root = tmp_path_factory.mktemp("e2e")
    k400 = synthetic.make_kinetics(str(root / "k400"), num_classes=5,
                                   videos_per_split={"train": 4, "val": 1, "test": 1})
    ss = synthetic.make_ssv1(str(root / "ssv1"), num_classes=4, videos_per_split={"train": 4, "val": 3, "test": 1})
    pre = _cfg("configs/Kinetics/VoV3D_M_16x5.yaml", k400, root / "pre", "MODEL.NUM_CLASSES", "5",
               "TRAIN.EVAL_PERIOD", "0")
    train(pre)
    ckpt = cu.get_path_to_checkpoint(str(root / "pre"), 1)
    ft = _cfg("configs/SSv1/VoV3D_M_16x1.yaml", ss, root / "ft", "MODEL.NUM_CLASSES", "4",
              "TRAIN.CHECKPOINT_FILE_PATH", ckpt, "TRAIN.CHECKPOINT_EPOCH_RESET", "True", "TRAIN.EVAL_PERIOD", "1")
    res = train(ft)
    rep = evaluate.test(ft)
    return root, ft, res, rep


def test_finetune_reinitialises_classifier(finetuned):
    root, cfg, res, _ = finetuned
    assert res["start_epoch"] == 0 and res["val"]["num_videos"] == 3
    log = open(root / "ft" / "stdout.log").read()
    assert "except the classifier" in log and "head.projection.weight" in log
    assert "Computing precise BN statistics" in log
    state = cu.read_checkpoint(cu.get_path_to_checkpoint(str(root / "ft"), 1))["model_state"]
    assert state["head.projection.weight"].shape[0] == 4


def test_multiview_test_results(finetuned):
    root, cfg, _, rep = finetuned
    assert rep["num_videos"] == 3 and rep["num_missing"] == 0 and rep["num_views"] == 6
    saved = torch.load(root / "ft" / "test_scores.pt", weights_only=True)
    assert saved["scores"].shape == (3, 6, 4) and len(saved["class_names"]) == 4
    assert torch.allclose(saved["scores"].sum(-1), torch.ones(3, 6), atol=1e-5)
    assert os.path.isfile(root / "ft" / "test_confusion_matrix.png")


def test_two_process_test_matches(finetuned, tmp_path):
    root, cfg, _, _ = finetuned
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ckpt = cu.get_path_to_checkpoint(str(root / "ft"), 1)
    out = tmp_path / "two"
    data = ["DATA.PATH_TO_DATA_DIR", cfg.DATA.PATH_TO_DATA_DIR, "DATA.PATH_PREFIX", cfg.DATA.PATH_PREFIX]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(port), os.path.join(REPO, "tools/run_net.py"),
           "--cfg", os.path.join(REPO, "configs/SSv1/VoV3D_M_16x1.yaml"), *data, *TINY, "MODEL.NUM_CLASSES", "4",
           "TRAIN.ENABLE", "False", "TEST.CHECKPOINT_FILE_PATH", ckpt, "OUTPUT_DIR", str(out)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    one = torch.load(root / "ft" / "test_scores.pt", weights_only=True)
    two = torch.load(out / "test_scores.pt", weights_only=True)
    assert one["video_ids"] == two["video_ids"] and one["video_index"].tolist() == two["video_index"].tolist()
    assert torch.allclose(one["scores"], two["scores"], atol=1e-5)
