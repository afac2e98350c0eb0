"""Applications on a trained model: export (ONNX, torch.export), feature extraction, Grad-CAM."""

import sys

import pytest
import torch

from conftest import REPO, randomize_bn
from vov3d.config import load_config
from vov3d.models import build_model
from vov3d.utils.checkpoint import save_checkpoint

sys.path.insert(0, str(REPO / "tools"))  # the tools run in-process (their main() returns the exit code)

# A tiny X3D with D(2+1)D units (which the fused CPU kernel computes), one block per stage, 4 x 32^2 clips:
# tracing for export costs seconds per hundred ops.
TINY_YAML = """
MODEL: {ARCH: x3d, MODEL_NAME: X3D, NUM_CLASSES: 5, DROPOUT_RATE: 0.0}
X3D: {DIM_C5: 32, DEPTH_FACTOR: 0.1, WIDTH_FACTOR: 0.5, UNIT: d2plus1d}
DATA: {NUM_FRAMES: 4, TRAIN_CROP_SIZE: 32, TEST_CROP_SIZE: 32, TRAIN_JITTER_SCALES: [32, 40]}
TEST: {NUM_ENSEMBLE_VIEWS: 2, NUM_SPATIAL_CROPS: 3, BATCH_SIZE: 2}
NUM_GPUS: 0
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(config path, checkpoint path, model) of a tiny X3D with non-trivial BN statistics."""
    root = tmp_path_factory.mktemp("trained")
    cfg_path = root / "tiny.yaml"
    cfg_path.write_text(TINY_YAML)
    cfg = load_config(str(cfg_path), ["OUTPUT_DIR", str(root)])
    torch.manual_seed(0)
    model = randomize_bn(build_model(cfg)).eval()
    ckpt = save_checkpoint(str(root), model, None, 0, cfg, path=str(root / "tiny.pyth"))
    return str(cfg_path), ckpt, model


def test_export_onnx_runs_in_onnxruntime_within_1e4(trained, tmp_path, capsys, one_thread):
    """The tool writes an ONNX file with a dynamic batch that onnxruntime runs as PyTorch does."""
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from export_net import main
    from vov3d.apps.export import ClipOutput

    cfg_path, ckpt, model = trained
    out = tmp_path / "tiny.onnx"
    assert main(["--cfg", cfg_path, "--checkpoint", ckpt, "--format", "onnx", "--output", str(out),
                 "--output-kind", "logits"]) == 0
    assert "max abs difference" in capsys.readouterr().out
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for batch in (1, 5):  # the batch is dynamic
        x = torch.randn(batch, 3, 4, 32, 32)
        got = torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])
        with torch.no_grad():
            want = ClipOutput(model, "logits")(x)
        assert got.shape == (batch, 5) and (got - want).abs().max() <= 1e-4
    assert not list(tmp_path.glob(".*"))  # written through a temporary file, nothing left over


def test_export_program_is_stock_and_folded_even_from_a_fused_inference_copy(trained, tmp_path, one_thread):
    """torch.export of the runtime's inference copy (fused units on) exports the stock path, BN folded,
    and the saved .pt2 gives the default output (probabilities) within 1e-5."""
    from vov3d.apps.export import export_model, exportable
    from vov3d.runtime import kernels, prepare_for_inference, to_model_format

    _, _, model = trained
    cfg = load_config(None, ["MODEL.CPU_FUSED_UNITS", "on", "MODEL.FOLD_BN", True, "MODEL.DEPTHWISE_IMPL", "conv3d",
                             "MODEL.MEMORY_FORMAT", "channels_last_3d", "MODEL.INFERENCE_AMP", "off"])
    fast = prepare_for_inference(model, cfg)
    if kernels.load_library() is not None:
        with torch.no_grad():
            fast([to_model_format(torch.randn(1, 3, 4, 32, 32), cfg)])
        assert any("Fused" in type(m).__name__ for m in fast.modules())
    module = exportable(fast, torch.randn(1, 3, 4, 32, 32))
    names = {type(m).__name__ for m in module.modules()}
    assert "BatchNorm3d" not in names and not any("Fused" in n for n in names)
    result = export_model(fast, (2, 3, 4, 32, 32), str(tmp_path / "tiny.pt2"), "export")
    assert result["checked"] and result["max_abs_diff"] <= 1e-5
    program = torch.export.load(str(tmp_path / "tiny.pt2")).module()
    x = torch.randn(4, 3, 4, 32, 32)
    with torch.no_grad():
        assert torch.allclose(program(x), model([x]), atol=1e-5)
    with pytest.raises(ValueError, match=r"\.pt2"):
        export_model(model, (2, 3, 4, 32, 32), str(tmp_path / "tiny.bin"), "export")


