"""Model zoo beyond VoV3D / X3D: S3D(-G), P3D, SmallBigNet, R(2+1)D / R3D / MC3, CSN.

Checked against the reference implementations' measurements in reference/zoo-notes.md and the
state_dict listings in reference/zoo-keys/: exact parameter counts, conv+linear GMACs within 1%,
key names and shapes (after each model's documented conversion), torchvision weights giving the same
outputs, the clip-length errors, and a few training iterations plus the multi-view test through the
engine on tiny models.
"""

import math

import pytest
import torch
import torchvision

from conftest import REPO, require_reference
from vov3d.config.defaults import get_cfg
from vov3d.models import build_model
from vov3d.utils.model_stats import gflops, params_count

KINETICS = REPO / "configs" / "Kinetics"


def zoo_cfg(config=None, *opts):
    """Returns a CPU config from a configs/ file (or the defaults) plus KEY VALUE overrides."""
    cfg = get_cfg()
    if config:
        cfg.merge_from_file(str(REPO / "configs" / config))
    cfg.merge_from_list(["NUM_GPUS", "0", "MODEL.MEMORY_FORMAT", "contiguous", "DATA.INPUT_CHANNEL_NUM", "[3]"]
                        + [str(o) for o in opts])
    return cfg


def meta_model(config, *opts):
    """Returns the model of a config built on the meta device: shapes only, no init cost."""
    from vov3d.models.build import get_model_class

    cfg = zoo_cfg(config, *opts)
    with torch.device("meta"):
        return get_model_class(cfg.MODEL.MODEL_NAME)(cfg)


# (config, overrides, trainable parameters of the reference implementation: zoo-notes / zoo-keys headers)
PARAMS = [
    ("Kinetics/S3D_64x1.yaml", (), 8_320_048),  # torchvision s3d
    ("Kinetics/S3D_G_64x1.yaml", (), 8_320_048 + 1_219_328),  # + sum of C^2 over the gates (notes section 3)
    ("Kinetics/P3D_199_16x1.yaml", (), 66_492_240),
    ("Kinetics/P3D_63_16x1.yaml", (), 25_745_232),
    ("Kinetics/SmallBig_50_8x8.yaml", (), 24_370_640),
    ("Kinetics/SmallBig_50_extra_8x8.yaml", (), 32_292_816),
    ("Kinetics/SmallBig_101_8x8.yaml", (), 43_414_992),
    ("Kinetics/SmallBig_50_8x8.yaml", ("RESNET.DEPTH", 23), 11_368_400),
    ("Kinetics/SmallBig_50_8x8.yaml", ("SMALLBIG.BIG_VIEW", False), 24_327_632),  # the official C2D baseline
    ("Kinetics/R2plus1D_18_8x1.yaml", (), 33_370_839),  # VMZ pieces
    ("Kinetics/R2plus1D_18_16x1_torchvision.yaml", (), 31_505_325),
    ("Kinetics/R2plus1D_34_8x1.yaml", (), 63_697_175),
    ("Kinetics/R2plus1D_18_8x1.yaml", ("RESNET3D.ARCH", "r3d"), 33_371_472),
    ("Kinetics/R2plus1D_18_8x1.yaml", ("RESNET3D.ARCH", "mc3"), 11_695_440),
    ("Kinetics/irCSN_152_32x2.yaml", (), 29_703_568),
    ("Kinetics/ipCSN_152_32x2.yaml", (), 33_016_592),
    ("Kinetics/irCSN_101_32x2.yaml", (), 22_213_776),  # pytorchvideo csn_r101
    ("Kinetics/X3D_M_16x5.yaml", ("X3D.STRIDED_SHORTCUT_BN", False), 3_794_274),  # pytorchvideo x3d_m: 48 fewer
]


@pytest.mark.parametrize("config,opts,expected", PARAMS, ids=lambda v: v if isinstance(v, str) else None)
def test_param_counts_equal_references(config, opts, expected):
    assert params_count(meta_model(config, *opts)) == expected


# (config, overrides, T, crop, reference conv GMACs; a few big ones only: one trace each)
FLOPS = [
    ("Kinetics/S3D_64x1.yaml", (), 16, 224, 17.98),  # torchvision meta
    ("Kinetics/P3D_199_16x1.yaml", (), 16, 160, 18.40),
    ("Kinetics/SmallBig_50_8x8.yaml", (), 8, 224, 52.0),  # fvcore counts no max pooling
    ("Kinetics/R2plus1D_18_8x1.yaml", (), 8, 112, 20.75),
    ("Kinetics/R2plus1D_18_16x1_torchvision.yaml", (), 16, 112, 40.52),  # torchvision meta
]


