"""S3D and S3D-G (Xie et al., "Rethinking Spatiotemporal Feature Learning", ECCV 2018).

An Inception-v1 (BN-Inception layout) backbone whose 3x3 convs become separable 3D convs
(1xkxk spatial -> kx1x1 temporal). Endpoints carry TF-slim's names (research/slim/nets/s3dg.py):

    Conv2d_1a_7x7    7x7 stride 2 (all dims), 64      MaxPool_2a_3x3  1x3x3 s(1,2,2)
    Conv2d_2b_1x1    64                               Conv2d_2c_3x3   separable 3x3x3, 192 [gate]
    MaxPool_3a_3x3   1x3x3 s(1,2,2)                   Mixed_3b, 3c    Inception (table below)
    MaxPool_4a_3x3   3x3x3 s2                         Mixed_4b..4f
    MaxPool_5a_2x2   2x2x2 s2                         Mixed_5b, 5c    -> 1024 ch
    head             avg pool 2x7x7 stride 1 (clipped to the map) -> dropout -> fc -> mean

Inception block: branch0 1x1x1; branch1, branch2 1x1x1 -> separable 3x3x3; branch3 max pool
3x3x3 stride 1 -> 1x1x1; concatenated. S3D-G gates (`S3D.GATING`) every branch output and
Conv2d_2c: x * sigmoid(W mean_thw(x)), W in R^{CxC}.

The paper's variants are keys over the endpoint order: blocks before `TEMPORAL_CONV_STARTAT` or
after `TEMPORAL_CONV_ENDAT` have no temporal conv (top-heavy: start late; bottom-heavy: end early),
gating starts at `GATING_STARTAT`, and `SEPARABLE False` makes every 3x3 a full 3x3x3 (I3D). The
max pools stay 3D throughout, as in TF-slim.

Where sources disagree (zoo-notes section 3 and 9), the defaults follow torchvision's `s3d`, the
runnable reference, so its state_dict loads (`convert_state_dict`) with equal outputs:
- Conv2d_1a: torchvision separable 1x7x7 + 7x1x1; TF-slim a full kx7x7, k = 3 by default (its
  docstring: 7 was the paper's and 3 works better). Keys FIRST_CONV / FIRST_TEMPORAL_KERNEL.
- The temporal conv: torchvision BN + ReLU; TF-slim bias + ReLU, no BN (`TEMPORAL_BN False`).
- TF-slim's BN has no gamma; ours (and torchvision's) do. BN eps 1e-3, momentum 1e-3 (TF decay 0.999).
- Gating: the paper has a bias, TF-slim none. We follow TF-slim (no bias), which also gives the
  notes' +1,219,328 parameters.
- Dropout: TF-slim keep 0.8, torchvision p 0.2 (MODEL.DROPOUT_RATE).
"""

import torch
import torch.nn as nn

from vov3d.models.base import VideoClassifier, clip_of
from vov3d.models.build import MODEL_REGISTRY
from vov3d.models.heads import PoolFCHead
from vov3d.models.layers import init_weights, rename_state_dict

BN_EPS, BN_MOMENTUM = 1e-3, 1e-3  # TF-slim's decay 0.999, as torchvision's s3d


