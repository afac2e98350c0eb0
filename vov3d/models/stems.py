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
