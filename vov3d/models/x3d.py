"""X3D (Feichtenhofer, CVPR 2020) as PySlowFast builds it, with a pluggable bottleneck middle.

    s1    X3D stem, round_width(DIM_C1, WIDTH_FACTOR) channels
    s2-s5 bottlenecks; widths round_width(12*2^k, WIDTH_FACTOR), inner BOTTLENECK_FACTOR x width,
          ceil(DEPTH_FACTOR x (1, 2, 5, 3)) blocks, spatial stride 2 in block 0 of every stage
    head  X3D head, conv_5 to the last inner width, lin_5 to DIM_C5

XS/S/M/L are expansion-key settings (see configs/). `X3D.UNIT` swaps the depthwise 3x3x3 middle for
another (vov3d/models/units.py); `d2plus1d` gives the VoV3D paper's "X3D with D(2+1)D" row.

Where sources disagree: PySlowFast (whose names and checkpoints are ours) puts a BN on every
projection shortcut; PyTorchVideo's `create_x3d` puts none on a shortcut that strides but keeps the
width, which is res2's block 0 (24 -> 24 channels in X3D-S/M/L: 48 fewer parameters).
`X3D.STRIDED_SHORTCUT_BN False` builds PyTorchVideo's variant; `convert_state_dict` maps its names.
PyTorchVideo's X3D-XS, -S and -M are one network (only the clip differs), -L a deeper one.
"""

import re

import torch.nn as nn

from vov3d.models.base import VideoClassifier, clip_of
from vov3d.models.build import MODEL_REGISTRY
from vov3d.models.heads import X3DHead, pool_size_for
from vov3d.models.layers import SqueezeExcitation, Swish, init_weights, round_repeats, round_width
from vov3d.models.stages import ResStage
from vov3d.models.stems import VideoModelStem, X3DStem
from vov3d.models.units import attach_middle

# (blocks, width) of each stage before expansion.
BLOCK_BASIS = ((1, 12), (2, 24), (5, 48), (3, 96))


class X3DTransform(nn.Module):
    """X3D bottleneck: 1x1x1 -> BN -> ReLU -> middle -> BN -> [SE] -> Swish -> 1x1x1 -> BN (zero-init)."""

    def __init__(self, dim_in, dim_inner, dim_out, stride, unit="dw3d", use_se=True, se_ratio=1.0 / 16):
        super().__init__()
        self.a = nn.Conv3d(dim_in, dim_inner, 1, bias=False)
        self.a_bn = nn.BatchNorm3d(dim_inner)
        self.a_relu = nn.ReLU(inplace=True)
        self.middle = attach_middle(self, unit, dim_inner, stride)
        self.b_bn = nn.BatchNorm3d(dim_inner)
        if use_se:
            self.se = SqueezeExcitation(dim_inner, se_ratio)
        self.b_relu = Swish()
        self.c = nn.Conv3d(dim_inner, dim_out, 1, bias=False)
        self.c_bn = nn.BatchNorm3d(dim_out)
        self.c_bn.transform_final_bn = True

    def fusable_parts(self):
        """Returns this bottleneck's ops by role (see vov3d.models.vov3d.BottleneckUnit.fusable_parts);
        it has no residual or final activation of its own (the ResBlock adds them)."""
        return {"a": self.a, "a_bn": self.a_bn, "a_act": self.a_relu, "middle": list(self.middle),
                "mid_bn": self.b_bn, "se": getattr(self, "se", None), "act": self.b_relu,
                "c": self.c, "c_bn": self.c_bn, "residual": False, "out_act": None}

    def forward(self, x):
        x = self.a_relu(self.a_bn(self.a(x)))
        for name in self.middle:
            x = getattr(self, name)(x)
        x = self.b_bn(x)
        if hasattr(self, "se"):
            x = self.se(x)
        return self.c_bn(self.c(self.b_relu(x)))


