"""Spatiotemporal "middles" of a bottleneck: the part between the 1x1x1 reduce and expand convs.

A block (X3D bottleneck, VoV3D's unit inside T-OSA) asks `build_middle(name, width, stride)` for its
middle and gets named modules to register as its own children, so official state_dict names
(`b` for one conv, `b1`/`b2` for two) come out unchanged. This is what makes the VoV3D paper's
Table 4 ablation a config value (`VOV3D.UNIT`, `X3D.UNIT`) rather than five block classes:

| name      | middle                                                           | params / channel |
|-----------|------------------------------------------------------------------|------------------|
| dw3d      | depthwise 3x3x3 (X3D, ir-CSN)                                    | 27               |
| d2plus1d  | depthwise 1x3x3 then depthwise 3x1x1, nothing between (VoV3D)    | 12               |
| d1plus2d  | depthwise 3x1x1 then depthwise 1x3x3                             | 12               |
| r2plus1d  | full 1x3x3 -> BN -> ReLU -> full 3x1x1 (Tran et al.)             | see below        |
| conv3d    | full 3x3x3                                                       | 27 * width       |

The spatial stride always sits on the spatial conv. R(2+1)D's mid width follows Tran et al.:
M = floor(t d^2 N_in N_out / (d^2 N_in + t N_out)), which matches a full 3x3x3's parameter count.
The block applies its own BN after the middle.
"""

from collections import OrderedDict

import torch.nn as nn