@pytest.mark.parametrize("config,opts,frames,crop,expected", FLOPS, ids=lambda v: v if isinstance(v, str) else None)
def test_gflops_within_one_percent(config, opts, frames, crop, expected):
    cfg = zoo_cfg(config, *opts, "DATA.NUM_FRAMES", frames)
    model = build_model(cfg)
    assert gflops(model, [torch.zeros(1, 3, frames, crop, crop)]) == pytest.approx(expected, rel=0.01)


def _read_keys(name):
    """Returns {key: shape} of a zoo-keys listing."""
    path = require_reference(f"zoo-keys/{name}.txt")
    keys = {}
    for line in open(path):
        if line.startswith("#") or not line.strip():
            continue
        key, shape = line.rstrip("\n").split("\t")
        keys[key] = tuple(int(s) for s in shape.strip("()").split(",") if s.strip())
    return keys


# (listing, config, overrides): our state_dict equals the reference's after our convert_state_dict.
KEYS = [
    ("ptv_x3d_m", "Kinetics/X3D_M_16x5.yaml", ("X3D.STRIDED_SHORTCUT_BN", False)),
    ("tv_s3d", "Kinetics/S3D_64x1.yaml", ()),
    ("tv_r2plus1d_18", "Kinetics/R2plus1D_18_16x1_torchvision.yaml", ()),
    ("tv_r3d_18", "Kinetics/R2plus1D_18_8x1.yaml", ("RESNET3D.ARCH", "r3d")),
    ("tv_mc3_18", "Kinetics/R2plus1D_18_8x1.yaml", ("RESNET3D.ARCH", "mc3")),
    ("vmz_r2plus1d_18", "Kinetics/R2plus1D_18_8x1.yaml", ()),
    ("vmz_r2plus1d_34", "Kinetics/R2plus1D_34_8x1.yaml", ()),
    ("vmz_ir_csn_152", "Kinetics/irCSN_152_32x2.yaml", ()),
    ("vmz_ip_csn_152", "Kinetics/ipCSN_152_32x2.yaml", ()),
    ("p3d199_port", "Kinetics/P3D_199_16x1.yaml", ()),
    ("p3d63_port", "Kinetics/P3D_63_16x1.yaml", ()),
    ("smallbig50_no_extra_t8", "Kinetics/SmallBig_50_8x8.yaml", ()),
    ("smallbig50_extra_t8", "Kinetics/SmallBig_50_extra_8x8.yaml", ()),
    ("smallbig101_no_extra_t8", "Kinetics/SmallBig_101_8x8.yaml", ()),
    ("smallbig_res50_baseline_t8", "Kinetics/SmallBig_50_8x8.yaml", ("SMALLBIG.BIG_VIEW", False)),
]


@pytest.mark.parametrize("listing,config,opts", KEYS, ids=[k[0] for k in KEYS])
def test_state_dict_names_match_reference_after_conversion(listing, config, opts):
    ref = _read_keys(listing)
    model = meta_model(config, *opts)
    converted = model.convert_state_dict({k: torch.empty(s, device="meta") for k, s in ref.items()})
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    # Some listings leave out BN running stats: compare what they list.
    has_stats = any(k.endswith("running_mean") for k in ref)
    if not has_stats:
        ours = {k: s for k, s in ours.items() if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))}
    assert sorted(converted) == sorted(ours)
    assert {k: tuple(v.shape) for k, v in converted.items()} == ours


def test_conversion_is_only_the_documented_renames():
    """VMZ / torchvision ResNet-3D names are ours except the classifier; official SmallBig's except stem/fc."""
    for listing, config, renamed in (
        ("vmz_r2plus1d_18", "Kinetics/R2plus1D_18_8x1.yaml", ("fc.",)),
        ("smallbig50_no_extra_t8", "Kinetics/SmallBig_50_8x8.yaml", ("conv1.", "bn1.", "fc.")),
        ("p3d63_port", "Kinetics/P3D_63_16x1.yaml", ("conv1_custom.", "bn1.", "fc.")),
    ):
        ours = meta_model(config).state_dict()
        differ = {k for k in _read_keys(listing) if k not in ours}
        assert differ and all(k.startswith(renamed) for k in differ), (listing, sorted(differ)[:5])


