"""ResNet-3D family: R(2+1)D (Tran et al., CVPR 2018), R3D / MC3, and CSN ir/ip (Tran et al., ICCV 2019).

One network, two tables: the depth picks the block (basic or bottleneck) and the blocks per stage;
the variant picks the stem and the conv of each stage (vov3d/models/units.py `resnet3d_conv`).

    stem   r2plus1d: 1x7x7 (45) -> 3x1x1 (64);  conv3d: 3x7x7 (64) [+ max pool 1x3x3 s(1,2,2)]
    layer1 64 (basic) / 256 over 64 (bottleneck), stride 1
    layer2-4 widths x2 each; block 0 strides 2 in the conv (and its shortcut): (2,2,2) for
           r2plus1d / conv3d / ir / ip, (1,2,2) for conv2d (MC3's upper stages)
    head   global average pool -> [dropout] -> fc

State_dict names are VMZ's and torchvision's (`stem.N`, `layerK.i.convJ...`, `downsample`), except
the classifier, which is `head.fc` here: `convert_state_dict` maps `fc.*`, so VMZ and torchvision
checkpoints load as they are.

Where sources disagree (zoo-notes section 9):
- R(2+1)D mid width M_i: the paper and VMZ compute it per conv from that conv's in/out widths
  (default here, 33.37 M params for R18). torchvision computes one M per block from (inplanes,
  planes) and reuses it for both convs (31.51 M); `RESNET3D.SHARED_MID_WIDTH True` builds that.
- VMZ sets BN momentum 0.9 in PyTorch terms (a Caffe2 value carried over); we keep PyTorch's 0.1.
- pytorchvideo's R(2+1)D (temporal first, no M_i, R50) is a different network and not built here.
- The stem pool: CSN uses it at 224 input (VMZ's PyTorch default); R(2+1)D at 112 does not.
"""

import torch.nn as nn

from vov3d.models.base import VideoClassifier, clip_of
from vov3d.models.build import MODEL_REGISTRY
from vov3d.models.heads import PoolFCHead
from vov3d.models.layers import init_weights, rename_state_dict
from vov3d.models.stages import BlockSequence
from vov3d.models.stems import r2plus1d_stem, resnet_stem
from vov3d.models.units import r2plus1d_mid_width, resnet3d_conv


class BasicBlock(nn.Module):
    """ReLU(shortcut + [conv -> BN -> ReLU -> conv -> BN]) at width `planes` (ResNet-18/34)."""

    expansion = 1

    def __init__(self, dim_in, planes, conv, stride=1, shared_mid_width=False):
        super().__init__()
        # torchvision sizes both (2+1)D convs by the block's (inplanes, planes); VMZ per conv.
        mid1 = mid2 = r2plus1d_mid_width(dim_in, planes) if shared_mid_width else None
        conv1, shortcut_stride = resnet3d_conv(conv, dim_in, planes, stride, mid1)
        conv2, _ = resnet3d_conv(conv, planes, planes, 1, mid2)
        self.conv1 = nn.Sequential(conv1, nn.BatchNorm3d(planes), nn.ReLU(inplace=True))
        self.conv2 = nn.Sequential(conv2, nn.BatchNorm3d(planes))
        self.conv2[1].transform_final_bn = True
        self.downsample = _shortcut(dim_in, planes, shortcut_stride)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(self.conv2(self.conv1(x)) + shortcut)


class Bottleneck(nn.Module):
    """ReLU(shortcut + [1x1x1 -> conv (stride) -> 1x1x1, each with BN]) (ResNet-50/101/152, CSN)."""

    expansion = 4

    def __init__(self, dim_in, planes, conv, stride=1, shared_mid_width=False):
        super().__init__()
        dim_out = planes * self.expansion
        middle, shortcut_stride = resnet3d_conv(conv, planes, planes, stride)
        self.conv1 = nn.Sequential(
            nn.Conv3d(dim_in, planes, 1, bias=False), nn.BatchNorm3d(planes), nn.ReLU(inplace=True)
        )
        self.conv2 = nn.Sequential(middle, nn.BatchNorm3d(planes), nn.ReLU(inplace=True))
        self.conv3 = nn.Sequential(nn.Conv3d(planes, dim_out, 1, bias=False), nn.BatchNorm3d(dim_out))
        self.conv3[1].transform_final_bn = True
        self.downsample = _shortcut(dim_in, dim_out, shortcut_stride)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(self.conv3(self.conv2(self.conv1(x))) + shortcut)


