"""Applications on a trained model: export (ONNX, torch.export), feature extraction, Grad-CAM."""

import pytest
import torch

from conftest import randomize_bn
from vov3d.config import load_config
from vov3d.models import build_model
from vov3d.utils.checkpoint import save_checkpoint

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
    from tools.export_net import main
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