def _randomize(model, seed=0):
    """Gives a model's BN statistics and affine parameters non-trivial values, so outputs are not uniform."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
            elif isinstance(m, torch.nn.Linear) or (isinstance(m, torch.nn.Conv3d) and m.out_channels == 400):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * 0.05)
    return model


# (torchvision builder, our config, overrides, input T, crop)
TORCHVISION = [
    ("s3d", "Kinetics/S3D_64x1.yaml", ("MODEL.DROPOUT_RATE", 0.2), 16, 128),
    ("r2plus1d_18", "Kinetics/R2plus1D_18_16x1_torchvision.yaml", (), 8, 64),
    ("r3d_18", "Kinetics/R2plus1D_18_8x1.yaml", ("RESNET3D.ARCH", "r3d"), 8, 64),
    ("mc3_18", "Kinetics/R2plus1D_18_8x1.yaml", ("RESNET3D.ARCH", "mc3"), 8, 64),
]


@pytest.mark.parametrize("builder,config,opts,frames,crop", TORCHVISION, ids=[t[0] for t in TORCHVISION])
def test_torchvision_state_dict_loads_and_gives_same_outputs(builder, config, opts, frames, crop):
    torch.manual_seed(0)
    tv = _randomize(getattr(torchvision.models.video, builder)(weights=None)).eval()
    if builder == "s3d":
        # Its fixed 2x7x7 pool needs 16x224 clips; at 16x128 (4x4 maps) use the clipped kernel ours uses.
        tv.avgpool = torch.nn.AvgPool3d((2, 4, 4), stride=1)
    model = build_model(zoo_cfg(config, *opts, "DATA.NUM_FRAMES", frames))
    # The checkpoint loader's path: model.convert_state_dict, then a strict load.
    model.load_state_dict(model.convert_state_dict(tv.state_dict()), strict=True)
    model.eval()
    x = torch.randn(2, 3, frames, crop, crop, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = tv(x).log_softmax(-1)
        ours = model([x])  # eval mode: probabilities
    assert ours.shape == (2, 400)
    assert torch.allclose(ours.sum(-1), torch.ones(2), atol=1e-5)
    assert ref.std() > 0.1  # a meaningful comparison, not two uniform distributions
    assert torch.allclose(ours.log(), ref, atol=1e-4, rtol=1e-4)


def test_checkpoint_loader_converts_torchvision_file(tmp_path):
    """A torchvision .pth file loads through load_checkpoint (conversion, then fine-tuning to 7 classes)."""
    from vov3d.utils import checkpoint as cu

    tv = torchvision.models.video.r2plus1d_18(weights=None)
    path = tmp_path / "tv.pth"
    torch.save(tv.state_dict(), path)
    model = build_model(zoo_cfg("Kinetics/R2plus1D_18_16x1_torchvision.yaml", "MODEL.NUM_CLASSES", 7))
    assert cu.load_checkpoint(str(path), model) == -1
    assert torch.equal(model.layer4[1].conv2[0][3].weight, tv.layer4[1].conv2[0][3].weight)
    assert torch.equal(model.stem[0].weight, tv.stem[0].weight) and model.head.fc.weight.shape == (7, 512)


def _tiny(config, *opts):
    return build_model(zoo_cfg(config, "RESNET.WIDTH_PER_GROUP", 8, *opts))


def test_smallbig_refuses_other_clip_lengths():
    model = _tiny("Kinetics/SmallBig_50_8x8.yaml", "RESNET.DEPTH", 23, "DATA.NUM_FRAMES", 4).eval()
    with torch.no_grad():
        assert model([torch.randn(1, 3, 4, 32, 32)]).shape == (1, 400)
        with pytest.raises(ValueError, match=r"built for 4-frame clips \(DATA.NUM_FRAMES\).*cannot take 8 frames"):
            model([torch.randn(1, 3, 8, 32, 32)])


def test_p3d_refuses_too_short_clips():
    model = _tiny("Kinetics/P3D_63_16x1.yaml").eval()
    with pytest.raises(ValueError, match="at least 16 frames"):
        model([torch.randn(1, 3, 8, 32, 32)])


def test_s3d_variant_keys():
    from vov3d.models.s3d import S3D

    """Top-/bottom-heavy: blocks outside [STARTAT, ENDAT] have no temporal conv; gating from GATING_STARTAT."""
    cfg = zoo_cfg("Kinetics/S3D_G_64x1.yaml", "S3D.TEMPORAL_CONV_STARTAT", "Mixed_4b",
                  "S3D.TEMPORAL_CONV_ENDAT", "Mixed_4f", "S3D.GATING_STARTAT", "Mixed_5b")
    with torch.device("meta"):
        model = S3D(cfg)
    assert len(model.Mixed_3c.branch1[1]) == 1 and len(model.Mixed_4b.branch1[1]) == 2
    assert len(model.Mixed_5b.branch1[1]) == 1
    assert not hasattr(model.Mixed_4f, "gates") and hasattr(model.Mixed_5b, "gates")
    assert not hasattr(model.Conv2d_2c_3x3, "gate")
    full = meta_model("Kinetics/S3D_64x1.yaml", "S3D.SEPARABLE", False)  # I3D-style 3x3x3
    assert full.Mixed_3b.branch1[1][0][0].kernel_size == (3, 3, 3)
    with pytest.raises(KeyError, match="not an endpoint"):
        meta_model("Kinetics/S3D_64x1.yaml", "S3D.GATING_STARTAT", "Mixed_6a")


def test_p3d_unit_cycle_runs_across_stages():
    model = _tiny("Kinetics/P3D_199_16x1.yaml")
    units = [b.unit for layer in (model.layer1, model.layer2, model.layer3) for b in layer]
    assert units[:6] == ["A", "B", "C", "A", "B", "C"] and len(units) == 47
    assert model.layer2[0].unit == "A" and model.layer2[1].unit == "B"  # res3a A, res3b1 B (notes)
    assert {b.unit for b in model.layer4} == {"2D"}


def test_eval_output_is_mean_of_probabilities_over_positions():
    """S3D's fixed 2x7x7 head pool leaves several positions at larger inputs: eval averages probabilities."""
    model = build_model(zoo_cfg("Kinetics/S3D_64x1.yaml", "MODEL.NUM_CLASSES", 5)).eval()
    with torch.no_grad():
        p = model([torch.randn(1, 3, 24, 96, 96)])  # Mixed_5c 3x3x3: 2 positions of the clipped 2x3x3 pool
    assert p.shape == (1, 5) and torch.allclose(p.sum(-1), torch.ones(1), atol=1e-5)


