"""VoV3D and X3D: equivalence with the official implementation, sizes, units, checkpoints."""

import glob
import logging
import os

import pytest
import torch

from conftest import REPO, require_reference
from vov3d.config import ConfigError, get_cfg, load_config
from vov3d.models import build_model
from vov3d.runtime.conv_routes import apply_conv_routes
from vov3d.models.units import MIDDLES
from vov3d.utils.checkpoint import load_checkpoint, save_checkpoint
from vov3d.utils.model_stats import gflops, params_count, stats_input

OFFICIAL_CONFIGS = "official-configs"


def official_cfg(name, opts=()):
    path = require_reference(f"{OFFICIAL_CONFIGS}/{name}")
    cfg = get_cfg()
    cfg.merge_from_file(str(path))
    cfg.merge_from_list(list(opts) + ["NUM_GPUS", 0])
    return cfg


def repo_cfg(rel, opts=()):
    cfg = get_cfg()
    cfg.merge_from_file(str(REPO / "configs" / rel))
    cfg.merge_from_list(list(opts) + ["NUM_GPUS", 0])
    return cfg


@pytest.fixture(scope="module")
def fixture_io():
    ckpt, io = require_reference("vov3d_m.pyth", "vov3d_m_io.pt")
    return ckpt, torch.load(io, weights_only=True)


def fixture_model(fixture_io, memory_format):
    ckpt, io = fixture_io
    cfg = official_cfg("SSv1_vov3d_vov3d_M_F16.yaml", io["meta"]["opts"] + ["MODEL.MEMORY_FORMAT", memory_format])
    model = build_model(cfg)
    assert load_checkpoint(str(ckpt), model, data_parallel=False) == 0
    if memory_format == "channels_last_3d":  # the runtime's routes (build_model gives the plain module)
        apply_conv_routes(model, torch.channels_last_3d, "conv2d")
    return model


@pytest.mark.parametrize("memory_format", ["contiguous", "channels_last_3d"])
def test_official_checkpoint_eval_outputs(fixture_io, memory_format):
    _, io = fixture_io
    model = fixture_model(fixture_io, memory_format).eval()
    fmt = {"contiguous": torch.contiguous_format, "channels_last_3d": torch.channels_last_3d}[memory_format]
    with torch.no_grad():
        for key_in, key_out in (("inputs", "outputs"), ("extra_inputs", "extra_outputs")):
            for x, expected in zip(io[key_in], io[key_out]):
                y = model([x.contiguous(memory_format=fmt)])
                assert y.shape == expected.shape
                assert (y - expected).abs().max().item() <= 1e-5


def test_official_checkpoint_eval_logits_keep_positions(fixture_io):
    """The head must softmax every position of the final map before averaging (3x2x2 for x3)."""
    _, io = fixture_io
    model = fixture_model(fixture_io, "contiguous").eval()
    captured = []
    model.head.projection.register_forward_hook(lambda m, i, o: captured.append(o))
    with torch.no_grad():
        for x, expected in zip(io["inputs"] + io["extra_inputs"], io["eval_logits"] + io["extra_eval_logits"]):
            captured.clear()
            model([x])
            assert captured[0].shape == expected.shape
            assert torch.allclose(captured[0], expected, atol=1e-4, rtol=1e-4)
    assert io["extra_eval_logits"][0].shape[1:4] == (3, 2, 2)


def test_official_checkpoint_train_logits(fixture_io):
    _, io = fixture_io
    model = fixture_model(fixture_io, "contiguous").train()
    model.head.dropout.p = 0.0
    with torch.no_grad():
        y = model([io["inputs"][0]])
    # Train mode normalises with the statistics of a 2-clip batch, which amplifies summation-order
    # differences between CPUs' kernels (6.9e-7 seen on an Intel AVX-512 machine, 1.5e-5 on an AMD
    # EPYC AVX2 one, on logits of magnitude ~1); a structural difference would be orders larger.
    assert (y - io["train_outputs"][0]).abs().max().item() <= 5e-5
    state = model.state_dict()
    for key, value in io["bn_stats_after_train_forward"].items():
        assert torch.allclose(state[key].float(), value.float(), atol=1e-5), key


def test_state_dict_matches_official_listing():
    listing = require_reference("vov3d_m_ssv1_f16_state_dict.txt")
    expected = []
    for line in listing.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        key, shape, _ = line.split("\t")
        expected.append((key, tuple(int(s) for s in shape.strip("()").split(",") if s.strip())))
    model = build_model(official_cfg("SSv1_vov3d_vov3d_M_F16.yaml"))
    ours = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    assert ours == expected


