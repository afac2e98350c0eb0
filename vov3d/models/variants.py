"""Named model variants, buildable without a YAML: ``create("vov3d_m", num_classes=174)``.

A variant is a table row: the config keys that define the architecture (over vov3d's defaults) and
the preprocessing its published weights expect (clip length, sampling, crops, normalisation, channel
order, test views). Every row names the repository config it mirrors (``config``); a test keeps the
two in step. Preprocessing follows each family's Kinetics-400 recipe, where its released weights come
from; the Something-Something rows of MODEL_ZOO.md differ only in data keys (use their YAMLs).

    import vov3d.models as vm
    vm.list_models()                    # ["ip_csn_101", ..., "x3d_xs"]
    model = vm.create("x3d_m", num_classes=174, num_frames=16)
    vm.get_preprocessing("x3d_m")       # {"num_frames": 16, "sampling_rate": 5, "test_crop_size": 256, ...}
"""

import dataclasses

from vov3d.models.build import build_model

# The Kinetics data recipe shared by every row (mean/std of PySlowFast's Kinetics configs; RGB frames).
_KINETICS = {"DATA.MEAN": [0.45, 0.45, 0.45], "DATA.STD": [0.225, 0.225, 0.225], "DATA.REVERSE_INPUT_CHANNEL": False,
             "TEST.NUM_ENSEMBLE_VIEWS": 10, "TEST.NUM_SPATIAL_CROPS": 3, "MODEL.NUM_CLASSES": 400}


def _data(frames, rate, train_crop, test_crop, jitter):
    return dict(_KINETICS, **{"DATA.NUM_FRAMES": frames, "DATA.SAMPLING_RATE": rate, "DATA.TRAIN_CROP_SIZE": train_crop,
                              "DATA.TEST_CROP_SIZE": test_crop, "DATA.TRAIN_JITTER_SCALES": list(jitter)})


@dataclasses.dataclass(frozen=True)
class Variant:
    """One named model: architecture keys, data keys (its preprocessing) and the config it mirrors."""

    name: str
    model: dict
    data: dict
    config: str  # the configs/ YAML (or, for X3D-XS/S, the official PySlowFast config) with these keys
    description: str = ""


_VOV3D = {"MODEL.ARCH": "vov3d", "MODEL.MODEL_NAME": "VoV3D", "RESNET.ZERO_INIT_FINAL_BN": True}
_X3D = {"MODEL.ARCH": "x3d", "MODEL.MODEL_NAME": "X3D", "RESNET.TRANS_FUNC": "x3d_transform",
        "RESNET.ZERO_INIT_FINAL_BN": True, "X3D.WIDTH_FACTOR": 2.0, "X3D.BOTTLENECK_FACTOR": 2.25}
_S3D = {"MODEL.ARCH": "s3d", "MODEL.MODEL_NAME": "S3D", "MODEL.DROPOUT_RATE": 0.2, "RESNET.ZERO_INIT_FINAL_BN": True}
_RESNET3D = {"MODEL.ARCH": "resnet3d", "MODEL.MODEL_NAME": "ResNet3D", "MODEL.DROPOUT_RATE": 0.0}
_CSN = dict(_RESNET3D, **{"RESNET3D.STEM_POOL": True})
_P3D = {"MODEL.ARCH": "p3d", "MODEL.MODEL_NAME": "P3D"}
_SMALLBIG = {"MODEL.ARCH": "smallbig", "MODEL.MODEL_NAME": "SmallBigNet", "MODEL.DROPOUT_RATE": 0.0}

_X3D_SMALL_DATA = (160, 182, (182, 228))  # X3D-XS / S: train crop, 3-crop test crop, jitter (official configs)