@pytest.fixture(scope="module")
def ssv2_tiny(tmp_path_factory):
    """A generated SSv2 tree: 4 validation videos, one of them damaged."""
    from vov3d.datasets import synthetic

    data = synthetic.make_ssv2(str(tmp_path_factory.mktemp("ssv2")), videos_per_split={"train": 1, "val": 4, "test": 0},
                               width=40, height=32)
    bad = data.split("val")[1]
    synthetic.corrupt_file(bad.path, "garbage")
    return data, bad.video_id


def _extract_cfg(trained, data, *opts):
    cfg_path, _, _ = trained
    return load_config(cfg_path, data.cfg_opts() + ["TEST.DATASET", "ssv2", "TRAIN.DATASET", "ssv2",
                                                    "TEST.BATCH_SIZE", 1, "DATA_LOADER.NUM_WORKERS", 0, *opts])


def test_extract_features_resumes_and_lists_bad_videos(trained, ssv2_tiny, tmp_path, monkeypatch, one_thread):
    """Killed after two videos, a rerun extracts only the others; the file has every good video's
    per-view features and logits (equal to the model's on the test views) and lists the bad one."""
    from vov3d.apps import features
    from vov3d.datasets import build_dataset

    data, bad_id = ssv2_tiny
    _, ckpt, model = trained
    cfg = _extract_cfg(trained, data)
    real, calls = features.features_and_logits, []

    def crash_after_two(*args):
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(features, "features_and_logits", crash_after_two)
    with pytest.raises(KeyboardInterrupt):
        features.extract(cfg, ["val"], str(tmp_path), ckpt, save_every=1)
    done = features.load_partials(str(tmp_path), "val")  # saved: two forwards and the bad video (none)
    assert len(done) == 3 and "error" in done[bad_id] and not (tmp_path / "val.pt").exists()

    calls.clear()
    monkeypatch.setattr(features, "features_and_logits", lambda *a: calls.append(1) or real(*a))
    (out,) = features.extract(cfg, ["val"], str(tmp_path), ckpt, save_every=1)
    assert len(calls) == 1  # 4 videos: 3 done before (one of them bad, never run), 1 left
    result = torch.load(out, weights_only=True)
    good = [v.video_id for v in data.split("val") if v.video_id != bad_id]
    assert sorted(result["video_ids"]) == sorted(good)
    assert [b[0] for b in result["bad_videos"]] == [bad_id] and result["bad_videos"][0][2]
    assert result["features"].shape == (3, 6, 32) and result["logits"].shape == (3, 6, 5)
    assert not list((tmp_path / ".partial").iterdir())

    dataset = build_dataset("ssv2", cfg, "test")  # the multi-view test's views of one video
    i = dataset.video_ids.index(result["video_ids"][0])
    views = dataset[i][0][0]
    with torch.no_grad():
        logits = model.forward_head(model.forward_features(views))
    assert torch.allclose(result["logits"][0], logits, atol=1e-5)
    assert torch.allclose(result["logits"][0].softmax(-1), model([views]), atol=1e-5)


