"""P3D ResNet (Qiu et al., "Pseudo-3D Residual Networks", ICCV 2017).

A ResNet bottleneck whose 3x3 is split into S (1x3x3) and T (3x1x1) convs, arranged as P3D-A
(T after S), P3D-B (S and T in parallel) or P3D-C (T after S, plus S's own output), cycled
A -> B -> C by global block index over res2-res4 (res2a A, res2b B, res2c C, res3a A, ...).
res5 is plain 2D. Layer table of the official Caffe deploy prototxt (ResNet-152 layout, P3D-199):

    stem   1x7x7 conv s(1,2,2) 64 -> BN -> ReLU -> max pool 2x3x3 s2          16x160^2 -> 8x40^2
    res2   3 P3D blocks 256/64                                                     8x40^2
    pool   temporal max pool 2x1x1 s2 before res3, res4 and res5
    res3   8 P3D blocks 512/128, spatial stride on the 1x1x1 reduce and shortcut  4x20^2
    res4   36 P3D blocks 1024/256                                                  2x10^2
    res5   3 2D blocks 2048/512 (1x1, 3x3, 1x1)                                     1x5^2
    head   global average pool -> dropout -> fc

Depths: 199 = ResNet-152 + 47 temporal convs (official); 63 = ResNet-50 + 13; 131 = ResNet-101 + 30.

Names follow the qijiezhao PyTorch port of the official model (`layerK.i.conv1..conv4`, S = conv2,
T = conv3, res5's `conv_normal`), whose Kinetics weights are the ones people load; its stem
(`conv1_custom`, `bn1`) and `fc` map to our `stem.0`, `stem.1`, `head.fc` in `convert_state_dict`,
and its 2D res5 weights gain a unit temporal dim (res5 runs as 1xkxk 3D convs here, the same
numbers as the port's reshape to 2D).

Where sources disagree (zoo-notes section 4 and 9): the port puts a ReLU on the T path of B and C
and none after the S+T sum; the official Caffe does the reverse. We follow the official Caffe:
    A: S -> BN -> ReLU -> T -> BN -> ReLU
    B: ReLU( ReLU(BN(S(x))) + BN(T(x)) )        (S and T both read the block's x)
    C: s = ReLU(BN(S(x)));  ReLU( s + BN(T(s)) )
Both give the same parameter count; port weights load but their outputs differ slightly.
The paper trains on 16x160^2 clips (README); its frame size 182x242 is unverified.
"""

import torch.nn as nn

from vov3d.models.base import VideoClassifier, clip_of
from vov3d.models.build import MODEL_REGISTRY
from vov3d.models.heads import PoolFCHead
from vov3d.models.layers import init_weights, rename_state_dict
from vov3d.models.stages import BlockSequence
from vov3d.models.stems import resnet_stem