def _dw_conv(width, kernel, stride):
    padding = tuple(k // 2 for k in kernel)
    return nn.Conv3d(width, width, kernel, stride=stride, padding=padding, groups=width, bias=False)


def r2plus1d_mid_width(dim_in, dim_out, t=3, d=3):
    """Returns the (2+1)D mid width with the parameter count of a t x d x d conv (Tran et al.)."""
    return (t * d * d * dim_in * dim_out) // (d * d * dim_in + t * dim_out)


def _dw3d(width, stride, temporal_kernel=3, spatial_kernel=3, mid_width=None):
    return OrderedDict(b=_dw_conv(width, (temporal_kernel, spatial_kernel, spatial_kernel), (1, stride, stride)))


def _d2plus1d(width, stride, temporal_kernel=3, spatial_kernel=3, mid_width=None):
    # Official VoV3D: no norm or activation between the two depthwise convs.
    return OrderedDict(
        b1=_dw_conv(width, (1, spatial_kernel, spatial_kernel), (1, stride, stride)),
        b2=_dw_conv(width, (temporal_kernel, 1, 1), (1, 1, 1)),
    )


def _d1plus2d(width, stride, temporal_kernel=3, spatial_kernel=3, mid_width=None):
    return OrderedDict(
        b1=_dw_conv(width, (temporal_kernel, 1, 1), (1, 1, 1)),
        b2=_dw_conv(width, (1, spatial_kernel, spatial_kernel), (1, stride, stride)),
    )


def _r2plus1d(width, stride, temporal_kernel=3, spatial_kernel=3, mid_width=None):
    mid = mid_width or r2plus1d_mid_width(width, width, t=temporal_kernel, d=spatial_kernel)
    k = spatial_kernel
    return OrderedDict(
        b1=nn.Conv3d(width, mid, (1, k, k), stride=(1, stride, stride), padding=(0, k // 2, k // 2), bias=False),
        b1_bn=nn.BatchNorm3d(mid),
        b1_relu=nn.ReLU(inplace=True),
        b2=nn.Conv3d(mid, width, (temporal_kernel, 1, 1), padding=(temporal_kernel // 2, 0, 0), bias=False),
    )


def _conv3d(width, stride, temporal_kernel=3, spatial_kernel=3, mid_width=None):
    k = spatial_kernel
    return OrderedDict(
        b=nn.Conv3d(
            width, width, (temporal_kernel, k, k), stride=(1, stride, stride),
            padding=(temporal_kernel // 2, k // 2, k // 2), bias=False,
        )
    )


MIDDLES = {
    "dw3d": _dw3d,
    "d2plus1d": _d2plus1d,
    "d1plus2d": _d1plus2d,
    "r2plus1d": _r2plus1d,
    "conv3d": _conv3d,
}


def build_middle(name, width, stride, temporal_kernel=3, spatial_kernel=3, mid_width=None):
    """Returns an OrderedDict of named modules forming the middle `name` at `width` channels.

    `temporal_kernel` x `spatial_kernel`^2 is the kernel the middle factorises (t x k x k; 3 x 3 x 3 in
    every model); `mid_width` sets R(2+1)D's mid width (default: Tran et al.'s parameter-matched M; the
    VoV3D paper's Table 1 formula assumes M = width). Other middles ignore it.
    """
    try:
        builder = MIDDLES[name]
    except KeyError:
        raise KeyError(f"Unknown unit {name!r}; choose one of {sorted(MIDDLES)}") from None
    return builder(width, stride, temporal_kernel, spatial_kernel, mid_width)


def attach_middle(block, name, width, stride, temporal_kernel=3):
    """Registers the middle `name` as children of `block`; returns their names in forward order."""
    modules = build_middle(name, width, stride, temporal_kernel)
    for child_name, module in modules.items():
        block.add_module(child_name, module)
    return list(modules)


# ---------------------------------------------------------------------------- #
# Full convs of ResNet-3D blocks (R(2+1)D, R3D, MC3, CSN)
# ---------------------------------------------------------------------------- #
# A ResNet-3D block asks for a whole conv (width change, (t, s, s) stride) rather than a middle.
# Modules come in VMZ / torchvision layout (nn.Sequential indices), so that state_dict names equal
# theirs. The mid width of r2plus1d is r2plus1d_mid_width above unless given.


def resnet3d_conv(kind, dim_in, dim_out, stride=1, mid_width=None):
    """Returns (conv module, shortcut stride) for a 3x3x3-equivalent conv of `kind`.

    conv3d   full 3x3x3, stride (s, s, s) (R3D)
    conv2d   full 1x3x3, stride (1, s, s): no temporal conv nor stride (MC3's upper stages)
    r2plus1d 1x3x3 (-> M) -> BN -> ReLU -> 3x1x1, spatial then temporal stride (Tran et al.)
    ir       depthwise 3x3x3 (ir-CSN); needs dim_in == dim_out
    ip       1x1x1 -> BN -> depthwise 3x3x3 (ip-CSN), no ReLU between (VMZ)
    """
    s = stride
    if kind == "conv3d":
        return nn.Conv3d(dim_in, dim_out, 3, stride=s, padding=1, bias=False), (s, s, s)
    if kind == "conv2d":
        conv = nn.Conv3d(dim_in, dim_out, (1, 3, 3), stride=(1, s, s), padding=(0, 1, 1), bias=False)
        return conv, (1, s, s)
    if kind == "r2plus1d":
        mid = mid_width or r2plus1d_mid_width(dim_in, dim_out)
        conv = nn.Sequential(
            nn.Conv3d(dim_in, mid, (1, 3, 3), stride=(1, s, s), padding=(0, 1, 1), bias=False),
            nn.BatchNorm3d(mid),
            nn.ReLU(inplace=True),
            nn.Conv3d(mid, dim_out, (3, 1, 1), stride=(s, 1, 1), padding=(1, 0, 0), bias=False),
        )
        return conv, (s, s, s)
    if kind == "ir":
        if dim_in != dim_out:
            raise ValueError(f"ir-CSN's depthwise conv keeps the width; got {dim_in} -> {dim_out}")
        return nn.Conv3d(dim_in, dim_out, 3, stride=s, padding=1, groups=dim_in, bias=False), (s, s, s)
    if kind == "ip":
        conv = nn.Sequential(
            nn.Conv3d(dim_in, dim_out, 1, bias=False),
            nn.BatchNorm3d(dim_out),
            nn.Conv3d(dim_out, dim_out, 3, stride=s, padding=1, groups=dim_out, bias=False),
        )
        return conv, (s, s, s)
    raise KeyError(f"Unknown ResNet-3D conv {kind!r}; choose one of conv3d, conv2d, r2plus1d, ir, ip")