REFERENCE_SIZES = [
    # config, opts, params, GFLOPs, frames, crop
    ("SSv1/VoV3D_M_16x1.yaml", [], 3_204_286, 6.42, 16, 256),
    ("SSv1/VoV3D_M_32x1.yaml", [], 3_204_286, 12.84, 32, 256),
    ("SSv1/VoV3D_L_16x1.yaml", [], 5_834_094, 12.16, 16, 256),
    ("SSv1/VoV3D_L_32x1.yaml", [], 5_834_094, 24.31, 32, 256),
    ("Kinetics/VoV3D_M_16x5.yaml", [], 3_667_360, 6.43, 16, 256),
    ("Kinetics/VoV3D_L_16x5.yaml", [], 6_297_168, 12.16, 16, 256),
    ("SSv1/X3D_M_16x1.yaml", [], 3_331_248, None, 16, 256),
    ("SSv1/X3D_L_16x1.yaml", [], 5_690_358, None, 16, 256),
    ("Kinetics/X3D_M_16x5.yaml", [], 3_794_322, 6.19, 16, 256),
    ("Kinetics/X3D_L_16x5.yaml", [], 6_153_432, 11.97, 16, 256),
    ("Kinetics/X3D_L_16x5_x3dpaper.yaml", [], 6_153_432, 24.78, 16, 356),
]


@pytest.mark.parametrize("rel,opts,params,expected_gflops,frames,crop", REFERENCE_SIZES)
def test_params_and_gflops_match_reference(rel, opts, params, expected_gflops, frames, crop):
    cfg = repo_cfg(rel, opts)
    assert cfg.DATA.NUM_FRAMES == frames and cfg.DATA.TEST_CROP_SIZE == crop
    model = build_model(cfg)
    assert params_count(model) == params
    if expected_gflops is not None:
        measured = gflops(model, stats_input(cfg))
        assert abs(measured - expected_gflops) / expected_gflops < 0.01


def test_every_official_config_builds_the_official_keys():
    listing = require_reference("vov3d_m_ssv1_f16_state_dict.txt")
    m_keys = [line.split("\t")[0] for line in listing.read_text().splitlines() if line and not line.startswith("#")]
    files = sorted(glob.glob(str(require_reference(OFFICIAL_CONFIGS) / "*.yaml")))
    assert len(files) >= 8
    for path in files:
        cfg = load_config(path, ["NUM_GPUS", 0])
        model = build_model(cfg)
        if "vov3d_M" in path:
            assert list(model.state_dict()) == m_keys, path


def test_official_config_recipe_values():
    cfg = official_cfg("SSv1_vov3d_finetune_vov3d_L_F32_finetune.yaml")
    assert cfg.SOLVER.BASE_LR == 0.05 and cfg.SOLVER.LR_POLICY == "steps_with_relative_lrs"
    assert cfg.SOLVER.STEPS == [0, 35, 45] and cfg.BN.NORM_TYPE == "sync_batchnorm"
    assert cfg.DATA.REVERSE_INPUT_CHANNEL and not cfg.DATA.RANDOM_FLIP and cfg.DATA.NUM_FRAMES == 32
    assert cfg.VOV3D.DEPTH == 70 and cfg.VOV3D.INNER_CH == 48


