"""VoV3D (Lee et al., IEEE Access 2021): stages of Temporal One-Shot Aggregation blocks.

Built as the official implementation builds it (checkpoint compatible, same state_dict names):

    s1    X3D stem (1x3x3 conv, depthwise 5x1x1 conv, BN, ReLU), INNER_CH / 2 channels
    s2-s5 T-OSA blocks; block 0 of every stage (s2 included) has spatial stride 2
    head  X3D head, conv_5 to INNER_CH * 8, lin_5 to X3D.DIM_C5

T-OSA block (`branch2` of each residual block): a chain of NUM_CONV units, each reading the previous
one; the block input (only when the block stride is 1) and every unit output are concatenated and
aggregated by a 1x1x1 conv + BN (`c`, `c_bn`). The unit is a bottleneck whose middle comes from
`VOV3D.UNIT` (vov3d/models/units.py): D(2+1)D by default.

Where the paper's text and the official code differ, this follows the code:
- the two depthwise convs of D(2+1)D have no BN/activation between them (one BN after both);
- SE sits in units 0, 2, 4 of every block, with a ReLU hidden activation;
- units have their own residual + ReLU when shapes allow, on top of the block residual;
- only VOV3D.SPATIAL_STRIDES[0][0] is read, for all four stages; VOV3D.DIM_C5 / BN_LIN5 /
  TEMPORAL_DILATIONS have no effect (the head reads the X3D keys).
"""

import torch
import torch.nn as nn

from vov3d.models.base import VideoClassifier, clip_of
from vov3d.models.build import MODEL_REGISTRY
from vov3d.models.heads import X3DHead, pool_size_for
from vov3d.models.layers import SqueezeExcitation, Swish, init_weights
from vov3d.models.stages import ResStage
from vov3d.models.stems import VideoModelStem, X3DStem
from vov3d.models.units import attach_middle

# Blocks per stage for each VOV3D.DEPTH.
STAGE_DEPTHS = {31: (1, 2, 3, 2), 70: (1, 2, 5, 3)}


class BottleneckUnit(nn.Module):
    """One unit of the T-OSA chain: 1x1x1 -> BN -> ReLU -> middle -> BN -> [SE] -> Swish -> 1x1x1 -> BN.

    Adds its input and applies ReLU when the shapes allow (same width, stride 1). Official names:
    `a` = (conv, BN), middle `b`/`b1`/`b2`, `b_bn`, `se`, `c` = (conv, BN).
    """

    def __init__(self, dim_in, dim_inner, dim_out, stride, unit="d2plus1d", use_se=True):
        super().__init__()
        self.a = nn.Sequential(nn.Conv3d(dim_in, dim_inner, 1, bias=False), nn.BatchNorm3d(dim_inner))
        self.a_relu = nn.ReLU(inplace=True)
        self.middle = attach_middle(self, unit, dim_inner, stride)
        self.b_bn = nn.BatchNorm3d(dim_inner)
        if use_se:
            self.se = SqueezeExcitation(dim_inner)
        self.swish = Swish()
        self.c = nn.Sequential(nn.Conv3d(dim_inner, dim_out, 1, bias=False), nn.BatchNorm3d(dim_out))
        self.residual = dim_in == dim_out and stride == 1
        self.relu = nn.ReLU(inplace=True)

    def fusable_parts(self):
        """Returns this unit's ops by role, for runtimes that run the unit as one kernel: convs `a` /
        `c` with their BNs, `a_act`, the middle's names (`middle`), `mid_bn`, `se` (or None), `act`,
        whether the input is added after `c` (`residual`) and the activation that ends the unit
        (`out_act`, None when there is none)."""
        return {"a": self.a[0], "a_bn": self.a[1], "a_act": self.a_relu, "middle": list(self.middle),
                "mid_bn": self.b_bn, "se": getattr(self, "se", None), "act": self.swish,
                "c": self.c[0], "c_bn": self.c[1], "residual": self.residual, "out_act": self.relu}

    # A runtime may run a_relu and the middle convs as one op (vov3d/runtime/conv_routes.py:
    # set_middle_routes): a callable of a's output set on the instance; None runs them one by one.
    middle_route = None

    def forward(self, x):
        y = self.a(x)
        if self.middle_route is not None:
            y = self.middle_route(y)
        else:
            y = self.a_relu(y)
            for name in self.middle:
                y = getattr(self, name)(y)
        y = self.b_bn(y)
        if hasattr(self, "se"):
            y = self.se(y)
        y = self.c(self.swish(y))
        if self.residual:
            y = y + x
        return self.relu(y)