def conv_bn_relu(dim_in, dim_out, kernel, stride=1, bn=True):
    """Returns nn.Sequential(conv, BN, ReLU), or (conv with bias, ReLU) when `bn` is False."""
    kernel = (kernel,) * 3 if isinstance(kernel, int) else tuple(kernel)
    stride = (stride,) * 3 if isinstance(stride, int) else tuple(stride)
    conv = nn.Conv3d(dim_in, dim_out, kernel, stride=stride, padding=tuple(k // 2 for k in kernel), bias=not bn)
    if bn:
        return nn.Sequential(conv, nn.BatchNorm3d(dim_out, eps=BN_EPS, momentum=BN_MOMENTUM), nn.ReLU(inplace=True))
    return nn.Sequential(conv, nn.ReLU(inplace=True))


def sep_conv(dim_in, dim_out, kernel, stride, temporal_kernel, separable=True, temporal_bn=True):
    """Returns a kxkxk conv as nn.Sequential: [1xkxk, tx1x1] (S3D), [1xkxk] (2D) or [txkxk] (I3D).

    `temporal_kernel` 0 means no temporal conv (a 2D block of the top-/bottom-heavy variants).
    The spatial part carries the spatial stride, the temporal part the temporal one.
    """
    if temporal_kernel == 0:
        return nn.Sequential(conv_bn_relu(dim_in, dim_out, (1, kernel, kernel), (1, stride, stride)))
    if not separable:
        return nn.Sequential(conv_bn_relu(dim_in, dim_out, (temporal_kernel, kernel, kernel), stride))
    return nn.Sequential(
        conv_bn_relu(dim_in, dim_out, (1, kernel, kernel), (1, stride, stride)),
        conv_bn_relu(dim_out, dim_out, (temporal_kernel, 1, 1), (stride, 1, 1), bn=temporal_bn),
    )


class SelfGating(nn.Module):
    """S3D-G feature gating: x * sigmoid(fc(mean over T, H, W of x)), fc C -> C without bias (TF-slim)."""

    def __init__(self, dim):
        super().__init__()
        self.fc = nn.Linear(dim, dim, bias=False)

    def forward(self, x):
        weights = torch.sigmoid(self.fc(x.mean((2, 3, 4))))
        return x * weights[:, :, None, None, None]


class GatedSepConv(nn.Sequential):
    """Conv2d_2c_3x3: a separable conv whose output is gated (S3D-G); indices stay torchvision's."""

    def __init__(self, dim_in, dim_out, temporal_kernel, separable, temporal_bn, gating):
        super().__init__(*sep_conv(dim_in, dim_out, 3, 1, temporal_kernel, separable, temporal_bn))
        if gating:
            # Registered last, so nn.Sequential runs it after the convs (key `gate.fc.weight`).
            self.gate = SelfGating(dim_out)


class InceptionBlock(nn.Module):
    """Inception-v1 block with separable 3x3x3s and, in S3D-G, a gate on each branch output."""

    def __init__(self, dim_in, b0, b1a, b1b, b2a, b2b, b3, temporal_kernel=3, separable=True,
                 temporal_bn=True, gating=False):
        super().__init__()
        self.branch0 = conv_bn_relu(dim_in, b0, 1)
        self.branch1 = nn.Sequential(
            conv_bn_relu(dim_in, b1a, 1), sep_conv(b1a, b1b, 3, 1, temporal_kernel, separable, temporal_bn)
        )
        self.branch2 = nn.Sequential(
            conv_bn_relu(dim_in, b2a, 1), sep_conv(b2a, b2b, 3, 1, temporal_kernel, separable, temporal_bn)
        )
        # The pool stays 3x3x3 in 2D blocks too (TF-slim).
        self.branch3 = nn.Sequential(nn.MaxPool3d(3, stride=1, padding=1), conv_bn_relu(dim_in, b3, 1))
        if gating:
            self.gates = nn.ModuleList(SelfGating(d) for d in (b0, b1b, b2b, b3))
        self.dim_out = b0 + b1b + b2b + b3

    def forward(self, x):
        outs = [self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)]
        if hasattr(self, "gates"):
            outs = [gate(o) for gate, o in zip(self.gates, outs)]
        return torch.cat(outs, 1)


@MODEL_REGISTRY.register()
class S3D(VideoClassifier):
    """S3D / S3D-G and their top-/bottom-heavy variants from the S3D keys (see the module docstring)."""

    CLASSIFIER = "head.fc"
    FEATURE_LAYER = "Mixed_5c"

    def __init__(self, cfg):
        super().__init__()
        c = cfg.S3D
        for key in ("GATING_STARTAT", "TEMPORAL_CONV_STARTAT", "TEMPORAL_CONV_ENDAT"):
            if getattr(c, key) not in ENDPOINTS:
                raise KeyError(f"S3D.{key} {getattr(c, key)!r} is not an endpoint; choose one of {ENDPOINTS}")
        if c.FIRST_CONV not in ("separable", "full"):
            raise ValueError(f"S3D.FIRST_CONV {c.FIRST_CONV!r}: choose separable or full")
        order = {name: i for i, name in enumerate(ENDPOINTS)}
        t_start, t_end = order[c.TEMPORAL_CONV_STARTAT], order[c.TEMPORAL_CONV_ENDAT]
        g_start = order[c.GATING_STARTAT]

        def temporal(name):
            return 3 if t_start <= order[name] <= t_end else 0

        def gated(name):
            return c.GATING and order[name] >= g_start

        # The stem conv is always spatiotemporal (TF-slim), whatever the variant.
        self.Conv2d_1a_7x7 = sep_conv(
            cfg.DATA.INPUT_CHANNEL_NUM[0], 64, 7, 2, c.FIRST_TEMPORAL_KERNEL,
            c.SEPARABLE and c.FIRST_CONV == "separable", c.TEMPORAL_BN,
        )
        self.MaxPool_2a_3x3 = nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        self.Conv2d_2b_1x1 = conv_bn_relu(64, 64, 1)
        self.Conv2d_2c_3x3 = GatedSepConv(
            64, 192, temporal("Conv2d_2c_3x3"), c.SEPARABLE, c.TEMPORAL_BN, gated("Conv2d_2c_3x3")
        )
        self.MaxPool_3a_3x3 = nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        dim = 192
        for name, *widths in INCEPTION:
            if name == "Mixed_4b":
                self.MaxPool_4a_3x3 = nn.MaxPool3d(3, stride=2, padding=1)
            elif name == "Mixed_5b":
                # ceil: TF's SAME padding; the same as torchvision's floor on even sizes, and it
                # keeps a 1-frame map (short clips) alive.
                self.MaxPool_5a_2x2 = nn.MaxPool3d(2, stride=2, ceil_mode=True)
            block = InceptionBlock(dim, *widths, temporal(name), c.SEPARABLE, c.TEMPORAL_BN, gated(name))
            self.add_module(name, block)
            dim = block.dim_out
        self.head = PoolFCHead(dim, cfg.MODEL.NUM_CLASSES, (2, 7, 7), cfg.MODEL.DROPOUT_RATE, cfg.MODEL.HEAD_ACT)
        init_weights(self, cfg.MODEL.FC_INIT_STD, zero_init_final_bn=False)

    def forward_features(self, x):
        x = clip_of(x)
        for name in ("Conv2d_1a_7x7", "MaxPool_2a_3x3", "Conv2d_2b_1x1", "Conv2d_2c_3x3", "MaxPool_3a_3x3",
                     "Mixed_3b", "Mixed_3c", "MaxPool_4a_3x3", "Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e",
                     "Mixed_4f", "MaxPool_5a_2x2", "Mixed_5b", "Mixed_5c"):
            x = getattr(self, name)(x)
        return x

    @staticmethod
    def convert_state_dict(state):
        """Returns a torchvision `s3d` state_dict in our names (its `features.i` -> endpoints).

        torchvision's classifier is a 1x1x1 conv; ours a Linear on the same numbers, so its weight
        loses the three unit dims. Inside each endpoint the names are the same.
        """
        table = {f"features.{i}.": f"{name}." for i, name in TORCHVISION_FEATURES.items()}
        table["classifier.1."] = "head.fc."

        def reshape(key, value):
            return value.flatten(1) if key == "head.fc.weight" and value.dim() == 5 else value

        return rename_state_dict(state, table, reshape)


# Endpoints in forward order (the order TEMPORAL_CONV_STARTAT / ENDAT and GATING_STARTAT compare in).
ENDPOINTS = (
    "Conv2d_2c_3x3", "Mixed_3b", "Mixed_3c", "Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f",
    "Mixed_5b", "Mixed_5c",
)

# Inception-v1 widths: name, b0, b1a -> b1b, b2a -> b2b, b3 (paper / TF-slim / torchvision agree).
INCEPTION = (
    ("Mixed_3b", 64, 96, 128, 16, 32, 32),
    ("Mixed_3c", 128, 128, 192, 32, 96, 64),
    ("Mixed_4b", 192, 96, 208, 16, 48, 64),
    ("Mixed_4c", 160, 112, 224, 24, 64, 64),
    ("Mixed_4d", 128, 128, 256, 24, 64, 64),
    ("Mixed_4e", 112, 144, 288, 32, 64, 64),
    ("Mixed_4f", 256, 160, 320, 32, 128, 128),
    ("Mixed_5b", 256, 160, 320, 32, 128, 128),
    ("Mixed_5c", 384, 192, 384, 48, 128, 128),
)

# Index in torchvision's `features` Sequential -> our endpoint (pools have no parameters).
TORCHVISION_FEATURES = {
    0: "Conv2d_1a_7x7", 2: "Conv2d_2b_1x1", 3: "Conv2d_2c_3x3", 5: "Mixed_3b", 6: "Mixed_3c",
    8: "Mixed_4b", 9: "Mixed_4c", 10: "Mixed_4d", 11: "Mixed_4e", 12: "Mixed_4f", 14: "Mixed_5b", 15: "Mixed_5c",
}