def test_unknown_key_names_key_and_source(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("MODEL:\n  NUM_CLASES: 10\n")
    with pytest.raises(ConfigError, match=r"MODEL\.NUM_CLASES.*bad\.yaml.*MODEL\.NUM_CLASSES"):
        get_cfg().merge_from_file(str(bad))
    with pytest.raises(ConfigError, match=r"SOLVER\.BASE_RL.*command line"):
        get_cfg().merge_from_list(["SOLVER.BASE_RL", "0.1"])


def tiny_cfg(model_name="VoV3D", **overrides):
    cfg = get_cfg()
    cfg.merge_from_list([
        "NUM_GPUS", 0, "MODEL.MODEL_NAME", model_name, "MODEL.NUM_CLASSES", 5,
        "DATA.NUM_FRAMES", 4, "DATA.TRAIN_CROP_SIZE", 32, "DATA.TEST_CROP_SIZE", 32,
        "VOV3D.INNER_CH", 8, "X3D.WIDTH_FACTOR", 1.0, "X3D.BOTTLENECK_FACTOR", 2.25,
    ])
    for k, v in overrides.items():
        cfg.merge_from_list([k.replace("__", "."), v])
    return cfg


@pytest.mark.parametrize("unit", sorted(MIDDLES))
@pytest.mark.parametrize("model_name,key", [("VoV3D", "VOV3D__UNIT"), ("X3D", "X3D__UNIT")])
def test_units_are_a_config_value(model_name, key, unit):
    torch.manual_seed(0)
    model = build_model(tiny_cfg(model_name, **{key: unit}))
    x = torch.randn(2, 3, 4, 32, 32)
    logits = model([x])
    assert logits.shape == (2, 5)
    logits.sum().backward()
    model.eval()
    with torch.no_grad():
        probs = model([x])
    assert torch.allclose(probs.sum(1), torch.ones(2), atol=1e-5)


def test_d2plus1d_and_d1plus2d_differ_only_in_order():
    a = build_model(tiny_cfg(VOV3D__UNIT="d2plus1d"))
    b = build_model(tiny_cfg(VOV3D__UNIT="d1plus2d"))
    assert params_count(a) == params_count(b)
    shapes = {k: v.shape for k, v in a.state_dict().items()}
    assert any(shapes[k] != v.shape for k, v in b.state_dict().items())  # b1 / b2 swap axes


def test_x3d_with_d2plus1d_units_is_smaller_than_x3d():
    cfg_x3d = repo_cfg("Kinetics/X3D_M_16x5.yaml")
    cfg_d21 = repo_cfg("Kinetics/X3D_M_16x5.yaml", ["X3D.UNIT", "d2plus1d"])
    x3d, d21 = build_model(cfg_x3d), build_model(cfg_d21)
    # zoo-notes: 3.794 M -> 3.703 M when every 3x3x3 depthwise becomes D(2+1)D.
    assert params_count(x3d) == 3_794_322
    assert abs(params_count(d21) - 3.703e6) < 0.001e6


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    cfg = tiny_cfg()
    model = build_model(cfg)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(2, 3, 4, 32, 32)
    model([x]).sum().backward()
    optimizer.step()
    model.eval()
    with torch.no_grad():
        expected = model([x])
    path = save_checkpoint(str(tmp_path), model, optimizer, 3, cfg)
    assert os.path.basename(path) == "checkpoint_epoch_00004.pyth"
    ckpt = torch.load(path, weights_only=True)
    assert set(ckpt) >= {"model_state", "optimizer_state", "epoch", "cfg"}
    torch.manual_seed(1)
    other = build_model(cfg).eval()
    assert load_checkpoint(path, other, data_parallel=False) == 3
    with torch.no_grad():
        assert torch.equal(other([x]), expected)


def test_finetune_skips_only_the_classifier(tmp_path, caplog):
    src = build_model(tiny_cfg())
    path = save_checkpoint(str(tmp_path), src, None, 0, tiny_cfg())
    dst = build_model(tiny_cfg(MODEL__NUM_CLASSES=7))
    with caplog.at_level(logging.INFO):
        load_checkpoint(path, dst, data_parallel=False)
    assert "head.projection.weight" in caplog.text
    assert torch.equal(dst.s2.pathway0_res0.branch1.weight, src.s2.pathway0_res0.branch1.weight)


def test_bad_checkpoints_name_the_file_and_keys(tmp_path):
    model = build_model(tiny_cfg())
    junk = tmp_path / "junk.pyth"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="junk.pyth"):
        load_checkpoint(str(junk), model)
    with pytest.raises(FileNotFoundError, match="missing.pyth"):
        load_checkpoint(str(tmp_path / "missing.pyth"), model)
    wider = build_model(tiny_cfg(VOV3D__INNER_CH=16))
    path = save_checkpoint(str(tmp_path), wider, None, 0, tiny_cfg())
    with pytest.raises(ValueError, match=r"checkpoint_epoch_00001\.pyth.*s1\.pathway0_stem"):
        load_checkpoint(path, model)


def test_loading_never_runs_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    path = tmp_path / "evil.pyth"
    torch.save({"model_state": {}, "payload": Evil()}, path)
    with pytest.raises(ValueError, match="evil.pyth"):
        load_checkpoint(str(path), build_model(tiny_cfg()))
    assert not (tmp_path / "pwned").exists()


def test_no_cuda_call_on_cpu(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("CUDA touched with NUM_GPUS 0")

    monkeypatch.setattr(torch.cuda, "current_device", boom)
    monkeypatch.setattr(torch.cuda, "set_device", boom)
    model = build_model(tiny_cfg())
    assert next(model.parameters()).device.type == "cpu"