class TOSATransform(nn.Module):
    """Temporal One-Shot Aggregation: a chain of units, all outputs concatenated once, 1x1x1 + BN.

    `make_unit(i, dim_in, stride)` builds unit i; the block input joins the concatenation only
    when the block keeps its resolution (stride 1), as in the official code.
    """

    def __init__(self, dim_in, dim_out, unit_out, stride, num_units, make_unit):
        super().__init__()
        self.layers = nn.ModuleList()
        unit_in = dim_in
        for i in range(num_units):
            self.layers.append(make_unit(i, unit_in, stride if i == 0 else 1))
            unit_in = unit_out
        self.keep_input = stride == 1
        concat = num_units * unit_out + (dim_in if self.keep_input else 0)
        self.c = nn.Conv3d(concat, dim_out, 1, bias=False)
        self.c_bn = nn.BatchNorm3d(dim_out)
        self.c_bn.transform_final_bn = True

    def aggregation_parts(self):
        """Returns the block by role, for runtimes that write every unit straight into the
        concatenation: its `units` (in chain order), `keep_input`, and the aggregation `conv` / `bn`."""
        return {"units": self.layers, "keep_input": self.keep_input, "conv": self.c, "bn": self.c_bn}

    def forward(self, x):
        outputs = [x] if self.keep_input else []
        for layer in self.layers:
            x = layer(x)
            outputs.append(x)
        return self.c_bn(self.c(torch.cat(outputs, dim=1)))


@MODEL_REGISTRY.register()
class VoV3D(VideoClassifier):
    """VoV3D-M (VOV3D.DEPTH 31, INNER_CH 40) and VoV3D-L (DEPTH 70, INNER_CH 48).

    Takes a list holding one clip N x C x T x H x W; returns logits in train mode and class
    probabilities (softmax averaged over positions) in eval mode, as PySlowFast models do.
    """

    CLASSIFIER = "head.projection"
    FEATURE_LAYER = "s5"

    def __init__(self, cfg):
        super().__init__()
        v = cfg.VOV3D
        if v.DEPTH not in STAGE_DEPTHS:
            raise ValueError(f"VOV3D.DEPTH must be one of {sorted(STAGE_DEPTHS)}, got {v.DEPTH}")
        if v.TRANS_FUNC != "t_osa_2plus1_transform":
            raise ValueError(f"VOV3D.TRANS_FUNC {v.TRANS_FUNC!r} is not supported (t_osa_2plus1_transform)")
        stride = v.SPATIAL_STRIDES[0][0]
        dim_stem = v.INNER_CH // 2
        self.s1 = VideoModelStem(X3DStem(cfg.DATA.INPUT_CHANNEL_NUM[0], dim_stem))
        dim_in = dim_stem
        for s, num_blocks in enumerate(STAGE_DEPTHS[v.DEPTH]):
            dim_out = int(v.INNER_CH * v.OUT_MULTIPLIER[s])
            dim_inner = int(v.INNER_CH * v.INNER_MULTIPLIER[s])
            stage = ResStage(dim_in, dim_out, num_blocks, stride, self._tosa_builder(cfg, dim_out, dim_inner))
            self.add_module(f"s{s + 2}", stage)
            dim_in = dim_out
        self.head = X3DHead(
            dim_in=dim_in,
            dim_inner=dim_inner,
            dim_out=cfg.X3D.DIM_C5,
            num_classes=cfg.MODEL.NUM_CLASSES,
            pool_size=pool_size_for(cfg),
            dropout_rate=cfg.MODEL.DROPOUT_RATE,
            act_func=cfg.MODEL.HEAD_ACT,
            bn_lin5=cfg.X3D.BN_LIN5,
        )
        init_weights(self, cfg.MODEL.FC_INIT_STD, cfg.RESNET.ZERO_INIT_FINAL_BN)

    @staticmethod
    def _tosa_builder(cfg, dim_out, dim_inner):
        unit_out = dim_inner // 2

        def make_unit(i, unit_in, stride):
            return BottleneckUnit(unit_in, dim_inner, unit_out, stride, cfg.VOV3D.UNIT, use_se=i % 2 == 0)

        def make_block(_, block_in, stride):
            return TOSATransform(block_in, dim_out, unit_out, stride, cfg.VOV3D.NUM_CONV, make_unit)

        return make_block

    def forward_features(self, x):
        xs = [clip_of(x)]
        for stage in (self.s1, self.s2, self.s3, self.s4, self.s5):
            xs = stage(xs)
        return xs[0]