class P3DBlock(nn.Module):
    """ReLU(shortcut + conv4(middle(conv1(x)))) with a P3D-A/B/C or 2D ("2D") middle."""

    expansion = 4

    def __init__(self, dim_in, planes, unit, stride=1):
        super().__init__()
        dim_out = planes * self.expansion
        self.unit = unit
        # The official model strides on the 1x1x1 reduce (Caffe ResNet), not on the 3x3.
        self.conv1 = nn.Conv3d(dim_in, planes, 1, stride=(1, stride, stride), bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        if unit == "2D":
            self.conv_normal = nn.Conv3d(planes, planes, (1, 3, 3), padding=(0, 1, 1), bias=False)
            self.bn_normal = nn.BatchNorm3d(planes)
        elif unit in ("A", "B", "C"):
            self.conv2 = nn.Conv3d(planes, planes, (1, 3, 3), padding=(0, 1, 1), bias=False)
            self.bn2 = nn.BatchNorm3d(planes)
            self.conv3 = nn.Conv3d(planes, planes, (3, 1, 1), padding=(1, 0, 0), bias=False)
            self.bn3 = nn.BatchNorm3d(planes)
        else:
            raise ValueError(f"P3D unit {unit!r}: choose A, B, C (or 2D for res5)")
        self.conv4 = nn.Conv3d(planes, dim_out, 1, bias=False)
        self.bn4 = nn.BatchNorm3d(dim_out)
        self.bn4.transform_final_bn = True
        if dim_in != dim_out or stride != 1:
            self.downsample = nn.Sequential(
                nn.Conv3d(dim_in, dim_out, 1, stride=(1, stride, stride), bias=False), nn.BatchNorm3d(dim_out)
            )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        h = self.relu(self.bn1(self.conv1(x)))
        if self.unit == "2D":
            h = self.relu(self.bn_normal(self.conv_normal(h)))
        else:
            s = self.relu(self.bn2(self.conv2(h)))
            if self.unit == "A":
                h = self.relu(self.bn3(self.conv3(s)))
            elif self.unit == "B":
                h = self.relu(s + self.bn3(self.conv3(h)))
            else:
                h = self.relu(s + self.bn3(self.conv3(s)))
        shortcut = self.downsample(x) if hasattr(self, "downsample") else x
        return self.relu(self.bn4(self.conv4(h)) + shortcut)


@MODEL_REGISTRY.register()
class P3D(VideoClassifier):
    """P3D ResNet-63/131/199 (P3D.DEPTH) with P3D.UNIT_CYCLE units; clips of at least 16 frames."""

    CLASSIFIER = "head.fc"
    FEATURE_LAYER = "layer4"
    MIN_FRAMES = 16  # four temporal halvings (pool1, before res3, res4, res5)

    def __init__(self, cfg):
        super().__init__()
        if cfg.P3D.DEPTH not in DEPTHS:
            raise KeyError(f"P3D.DEPTH {cfg.P3D.DEPTH} is unknown; choose one of {sorted(DEPTHS)}")
        cycle = cfg.P3D.UNIT_CYCLE
        if not cycle or set(cycle) - set("ABC"):
            raise ValueError(f"P3D.UNIT_CYCLE {cycle!r} must be a non-empty string of A, B and C")
        width = cfg.RESNET.WIDTH_PER_GROUP  # 64; smaller values give the tiny test models
        self.stem = resnet_stem(cfg.DATA.INPUT_CHANNEL_NUM[0], width, (1, 7, 7), pool=((2, 3, 3), 2, (0, 1, 1)))
        dim_in, index = width, 0
        for i, num_blocks in enumerate(DEPTHS[cfg.P3D.DEPTH]):
            if i > 0:
                # Caffe's "3a_pool" / "4a_pool" / "res5a_pool": halve T before the stage.
                self.add_module(f"pool{i + 2}", nn.MaxPool3d((2, 1, 1), stride=(2, 1, 1)))
            planes, blocks = width * 2**i, []
            for j in range(num_blocks):
                unit = "2D" if i == 3 else cycle[index % len(cycle)]
                index += unit != "2D"  # the cycle runs on across stage boundaries
                blocks.append(P3DBlock(dim_in, planes, unit, stride=2 if i > 0 and j == 0 else 1))
                dim_in = planes * P3DBlock.expansion
            self.add_module(f"layer{i + 1}", BlockSequence(*blocks))
        self.head = PoolFCHead(dim_in, cfg.MODEL.NUM_CLASSES, None, cfg.MODEL.DROPOUT_RATE, cfg.MODEL.HEAD_ACT)
        init_weights(self, cfg.MODEL.FC_INIT_STD, cfg.RESNET.ZERO_INIT_FINAL_BN)

    def forward_features(self, x):
        x = clip_of(x)
        if x.shape[2] < self.MIN_FRAMES:
            raise ValueError(
                f"P3D halves the clip length four times and needs at least {self.MIN_FRAMES} frames "
                f"(the official 16x160^2 input); got {x.shape[2]}"
            )
        x = self.layer1(self.stem(x))
        x = self.layer2(self.pool3(x))
        x = self.layer3(self.pool4(x))
        return self.layer4(self.pool5(x))

    @staticmethod
    def convert_state_dict(state):
        """Returns a qijiezhao-port P3D state_dict in our names (stem, head; 2D res5 -> 1xkxk)."""

        def reshape(key, value):
            return value.unsqueeze(2) if value.dim() == 4 else value

        return rename_state_dict(state, {"conv1_custom.": "stem.0.", "bn1.": "stem.1.", "fc.": "head.fc."}, reshape)


# P3D.DEPTH -> blocks per stage (ResNet-50 / -101 / -152 layouts).
DEPTHS = {63: (3, 4, 6, 3), 131: (3, 4, 23, 3), 199: (3, 8, 36, 3)}