VARIANTS = {v.name: v for v in (
    Variant("vov3d_m", _VOV3D, _data(16, 5, 224, 256, (256, 320)), "Kinetics/VoV3D_M_16x5.yaml", "VoV3D-M (T-OSA, D(2+1)D)"),
    Variant("vov3d_l", dict(_VOV3D, **{"VOV3D.DEPTH": 70, "VOV3D.INNER_CH": 48}), _data(16, 5, 224, 256, (256, 320)),
            "Kinetics/VoV3D_L_16x5.yaml", "VoV3D-L"),
    Variant("x3d_xs", dict(_X3D, **{"X3D.DEPTH_FACTOR": 2.2}), _data(4, 12, *_X3D_SMALL_DATA),
            "facebookresearch/SlowFast configs/Kinetics/X3D_XS.yaml", "X3D-XS"),
    Variant("x3d_s", dict(_X3D, **{"X3D.DEPTH_FACTOR": 2.2}), _data(13, 6, *_X3D_SMALL_DATA),
            "facebookresearch/SlowFast configs/Kinetics/X3D_S.yaml", "X3D-S"),
    Variant("x3d_m", dict(_X3D, **{"X3D.DEPTH_FACTOR": 2.2}), _data(16, 5, 224, 256, (256, 320)),
            "Kinetics/X3D_M_16x5.yaml", "X3D-M"),
    Variant("x3d_l", dict(_X3D, **{"X3D.DEPTH_FACTOR": 5.0}), _data(16, 5, 312, 356, (356, 446)),
            "Kinetics/X3D_L_16x5_x3dpaper.yaml", "X3D-L at the X3D paper's 312 / 356 crops"),
    Variant("s3d", _S3D, _data(64, 1, 224, 224, (256, 320)), "Kinetics/S3D_64x1.yaml", "S3D"),
    Variant("s3d_g", dict(_S3D, **{"S3D.GATING": True}), _data(64, 1, 224, 224, (256, 320)),
            "Kinetics/S3D_G_64x1.yaml", "S3D-G (self-gating)"),
    Variant("p3d_63", dict(_P3D, **{"P3D.DEPTH": 63}), _data(16, 1, 160, 160, (182, 182)), "Kinetics/P3D_63_16x1.yaml",
            "P3D ResNet-63"),
    Variant("p3d_199", dict(_P3D, **{"P3D.DEPTH": 199}), _data(16, 1, 160, 160, (182, 182)),
            "Kinetics/P3D_199_16x1.yaml", "P3D ResNet-199"),
    Variant("r2plus1d_18", dict(_RESNET3D, **{"RESNET.DEPTH": 18}), _data(8, 1, 112, 112, (128, 160)),
            "Kinetics/R2plus1D_18_8x1.yaml", "R(2+1)D-18"),
    Variant("r2plus1d_34", dict(_RESNET3D, **{"RESNET.DEPTH": 34}), _data(32, 1, 112, 112, (128, 160)),
            "Kinetics/R2plus1D_34_32x1.yaml", "R(2+1)D-34"),
    *(Variant(f"{kind}_csn_{depth}", dict(_CSN, **{"RESNET.DEPTH": depth, "RESNET3D.ARCH": f"{kind}_csn"}),
              _data(32, 2, 224, 224, (256, 320)), f"Kinetics/{kind}CSN_{depth}_32x2.yaml", f"{kind}-CSN-{depth}")
      for kind in ("ir", "ip") for depth in (50, 101, 152)),
    Variant("smallbig_50", _SMALLBIG, _data(8, 8, 224, 256, (256, 320)), "Kinetics/SmallBig_50_8x8.yaml",
            "SmallBigNet-50"),
    Variant("smallbig_101", dict(_SMALLBIG, **{"RESNET.DEPTH": 101}), _data(8, 8, 224, 256, (256, 320)),
            "Kinetics/SmallBig_101_8x8.yaml", "SmallBigNet-101"),
)}

# create() keywords -> the config key each one sets.
KEYWORDS = {
    "num_classes": "MODEL.NUM_CLASSES",
    "num_frames": "DATA.NUM_FRAMES",  # X3D / VoV3D head pool, SmallBigNet's clip length
    "crop_size": "DATA.TRAIN_CROP_SIZE",  # X3D / VoV3D head pool
    "dropout_rate": "MODEL.DROPOUT_RATE",
    "head_act": "MODEL.HEAD_ACT",
}


def list_models(pattern=None):
    """Returns the sorted variant names (those containing `pattern` when given)."""
    return sorted(n for n in VARIANTS if pattern is None or pattern in n)


def get_variant(name):
    """Returns the Variant called `name`; KeyError listing the known names otherwise."""
    if name not in VARIANTS:
        raise KeyError(f"model {name!r} is not a known variant; known: {', '.join(list_models())}")
    return VARIANTS[name]


def variant_cfg(name, overrides=None, **keywords):
    """Returns the validated config that builds variant `name`: vov3d's defaults, the variant's model
    and data keys, then `keywords` (see KEYWORDS) and `overrides` ({"X3D.DIM_C5": 256, ...}); CPU."""
    from vov3d.config.load import load_config

    variant = get_variant(name)
    unknown = sorted(set(keywords) - set(KEYWORDS))
    if unknown:
        raise TypeError(f"create() got unknown keyword(s) {unknown}; known: {sorted(KEYWORDS)} (or overrides={{KEY: value}})")
    keys = {"NUM_GPUS": 0, **variant.model, **variant.data}
    keys.update({KEYWORDS[k]: v for k, v in keywords.items() if v is not None})
    keys.update(overrides or {})
    return load_config(overrides=keys)


def create(name, overrides=None, **keywords):
    """Returns the plain model of variant `name` (randomly initialised, on the CPU), e.g.
    ``create("vov3d_m", num_classes=174)``; keywords: num_classes, num_frames, crop_size,
    dropout_rate, head_act; `overrides` sets any other config key ({"VOV3D.UNIT": "d1plus2d"})."""
    return build_model(variant_cfg(name, overrides, **keywords))


def preprocessing_of(cfg, official_bgr=False):
    """Returns the input a model built from `cfg` expects: clip length, sampling, crops, mean/std,
    channel order and test views, as a dict. `official_bgr`: the dataset's official loader decoded
    BGR (Something-Something's JPEG frames), which DATA.REVERSE_INPUT_CHANNEL then flips to RGB."""
    d = cfg.DATA
    return {
        "num_frames": int(d.NUM_FRAMES),
        "sampling_rate": int(d.SAMPLING_RATE),
        "target_fps": float(d.TARGET_FPS),
        "train_crop_size": int(d.TRAIN_CROP_SIZE),
        "test_crop_size": int(d.TEST_CROP_SIZE),
        "train_jitter_scales": list(d.TRAIN_JITTER_SCALES),
        "mean": list(d.MEAN),
        "std": list(d.STD),
        # The rule of vov3d/datasets/transforms.py: BGR exactly when the official pipeline fed BGR.
        "channel_order": "BGR" if bool(d.REVERSE_INPUT_CHANNEL) != bool(official_bgr) else "RGB",
        "num_clips": int(cfg.TEST.NUM_ENSEMBLE_VIEWS),
        "num_crops": int(cfg.TEST.NUM_SPATIAL_CROPS),
        "input_range": "[0, 1] before normalisation (uint8 / 255)",
    }


def get_preprocessing(name):
    """Returns the preprocessing dict (see preprocessing_of) of variant `name`."""
    return preprocessing_of(variant_cfg(name))
