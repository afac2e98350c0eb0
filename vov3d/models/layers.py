"""Small layers shared by the model families: Swish, squeeze-excitation, width rounding, init."""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def round_width(width, multiplier, min_width=8, divisor=8):
    """Returns width * multiplier rounded to a multiple of `divisor` (X3D's rule).

    Rounding never loses more than 10%: when it would, one more `divisor` is added.
    """
    width *= multiplier
    min_width = min_width or divisor
    width_out = max(min_width, int(width + divisor / 2) // divisor * divisor)
    if width_out < 0.9 * width:
        width_out += divisor
    return int(width_out)


def round_repeats(repeats, multiplier):
    """Returns the block count `repeats` scaled by `multiplier`, rounded up (X3D depth expansion)."""
    if not multiplier:
        return repeats
    return int(math.ceil(multiplier * repeats))


class Swish(nn.Module):
    """x * sigmoid(x), as F.silu: one fused op each way (values within 5e-7 of the two-op form; a
    VoV3D-M train step 0.94x the time on CPU)."""

    def forward(self, x):
        return F.silu(x)


class SqueezeExcitation(nn.Module):
    """Channel gating from the clip-level mean: x * sigmoid(fc2(relu(fc1(mean(x))))).

    Widths follow X3D: the squeeze width is round_width(dim, ratio). The hidden activation is ReLU
    in both X3D and VoV3D (not Swish).
    """

    def __init__(self, dim, ratio=1.0 / 16):
        super().__init__()
        dim_fc = round_width(dim, ratio)
        self.fc1 = nn.Conv3d(dim, dim_fc, 1, bias=True)
        self.fc1_act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv3d(dim_fc, dim, 1, bias=True)

    def gate(self, mean):
        """Returns the N x C channel gates for the N x C clip means `mean`."""
        # The 1x1x1 convs act on an N x C x 1 x 1 x 1 mean: run them as matrix products on views of
        # their weights (same parameters, same math, without a 3D conv call's overhead).
        s = F.linear(mean, self.fc1.weight.flatten(1), self.fc1.bias)
        s = F.linear(self.fc1_act(s), self.fc2.weight.flatten(1), self.fc2.bias)
        return torch.sigmoid(s)

    def forward(self, x):
        return x * self.gate(x.mean((2, 3, 4)))[:, :, None, None, None]


def init_weights(model, fc_init_std=0.01, zero_init_final_bn=True):
    """Initialises a model in place as PySlowFast does; returns it.

    Conv3d: He normal (fan_out, ReLU gain), bias 0. BatchNorm: gamma 1, beta 0, except the BNs
    flagged `transform_final_bn` (each block's last BN), whose gamma is 0 when
    `zero_init_final_bn`, so every block starts as its shortcut. Linear: N(0, fc_init_std^2), bias 0.
    """
    for m in model.modules():
        if isinstance(m, nn.Conv3d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            if m.affine:
                final = getattr(m, "transform_final_bn", False) and zero_init_final_bn
                nn.init.constant_(m.weight, 0.0 if final else 1.0)
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, mean=0.0, std=fc_init_std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return model


def rename_state_dict(state, prefix_map, reshape=None):
    """Returns a copy of `state` with key prefixes renamed by `prefix_map` (first match wins).

    The conversion tables of the zoo models (torchvision, VMZ, official SmallBigNet and P3D names
    -> ours) are such maps. Keys that match no prefix are kept. `reshape(new_key, tensor)`, when
    given, may return a tensor of another shape (e.g. a 1x1x1 conv weight for a linear one).
    Keys already in our naming pass through unchanged, so converting twice is harmless.
    """
    out = {}
    for key, value in state.items():
        new_key = key
        for old, new in prefix_map.items():
            if key.startswith(old) and not key.startswith(new):
                new_key = new + key[len(old):]
                break
        out[new_key] = reshape(new_key, value) if reshape is not None else value
    return out
