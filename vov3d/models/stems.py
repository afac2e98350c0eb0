"""Stems: the layers between the input clip and the first stage."""

import torch.nn as nn


class X3DStem(nn.Module):
    """X3D / VoV3D stem: 1x3x3 conv (spatial stride 2), then a depthwise temporal conv, BN, ReLU.

    There is no norm or activation between the two convs and no pooling (official X3D).
    `conv_xy` / `conv` are the official names.
    """

    def __init__(self, dim_in, dim_out, temporal_kernel=5):
        super().__init__()
        self.conv_xy = nn.Conv3d(dim_in, dim_out, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1), bias=False)
        self.conv = nn.Conv3d(
            dim_out, dim_out, (temporal_kernel, 1, 1), padding=(temporal_kernel // 2, 0, 0),
            groups=dim_out, bias=False,
        )
        self.bn = nn.BatchNorm3d(dim_out)
        self.relu = nn.ReLU(inplace=True)

    def fusable_parts(self):
        """Returns this stem's ops by role, for runtimes that run it as one kernel: the spatial conv
        `spatial`, the depthwise temporal conv `temporal`, its BN `bn` and the activation `act`."""
        return {"spatial": self.conv_xy, "temporal": self.conv, "bn": self.bn, "act": self.relu}

    def forward(self, x):
        return self.relu(self.bn(self.conv(self.conv_xy(x))))


class VideoModelStem(nn.Module):
    """Holds one stem per pathway as `pathway{i}_stem` and maps a list of clips to a list of features.

    vov3d models have one pathway; the wrapper exists so state_dict keys match PySlowFast's
    (`s1.pathway0_stem.*`).
    """

    def __init__(self, stem):
        super().__init__()
        self.pathway0_stem = stem

    def forward(self, xs):
        return [self.pathway0_stem(xs[0])]


def resnet_stem(dim_in, dim_out, kernel=(3, 7, 7), stride=(1, 2, 2), pool=None):
    """Returns nn.Sequential(conv, BN, ReLU[, max pool]): the ResNet-style stem of the zoo models.

    Indices follow torchvision / VMZ (`stem.0` conv, `stem.1` BN), which is how their checkpoints
    name it. `pool` is (kernel, stride, padding) of an optional max pool: CSN's 1x3x3 stride
    (1,2,2) at 224 input, P3D's 2x3x3 stride 2, SmallBigNet's 1x3x3.
    """
    layers = [
        nn.Conv3d(dim_in, dim_out, kernel, stride=stride, padding=tuple(k // 2 for k in kernel), bias=False),
        nn.BatchNorm3d(dim_out),
        nn.ReLU(inplace=True),
    ]
    if pool is not None:
        pool_kernel, pool_stride, pool_padding = pool
        layers.append(nn.MaxPool3d(pool_kernel, stride=pool_stride, padding=pool_padding))
    return nn.Sequential(*layers)


def r2plus1d_stem(dim_in, dim_mid=45, dim_out=64):
    """Returns the R(2+1)D stem: 1x7x7 (stride 1,2,2) -> BN -> ReLU -> 3x1x1 -> BN -> ReLU.

    The mid width 45 is VMZ's and torchvision's fixed value (the paper's M_i rule would give 83).
    """
    return nn.Sequential(
        nn.Conv3d(dim_in, dim_mid, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False),
        nn.BatchNorm3d(dim_mid),
        nn.ReLU(inplace=True),
        nn.Conv3d(dim_mid, dim_out, (3, 1, 1), padding=(1, 0, 0), bias=False),
        nn.BatchNorm3d(dim_out),
        nn.ReLU(inplace=True),
    )