@MODEL_REGISTRY.register()
class X3D(VideoClassifier):
    """X3D-XS/S/M/L from the X3D expansion keys; same input and output conventions as VoV3D."""

    CLASSIFIER = "head.projection"
    FEATURE_LAYER = "s5"

    def __init__(self, cfg):
        super().__init__()
        x = cfg.X3D
        if cfg.RESNET.TRANS_FUNC not in ("x3d_transform", "bottleneck_transform"):
            raise ValueError(f"RESNET.TRANS_FUNC {cfg.RESNET.TRANS_FUNC!r} is not supported by X3D")
        unit = x.UNIT
        if not x.CHANNELWISE_3x3x3 and unit == "dw3d":
            unit = "conv3d"
        dim_stem = round_width(x.DIM_C1, x.WIDTH_FACTOR)
        self.s1 = VideoModelStem(X3DStem(cfg.DATA.INPUT_CHANNEL_NUM[0], dim_stem))
        dim_in = dim_stem
        for s, (blocks, width) in enumerate(BLOCK_BASIS):
            if x.SCALE_RES2:
                width = round_width(width, 2.0)
            dim_out = round_width(width, x.WIDTH_FACTOR)
            dim_inner = int(x.BOTTLENECK_FACTOR * dim_out)

            def make_block(i, block_in, block_stride, dim_inner=dim_inner, dim_out=dim_out):
                return X3DTransform(block_in, dim_inner, dim_out, block_stride, unit, use_se=i % 2 == 0)

            stage = ResStage(dim_in, dim_out, round_repeats(blocks, x.DEPTH_FACTOR), 2, make_block,
                             strided_shortcut_bn=x.STRIDED_SHORTCUT_BN)
            self.add_module(f"s{s + 2}", stage)
            dim_in = dim_out
        self.head = X3DHead(
            dim_in=dim_in,
            dim_inner=dim_inner,
            dim_out=x.DIM_C5,
            num_classes=cfg.MODEL.NUM_CLASSES,
            pool_size=pool_size_for(cfg),
            dropout_rate=cfg.MODEL.DROPOUT_RATE,
            act_func=cfg.MODEL.HEAD_ACT,
            bn_lin5=x.BN_LIN5,
        )
        init_weights(self, cfg.MODEL.FC_INIT_STD, cfg.RESNET.ZERO_INIT_FINAL_BN)

    def forward_features(self, x):
        xs = [clip_of(x)]
        for stage in (self.s1, self.s2, self.s3, self.s4, self.s5):
            xs = stage(xs)
        return xs[0]

    def convert_state_dict(self, state):
        """Returns `state` with PyTorchVideo X3D names (`blocks.K...`) mapped to ours; ours pass unchanged."""
        if not any(k.startswith("blocks.") for k in state):
            return state
        out = {}
        for key, value in state.items():
            new = key
            for pattern, repl in _PYTORCHVIDEO_NAMES:
                new, n = pattern.subn(repl, new)
                if n:
                    break
            out[new] = value
        own_bn = "s2.pathway0_res0.branch1_bn.weight"
        if own_bn in self.state_dict() and own_bn not in out:
            raise ValueError("this is a PyTorchVideo X3D state_dict, whose res2 shortcut has no BN: build the "
                             "model with X3D.STRIDED_SHORTCUT_BN False")
        return out


# PyTorchVideo's create_x3d names -> ours. Its stem calls the spatial 1x3x3 conv `conv_t` and the
# temporal 5x1x1 one `conv_xy`; ours (PySlowFast's) the other way round. Its SE sits inside `norm_b`.
_PYTORCHVIDEO_NAMES = [(re.compile(p), r) for p, r in (
    (r"^blocks\.0\.conv\.conv_t\.", "s1.pathway0_stem.conv_xy."),
    (r"^blocks\.0\.conv\.conv_xy\.", "s1.pathway0_stem.conv."),
    (r"^blocks\.0\.norm\.", "s1.pathway0_stem.bn."),
    (r"^blocks\.5\.pool\.pre_conv\.", "head.conv_5."),
    (r"^blocks\.5\.pool\.pre_norm\.", "head.conv_5_bn."),
    (r"^blocks\.5\.pool\.post_conv\.", "head.lin_5."),
    (r"^blocks\.5\.pool\.post_norm\.", "head.lin_5_bn."),
    (r"^blocks\.5\.proj\.", "head.projection."),
)] + [(re.compile(r"^blocks\.([1-4])\.res_blocks\.(\d+)\." + p),
        lambda m, r=r: f"s{int(m.group(1)) + 1}.pathway0_res{m.group(2)}.{r}") for p, r in (
    (r"branch1_conv\.", "branch1."),
    (r"branch1_norm\.", "branch1_bn."),
    (r"branch2\.conv_a\.", "branch2.a."),
    (r"branch2\.norm_a\.", "branch2.a_bn."),
    (r"branch2\.conv_b\.", "branch2.b."),
    (r"branch2\.norm_b\.1\.block\.0\.", "branch2.se.fc1."),
    (r"branch2\.norm_b\.1\.block\.2\.", "branch2.se.fc2."),
    (r"branch2\.norm_b\.0\.", "branch2.b_bn."),
    (r"branch2\.norm_b\.", "branch2.b_bn."),
    (r"branch2\.conv_c\.", "branch2.c."),
    (r"branch2\.norm_c\.", "branch2.c_bn."),
)]
