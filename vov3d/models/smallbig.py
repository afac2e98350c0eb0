"""SmallBigNet (Li et al., "SmallBigNet: Integrating Core and Contextual Views for Video
Classification", CVPR 2020), as the official code (xhl-video/SmallBigNet) builds it.

A C2D ResNet (no temporal conv anywhere) whose res3-res5 bottlenecks see each input twice through
the **same** conv weights: the small view (the input itself) and a big view (3D max pooled), each
with its own BN; the big BNs (names with "big") start at zero, so the network starts as C2D.

    stem   1x7x7 conv s(1,2,2) 64 -> BN -> ReLU -> max pool 1x3x3 s(1,2,2)   8x224^2 -> 8x56^2
    res2   3 plain C2D bottlenecks 256/64 (1x1x1, 1x3x3, 1x1x1)
    res3-5 SmallBig units 512/128, 1024/256, 2048/512; R50 4/6/3, R101 4/23/3, R23 2/3/1 blocks;
           spatial stride 2 in block 0's 1x3x3 and its 1x1x1 shortcut
    head   global average pool -> fc (the official model has no dropout)

SmallBig unit (W1, W2, W3 the bottleneck convs, P3 a 3x3x3 stride-1 max pool):
    h1  = ReLU( BN1(W1 x)  + BN1'(W1 P3(x)) )
    h2  = ReLU( BN2(W2 h1) + BN2'(W2 P3(h1)) )
    out = ReLU( BN3(W3 h2) + BN3'(W3 MaxPool_{T x 3 x 3}(h2)) + shortcut(x) )
The last big view pools over the **whole clip** (T' = 1, broadcast over time), so a network is
built for one clip length, DATA.NUM_FRAMES, and refuses others with a clear error.

"Extra" (SMALLBIG.EXTRA) adds before each unit x <- x + BN(W_b(W_a x * sigmoid(W_a GlobalMax(x)))),
W_a C -> C/4 shared by both terms, W_b C/4 -> C, both 1x1x1 without bias (official).

State_dict names are the official ones (`layerK.i.conv1..3`, `bn1..3`, `big1..3.1`, `big4_1`,
`big4_2`, `downsample`) except the stem and classifier, mapped by `convert_state_dict`
(`conv1`, `bn1`, `fc` -> `stem.0`, `stem.1`, `head.fc`).

Caveats (zoo-notes section 5 and 9): fvcore counts no pooling, so GFLOPs omit the big views'
max pools; the paper's params/FLOPs table could not be cross-checked.
"""

import torch
import torch.nn as nn

from vov3d.models.base import VideoClassifier, clip_of
from vov3d.models.build import MODEL_REGISTRY
from vov3d.models.heads import PoolFCHead
from vov3d.models.layers import init_weights, rename_state_dict
from vov3d.models.stages import BlockSequence
from vov3d.models.stems import resnet_stem