def _shortcut(dim_in, dim_out, stride):
    """Returns the 1x1x1 conv + BN projection when the block changes shape, else None."""
    if dim_in == dim_out and all(s == 1 for s in stride):
        return None
    return nn.Sequential(nn.Conv3d(dim_in, dim_out, 1, stride=stride, bias=False), nn.BatchNorm3d(dim_out))


@MODEL_REGISTRY.register()
class ResNet3D(VideoClassifier):
    """R(2+1)D / R3D / MC3 / ir-CSN / ip-CSN at depth 18-152 (RESNET3D.ARCH, RESNET.DEPTH)."""

    CLASSIFIER = "head.fc"
    FEATURE_LAYER = "layer4"

    def __init__(self, cfg):
        super().__init__()
        arch = cfg.RESNET3D.ARCH
        if arch not in VARIANTS:
            raise KeyError(f"RESNET3D.ARCH {arch!r} is unknown; choose one of {sorted(VARIANTS)}")
        if cfg.RESNET.DEPTH not in DEPTHS:
            raise KeyError(f"RESNET.DEPTH {cfg.RESNET.DEPTH} is not a ResNet-3D depth; choose one of {sorted(DEPTHS)}")
        stem, convs = VARIANTS[arch]
        block, blocks = DEPTHS[cfg.RESNET.DEPTH]
        if block is BasicBlock and convs[0] in ("ir", "ip"):
            raise ValueError(f"{arch} is defined on bottleneck blocks only: use RESNET.DEPTH 50, 101 or 152")
        width = cfg.RESNET.WIDTH_PER_GROUP  # 64; smaller values give the tiny test models
        dim_in = cfg.DATA.INPUT_CHANNEL_NUM[0]
        if stem == "r2plus1d":
            self.stem = r2plus1d_stem(dim_in, dim_mid=45 * width // 64, dim_out=width)
        else:
            pool = ((1, 3, 3), (1, 2, 2), (0, 1, 1)) if cfg.RESNET3D.STEM_POOL else None
            self.stem = resnet_stem(dim_in, width, (3, 7, 7), pool=pool)
        dim_in = width
        for i, (num_blocks, conv) in enumerate(zip(blocks, convs)):
            planes = width * 2**i
            layer = []
            for j in range(num_blocks):
                stride = 2 if i > 0 and j == 0 else 1
                layer.append(block(dim_in, planes, conv, stride, cfg.RESNET3D.SHARED_MID_WIDTH))
                dim_in = planes * block.expansion
            self.add_module(f"layer{i + 1}", BlockSequence(*layer))
        self.head = PoolFCHead(dim_in, cfg.MODEL.NUM_CLASSES, None, cfg.MODEL.DROPOUT_RATE, cfg.MODEL.HEAD_ACT)
        # torchvision's and VMZ's init: He fan-out convs, unit BNs, N(0, 0.01) fc.
        init_weights(self, cfg.MODEL.FC_INIT_STD, cfg.RESNET.ZERO_INIT_FINAL_BN)

    def forward_features(self, x):
        x = self.stem(clip_of(x))
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
        return x

    @staticmethod
    def convert_state_dict(state):
        """Returns `state` with VMZ / torchvision names mapped to ours (only the classifier differs)."""
        return rename_state_dict(state, {"fc.": "head.fc."})


# Depth -> (block, blocks per stage).
DEPTHS = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
}

# RESNET3D.ARCH -> (stem, conv of layer1..layer4).
VARIANTS = {
    "r2plus1d": ("r2plus1d", ("r2plus1d",) * 4),
    "r3d": ("conv3d", ("conv3d",) * 4),
    "mc3": ("conv3d", ("conv3d", "conv2d", "conv2d", "conv2d")),
    "ir_csn": ("conv3d", ("ir",) * 4),
    "ip_csn": ("conv3d", ("ip",) * 4),
}