# Tiny versions of each family for the engine run: (name, overrides).
ENGINE_MODELS = [
    ("r2plus1d", ("MODEL.MODEL_NAME", "ResNet3D", "RESNET3D.ARCH", "r2plus1d", "RESNET.DEPTH", 18,
                  "RESNET.WIDTH_PER_GROUP", 8, "DATA.NUM_FRAMES", 4)),
    ("ip_csn", ("MODEL.MODEL_NAME", "ResNet3D", "RESNET3D.ARCH", "ip_csn", "RESNET.DEPTH", 50,
                "RESNET.WIDTH_PER_GROUP", 4, "RESNET3D.STEM_POOL", True, "DATA.NUM_FRAMES", 4)),
    ("p3d", ("MODEL.MODEL_NAME", "P3D", "P3D.DEPTH", 63, "RESNET.WIDTH_PER_GROUP", 4, "DATA.NUM_FRAMES", 16)),
    ("smallbig", ("MODEL.MODEL_NAME", "SmallBigNet", "RESNET.DEPTH", 23, "SMALLBIG.EXTRA", True,
                  "RESNET.WIDTH_PER_GROUP", 8, "DATA.NUM_FRAMES", 4)),
    ("s3d_g", ("MODEL.MODEL_NAME", "S3D", "S3D.GATING", True, "DATA.NUM_FRAMES", 4)),
]


@pytest.mark.parametrize("name,opts", ENGINE_MODELS, ids=[m[0] for m in ENGINE_MODELS])
def test_trains_and_runs_multiview_test_on_tiny_data(name, opts, tmp_path):
    """A few SGD iterations through vov3d.engine.train, then the multi-view test (2 clips x 3 crops)."""
    from test_engine_toys import toy_cfg
    from vov3d.engine import evaluate
    from vov3d.engine.train import train
    from vov3d.utils import logging as vlog

    out = tmp_path / name
    cfg = toy_cfg(out, "SOLVER.MAX_EPOCH", 1, "DATA.TRAIN_CROP_SIZE", 32, "DATA.TEST_CROP_SIZE", 32, *opts)
    train(cfg)
    losses = [s["loss"] for s in vlog.read_json_stats(str(out)) if s["_type"] == "train_iter"]
    assert len(losses) >= 2 and all(math.isfinite(float(v)) for v in losses)
    rep = evaluate.test(cfg)
    assert rep["num_videos"] > 0
    scores = torch.load(out / "test_scores.pt", weights_only=True)["scores"]
    assert scores.shape[1] == 6  # 2 clips x 3 crops per video
    assert torch.allclose(scores.sum(-1), torch.ones(scores.shape[:2]), atol=1e-4)  # probabilities