class SmallBigBlock(nn.Module):
    """C2D bottleneck (1x1x1, 1x3x3, 1x1x1); with `big`, the SmallBig unit, with `extra` its gating."""

    expansion = 4

    def __init__(self, dim_in, planes, stride=1, num_frames=8, big=True, extra=False):
        super().__init__()
        dim_out = planes * self.expansion
        self.conv1 = nn.Conv3d(dim_in, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = nn.Conv3d(planes, planes, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1), bias=False)
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv3 = nn.Conv3d(planes, dim_out, 1, bias=False)
        self.bn3 = nn.BatchNorm3d(dim_out)
        self.bn3.transform_final_bn = True
        self.relu = nn.ReLU(inplace=True)
        if big:
            # (pool, BN) pairs; index 1 is the BN, as in the official names `bigK.1`.
            self.big1 = nn.Sequential(nn.MaxPool3d(3, stride=1, padding=1), nn.BatchNorm3d(planes))
            self.big2 = nn.Sequential(nn.MaxPool3d(3, stride=1, padding=1), nn.BatchNorm3d(planes))
            self.big3 = nn.Sequential(
                nn.MaxPool3d((num_frames, 3, 3), stride=1, padding=(0, 1, 1)), nn.BatchNorm3d(dim_out)
            )
        if extra:
            self.big4_1 = nn.Conv3d(dim_in, dim_in // 4, 1, bias=False)
            self.big4_2 = nn.Sequential(nn.Conv3d(dim_in // 4, dim_in, 1, bias=False), nn.BatchNorm3d(dim_in))
        if dim_in != dim_out or stride != 1:
            self.downsample = nn.Sequential(
                nn.Conv3d(dim_in, dim_out, 1, stride=(1, stride, stride), bias=False), nn.BatchNorm3d(dim_out)
            )

    def forward(self, x):
        if hasattr(self, "big4_1"):
            context = torch.sigmoid(self.big4_1(torch.amax(x, dim=(2, 3, 4), keepdim=True)))
            x = x + self.big4_2(self.big4_1(x) * context)
        shortcut = self.downsample(x) if hasattr(self, "downsample") else x
        if not hasattr(self, "big1"):
            h = self.relu(self.bn1(self.conv1(x)))
            h = self.relu(self.bn2(self.conv2(h)))
            return self.relu(self.bn3(self.conv3(h)) + shortcut)
        h = self.relu(self.bn1(self.conv1(x)) + self.big1[1](self.conv1(self.big1[0](x))))
        h = self.relu(self.bn2(self.conv2(h)) + self.big2[1](self.conv2(self.big2[0](h))))
        # The big term is (N, C, 1, H, W): broadcast over time.
        out = self.bn3(self.conv3(h)) + self.big3[1](self.conv3(self.big3[0](h)))
        return self.relu(out + shortcut)


@MODEL_REGISTRY.register()
class SmallBigNet(VideoClassifier):
    """SmallBigNet-23/50/101 (RESNET.DEPTH) for clips of exactly DATA.NUM_FRAMES frames."""

    CLASSIFIER = "head.fc"
    FEATURE_LAYER = "layer4"

    def __init__(self, cfg):
        super().__init__()
        if cfg.RESNET.DEPTH not in DEPTHS:
            raise KeyError(
                f"RESNET.DEPTH {cfg.RESNET.DEPTH} is not a SmallBigNet depth; choose one of {sorted(DEPTHS)}"
            )
        self.num_frames = cfg.DATA.NUM_FRAMES
        width = cfg.RESNET.WIDTH_PER_GROUP  # 64; smaller values give the tiny test models
        self.stem = resnet_stem(
            cfg.DATA.INPUT_CHANNEL_NUM[0], width, (1, 7, 7), pool=((1, 3, 3), (1, 2, 2), (0, 1, 1))
        )
        dim_in = width
        for i, num_blocks in enumerate(DEPTHS[cfg.RESNET.DEPTH]):
            planes, blocks = width * 2**i, []
            big = i > 0 and cfg.SMALLBIG.BIG_VIEW  # res2 is plain C2D (official)
            for j in range(num_blocks):
                stride = 2 if i > 0 and j == 0 else 1
                blocks.append(
                    SmallBigBlock(dim_in, planes, stride, self.num_frames, big, big and cfg.SMALLBIG.EXTRA)
                )
                dim_in = planes * SmallBigBlock.expansion
            self.add_module(f"layer{i + 1}", BlockSequence(*blocks))
        self.head = PoolFCHead(dim_in, cfg.MODEL.NUM_CLASSES, None, cfg.MODEL.DROPOUT_RATE, cfg.MODEL.HEAD_ACT)
        init_weights(self, cfg.MODEL.FC_INIT_STD, cfg.RESNET.ZERO_INIT_FINAL_BN)
        for name, m in self.named_modules():
            if "big" in name and isinstance(m, nn.BatchNorm3d):
                # Official: the big views start as no-ops (gamma = beta = 0).
                nn.init.zeros_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_features(self, x):
        x = clip_of(x)
        if x.shape[2] != self.num_frames:
            raise ValueError(
                f"SmallBigNet was built for {self.num_frames}-frame clips (DATA.NUM_FRAMES): its last big "
                f"view max-pools over the whole clip, so it cannot take {x.shape[2]} frames. Sample "
                f"{self.num_frames}-frame clips, or build (and train) the model with DATA.NUM_FRAMES {x.shape[2]}."
            )
        x = self.stem(x)
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
        return x

    @staticmethod
    def convert_state_dict(state):
        """Returns an official SmallBigNet state_dict in our names (stem and classifier only)."""
        return rename_state_dict(state, {"conv1.": "stem.0.", "bn1.": "stem.1.", "fc.": "head.fc."})


# RESNET.DEPTH -> blocks per stage (official R23 / R50 / R101 layouts).
DEPTHS = {23: (1, 2, 3, 1), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
