"""The model API beyond the default output: features, logits, variants by name."""

import pytest
import torch

from conftest import REPO
from vov3d.config import load_config
import vov3d.models as vm
from vov3d.models.variants import KEYWORDS, VARIANTS, variant_cfg

# Tiny members of every family (built in milliseconds), for the shared API checks.
TINY = {
    "vov3d_m": {"VOV3D.INNER_CH": 8, "X3D.DIM_C5": 32},
    "x3d_xs": {"X3D.WIDTH_FACTOR": 1.0, "X3D.DEPTH_FACTOR": 1.0, "X3D.DIM_C5": 32},
    "s3d_g": {},
    "p3d_63": {"RESNET.WIDTH_PER_GROUP": 4},
    "r2plus1d_18": {"RESNET.WIDTH_PER_GROUP": 4},
    "ip_csn_50": {"RESNET.WIDTH_PER_GROUP": 4},
    "smallbig_50": {"RESNET.WIDTH_PER_GROUP": 4, "RESNET.DEPTH": 23},
}


@pytest.mark.parametrize("name", sorted(TINY))
def test_features_and_logits_agree_with_the_default_output(name, one_thread):
    """forward = head(forward_features); forward_head gives logits whose softmax is the eval output
    (one position here), pre_logits the vector the classifier reads; train output unchanged."""
    frames = 16 if name.startswith("p3d") else 4
    torch.manual_seed(0)
    model = vm.create(name, num_classes=5, num_frames=frames, crop_size=32, dropout_rate=0.0,
                      overrides=TINY[name]).eval()
    x = torch.randn(2, 3, frames, 32, 32)
    with torch.no_grad():
        probs = model([x])
        feats = model.forward_features(x)
        logits = model.forward_head(feats)
        vec = model.forward_head(feats, pre_logits=True)
    assert feats.dim() == 5 and feats.shape[0] == 2
    assert logits.shape == probs.shape == (2, 5)
    assert torch.allclose(logits.softmax(-1), probs, atol=1e-6)
    assert not torch.allclose(logits, probs)  # logits, not probabilities
    layer = dict(model.named_modules())[model.FEATURE_LAYER]
    seen = []
    layer.register_forward_hook(lambda m, i, o: seen.append(o[0] if isinstance(o, list) else o))
    with torch.no_grad():
        model([x])
    assert torch.equal(seen[0], feats)  # FEATURE_LAYER is where forward_features ends
    classifier = model.get_submodule(model.CLASSIFIER)
    assert torch.allclose(classifier(vec), logits, atol=1e-5)
    model.train()
    with torch.no_grad():
        assert torch.allclose(model.forward_head(model.forward_features([x])), model([x]), atol=1e-5)


def test_logits_average_over_positions():
    """A test crop larger than the training crop leaves positions: logits are averaged over them."""
    torch.manual_seed(0)
    model = vm.create("vov3d_m", num_classes=4, num_frames=4, crop_size=32, overrides=TINY["vov3d_m"]).eval()
    x = torch.randn(1, 3, 4, 64, 64)
    with torch.no_grad():
        per_position = model.head.forward_logits(model.forward_features(x))
        logits = model.forward_head(model.forward_features(x))
    assert per_position.shape[1:4] == (1, 2, 2)
    assert torch.allclose(logits, per_position.mean((1, 2, 3)), atol=1e-6)


def test_variants_mirror_their_configs():
    """Each table row equals the repository YAML it names, on every model and preprocessing key."""
    checked = 0
    for v in VARIANTS.values():
        if "/SlowFast " in v.config:  # X3D-XS / S: no repository YAML; the official values are in the row
            continue
        ref = load_config(str(REPO / "configs" / v.config), ["NUM_GPUS", 0])
        ours = variant_cfg(v.name)
        for sec in ("MODEL", "X3D", "VOV3D", "RESNET", "RESNET3D", "S3D", "P3D", "SMALLBIG"):
            assert ours[sec] == ref[sec], (v.name, sec)
        for key in ("NUM_FRAMES", "SAMPLING_RATE", "TRAIN_CROP_SIZE", "TEST_CROP_SIZE", "TRAIN_JITTER_SCALES",
                    "MEAN", "STD", "REVERSE_INPUT_CHANNEL"):
            assert ours.DATA[key] == ref.DATA[key], (v.name, key)
        assert ours.TEST.NUM_ENSEMBLE_VIEWS == ref.TEST.NUM_ENSEMBLE_VIEWS
        checked += 1
    assert checked >= 18


def test_names_keywords_and_preprocessing():
    assert {"vov3d_m", "vov3d_l", "x3d_xs", "x3d_s", "x3d_m", "x3d_l", "s3d_g", "ir_csn_152"} <= set(vm.list_models())
    assert vm.list_models("x3d") == ["x3d_l", "x3d_m", "x3d_s", "x3d_xs"]
    p = vm.get_preprocessing("x3d_xs")
    assert (p["num_frames"], p["sampling_rate"], p["train_crop_size"], p["test_crop_size"]) == (4, 12, 160, 182)
    assert p["channel_order"] == "RGB" and p["mean"] == [0.45] * 3 and (p["num_clips"], p["num_crops"]) == (10, 3)
    cfg = variant_cfg("vov3d_m", num_classes=174, overrides={"VOV3D.UNIT": "d1plus2d"})
    assert cfg.MODEL.NUM_CLASSES == 174 and cfg.VOV3D.UNIT == "d1plus2d" and set(KEYWORDS) >= {"num_classes"}
    with pytest.raises(KeyError, match="not a known variant; known: .*vov3d_m"):
        vm.create("vov3d_xl")
    with pytest.raises(TypeError, match="unknown keyword"):
        vm.create("vov3d_m", num_class=3)