def test_extract_features_shares_videos_between_processes(trained, ssv2_tiny, tmp_path, monkeypatch, one_thread):
    """Two ranks (threads with a barrier), one of them resuming an earlier partial file: each
    extracts every other remaining video into its own partial file; rank 0 merges all into one file."""
    import threading
    import time

    from vov3d.apps import features
    from vov3d.apps.common import load_trained_model
    from vov3d.utils import distributed as du

    data, bad_id = ssv2_tiny
    _, ckpt, _ = trained
    cfg = _extract_cfg(trained, data)
    model, _ = load_trained_model(cfg, ckpt)
    real = features.features_and_logits
    first = data.split("val")[0].video_id
    with torch.no_grad():  # an earlier, interrupted run left the first video done
        features._save_partial(str(tmp_path / ".partial" / "val.0-earlier.pt"),
                               {first: {"label": 0, "features": torch.zeros(6, 32), "logits": torch.zeros(6, 5)}})
    local, barrier, runs, errors = threading.local(), threading.Barrier(2), {0: [], 1: []}, []
    monkeypatch.setattr(du, "get_world_size", lambda: 2)
    monkeypatch.setattr(du, "get_rank", lambda: local.rank)
    monkeypatch.setattr(du, "synchronize", lambda: barrier.wait(timeout=60))
    monkeypatch.setattr(features, "features_and_logits", lambda *a: runs[local.rank].append(1) or real(*a))

    def rank_main(rank):
        local.rank = rank
        if rank == 1:
            time.sleep(1.0)  # starts late: rank 0 must not have written a result it then reads as "done"
        try:
            features.extract_list(cfg, model, torch.device("cpu"), "val", str(tmp_path))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)
            barrier.abort()

    threads = [threading.Thread(target=rank_main, args=(r,)) for r in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(runs[0]) == len(runs[1]) == 1  # 4 videos: 1 done before, 1 bad (never run), 2 shared
    result = torch.load(tmp_path / "val.pt", weights_only=True)
    assert result["video_ids"] == [v.video_id for v in data.split("val") if v.video_id != bad_id]
    assert torch.equal(result["logits"][0], torch.zeros(6, 5))  # taken from the earlier run, not redone
    assert not list((tmp_path / ".partial").iterdir())


def test_extract_features_tool_writes_numpy_per_list(trained, ssv2_tiny, tmp_path, monkeypatch, one_thread):
    """The tool (in-process, one rank): an annotation file as the list, numpy output with the ids."""
    monkeypatch.setenv("VOV3D_NO_SIGNAL_HANDLERS", "1")  # launch_job would keep its stop handlers in this process
    import numpy as np
    from extract_features import main

    data, bad_id = ssv2_tiny
    cfg_path, ckpt, _ = trained
    ann = tmp_path / "mine.json"
    import json

    with open(data.files["val"]) as f:
        entries = json.load(f)
    ann.write_text(json.dumps(entries[:2]))
    out = tmp_path / "feats"
    opts = data.cfg_opts() + ["TEST.DATASET", "ssv2", "TRAIN.DATASET", "ssv2", "DATA_LOADER.NUM_WORKERS", 0]
    assert main(["--cfg", cfg_path, "--checkpoint", ckpt, "--list", str(ann), "--output", str(out),
                 "--format", "npz", *opts]) == 0
    result = np.load(out / "mine.npz")
    assert list(result["video_ids"]) + [b[0] for b in result["bad_videos"]] == [str(e["id"]) for e in entries[:2]]
    assert result["features"].shape[1:] == (6, 32)
    assert main(["--cfg", cfg_path, "--checkpoint", str(tmp_path / "none.pyth"), "--list", "val", "--output",
                 str(out), *opts]) == 2


def test_grad_cam_follows_the_evidence(one_thread):
    """Class k's logit is the mean of feature channel k, which sees input channel k: channel 1 lit in
    the top-left, channel 0 in the bottom-right. Each class's CAM lights its own corner, at the clip's size."""
    from vov3d.apps.cam import grad_cam
    from vov3d.models.base import VideoClassifier

    class TwoCorners(VideoClassifier):
        FEATURE_LAYER = "body"

        def __init__(self):
            super().__init__()
            self.body = torch.nn.Conv3d(3, 2, 1, bias=False)
            with torch.no_grad():
                self.body.weight.zero_()
                self.body.weight[0, 0] = 1.0
                self.body.weight[1, 1] = 1.0

        def forward_features(self, x):
            return self.body(x)

        def forward_head(self, f, pre_logits=False):
            return f.mean((2, 3, 4))

    clips = torch.zeros(1, 3, 4, 8, 8)
    clips[:, 1, :, :4, :4] = 1.0
    clips[:, 0, :, 4:, 4:] = 1.0
    for target, lit, dark in ((1, (slice(0, 3), slice(0, 3)), (slice(5, 8), slice(5, 8))),
                              (0, (slice(5, 8), slice(5, 8)), (slice(0, 3), slice(0, 3)))):
        model = TwoCorners()
        cams, logits = grad_cam(model, clips, target=target)
        assert cams.shape == (1, 4, 8, 8) and logits.shape == (1, 2) and model.body.weight.grad is None
        assert cams[0, :, lit[0], lit[1]].min() > 0.9 and cams[0, :, dark[0], dark[1]].max() < 0.1


def test_visualize_cam_writes_gif_and_strip(trained, ssv2_tiny, tmp_path, one_thread):
    """The tool on a video file and a split: GIF (animated, one frame per clip frame) and PNG per
    good video, TensorBoard images when enabled; the damaged video is skipped."""
    from PIL import Image
    from visualize_cam import main

    data, bad_id = ssv2_tiny
    cfg_path, ckpt, _ = trained
    video = data.split("val")[0]
    opts = data.cfg_opts() + ["TEST.DATASET", "ssv2", "TRAIN.DATASET", "ssv2", "TENSORBOARD.ENABLE", True,
                              "OUTPUT_DIR", str(tmp_path / "run")]
    assert main(["--cfg", cfg_path, "--checkpoint", ckpt, "--video", video.path, "--video", "val",
                 "--output", str(tmp_path / "cam"), "--layer", "s4", *map(str, opts)]) == 0
    gifs = sorted(p.name for p in (tmp_path / "cam").glob("*.gif"))
    assert f"{video.video_id}_cam.gif" in gifs and f"{bad_id}_cam.gif" not in gifs and len(gifs) == 3
    gif = Image.open(tmp_path / "cam" / f"{video.video_id}_cam.gif")
    assert gif.n_frames == 4 and min(gif.size) >= 112
    assert Image.open(tmp_path / "cam" / f"{video.video_id}_cam.png").size == (4 * gif.size[0], 2 * gif.size[1])
    assert list((tmp_path / "run").rglob("events.out.tfevents*"))
