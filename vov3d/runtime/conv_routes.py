"""Conv routes: the same nn.Conv3d parameters run through a faster forward, chosen per model.

`ChannelsLastConv3d` keeps channels-last clips channels-last on CPU; `DepthwiseConv3d` runs a
depthwise Conv3d whose kernel is 1 x kh x kw (spatial) as a depthwise Conv2d over the N*T frames,
and one whose kernel is kt x 1 x 1 (temporal) as a depthwise kt x 1 Conv2d over (T, H*W). The
Conv2d weights are views of the Conv3d parameters, so state_dict names, shapes and values are
unchanged and gradients land in the Conv3d parameters. With channels_last_3d activations both
reshapes are views (no copy). Depthwise Conv3d backward is slow on CPU (pytorch/pytorch#37406,
#110885); depthwise Conv2d is well optimised. On CPU channels-last clips the "kernel" route runs
both convs, forward and backward, on a C kernel (vov3d/runtime/depthwise.py), and a VoV3D unit's
ReLU + spatial + temporal convs as one pass (set_middle_routes). Full 3x3x3 depthwise kernels (X3D)
stay Conv3d: splitting them into shifted Conv2d taps measured slower. `PointwiseConv3d` runs the 1x1x1 Conv3d of a
channels-last model as matrix products (its docstring says when that is faster).

Routes are applied by the runtime's prepare steps (vov3d/runtime/prepare.py), never by build_model:
the module a user builds is the plain one. Every route keeps outputs within 1e-5 (tests/test_speed.py).
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from vov3d.runtime.depthwise import SpatialTemporalPair, depthwise_kernel, is_spatial_temporal_pair, kernel_applies


class ChannelsLastConv3d(nn.Conv3d):
    """An nn.Conv3d that keeps channels-last clips channels-last on CPU.

    For a batch of one (a test clip, a demo video), PyTorch's CPU dispatch picks its reference
    `slow_conv3d` for some convs (a 3-channel stem conv, 1x1x1 convs) even when the input is
    channels_last_3d: it returns NCTHW, so every later layer pays a layout change, and the stem conv
    alone ran 11x slower (17 ms vs 1.5 ms at 16x224^2). This sends fp32 channels-last CPU inputs
    to oneDNN, as PyTorch itself does for larger batches (differentiable, same numerics class);
    anything else takes the stock forward. Retyped in place by `apply_conv_routes`.
    """

    def forward(self, x):
        if (
            x.dim() == 5 and x.device.type == "cpu" and x.dtype == torch.float32
            and self.weight.dtype == torch.float32 and self.padding_mode == "zeros"
            and not isinstance(self.padding, str) and torch.backends.mkldnn.is_available()
            and torch.backends.mkldnn.enabled and not torch.is_autocast_enabled("cpu")
            and x.is_contiguous(memory_format=torch.channels_last_3d) and x.numel() > 0
            and not torch.jit.is_tracing()  # traces (fvcore's FLOP count, exports) keep aten::_convolution
            and not torch.compiler.is_compiling()  # torch.compile traces with fake tensors oneDNN cannot take
        ):
            if x.shape[2] * x.shape[3] * x.shape[4] == 1 and is_pointwise(self):
                # One position per clip (a head's 1x1x1 conv after global pooling): a product of N rows
                # took 0.44-0.59x oneDNN's time (320 -> 2048 channels, 1-8 clips; AMD EPYC Zen 3).
                return _pointwise_as_matmul(x, self.weight, self.bias)
            return torch.mkldnn_convolution(
                x, self.weight, self.bias, self.padding, self.stride, self.dilation, self.groups
            )
        return super().forward(x)


def route_channels_last_convs(model):
    """Retypes every plain nn.Conv3d of `model` to ChannelsLastConv3d, in place; returns how many.
    Parameters and state_dict are untouched."""
    count = 0
    for m in model.modules():
        if type(m) is nn.Conv3d:
            m.__class__ = ChannelsLastConv3d
            count += 1
    return count


class DepthwiseConv3d(ChannelsLastConv3d):
    """A depthwise nn.Conv3d (1 x kh x kw or kt x 1 x 1 kernel) with a switchable forward.

    Never constructed directly: `set_depthwise_impl` retypes existing nn.Conv3d modules, so the
    parameters, their names and the checkpoint format stay those of nn.Conv3d.
    `depthwise_impl == "conv3d"` is the Conv3d forward (ChannelsLastConv3d's); "kernel" is the C
    kernel where it applies (fp32 channels-last CPU clips, the kernel shapes it takes), else conv2d.
    """

    depthwise_impl = "conv3d"

    def forward(self, x):
        if self.depthwise_impl == "conv3d" or x.dim() != 5:
            return super().forward(x)
        if self.depthwise_impl == "kernel" and kernel_applies(self, x):
            return depthwise_kernel(self, x)
        if self.kernel_size[0] == 1:
            return self._spatial(x)
        return self._temporal(x)

    def _spatial(self, x):
        n, c, t, h, w = x.shape
        weight = self.weight.squeeze(2)  # (C, 1, kh, kw), a view
        args = (self.stride[1:], self.padding[1:], self.dilation[1:])
        if x.is_contiguous(memory_format=torch.channels_last_3d) or t == 1:
            # (N, C, T, H, W) channels-last -> (N*T, C, H, W) channels-last: a view.
            frames = x.transpose(1, 2).reshape(n * t, c, h, w)
            if h < weight.shape[-2] or w < weight.shape[-1]:
                frames, args = _padded_small_map(frames, args)
            y = F.conv2d(frames, weight, self.bias, *args, self.groups)
            return y.reshape(n, t, c, y.shape[-2], y.shape[-1]).transpose(1, 2)
        # NCTHW: channel c of frame i is channel c*T + i of (N, C*T, H, W), a view.
        bias = self.bias.repeat_interleave(t) if self.bias is not None else None
        y = F.conv2d(x.reshape(n, c * t, h, w), weight.repeat_interleave(t, 0), bias, *args, c * t)
        return y.reshape(n, c, t, y.shape[-2], y.shape[-1])

    def _temporal(self, x):
        h, w = x.shape[-2:]
        y = F.conv2d(
            x.flatten(3), self.weight.squeeze(-1), self.bias,
            (self.stride[0], 1), (self.padding[0], 0), (self.dilation[0], 1), self.groups,
        )
        return y.unflatten(3, (h, w))


POINTWISE_IMPLS = ("conv", "matmul")


class PointwiseConv3d(ChannelsLastConv3d):
    """A 1x1x1 nn.Conv3d (stride 1, no padding, one group) with a switchable forward.

    `pointwise_impl == "matmul"` runs it as one matrix product: over a channels-last clip the
    (N, C, T, H, W) tensor is the row-major (N*T*H*W, C) matrix, so `F.linear` on its NTHWC view with
    the (C_out, C_in) weight view copies nothing, and its backward is two more products. Why: on CPU
    PyTorch sends the backward of a 1x1x1 conv to its reference path (slow_conv3d) when one thread
    runs fewer than 16 clips, the case of torchrun's one thread per process; there the products
    measured 2.0-2.8x faster forward + backward (AMD EPYC, AVX2, 1 thread, batch 2x16, 4^2-56^2
    maps). At 2 threads a layer alone measured 0.73-0.84x the time on 7^2 / 4^2 maps and 1.1-1.3x on
    28^2 / 56^2 maps, yet the whole VoV3D-M train step with every 1x1x1 conv as a product took 0.80x
    the time of the one with convs, and choosing per layer from such isolated timings lost most of
    that: the choice is therefore a route lever measured on the whole model (MODEL.POINTWISE_IMPL,
    vov3d/runtime/prepare.py). `"conv"` is ChannelsLastConv3d's forward. Parameters and state_dict
    are those of nn.Conv3d.
    """

    pointwise_impl = "conv"

    def forward(self, x):
        if self.pointwise_impl == "matmul" and x.dim() == 5 and not torch.jit.is_tracing():
            return _pointwise_as_matmul(x, self.weight, self.bias)
        return super().forward(x)


def _pointwise_as_matmul(x, weight, bias):
    y = F.linear(x.permute(0, 2, 3, 4, 1), weight.flatten(1), bias)  # (N, T, H, W, C_out), contiguous
    return y.permute(0, 4, 1, 2, 3)  # (N, C_out, T, H, W), channels-last


def is_pointwise(m):
    """True for an nn.Conv3d with a 1x1x1 kernel, stride 1, no padding and one group."""
    return (
        isinstance(m, nn.Conv3d) and tuple(m.kernel_size) == (1, 1, 1) and tuple(m.stride) == (1, 1, 1)
        and m.groups == 1 and (m.padding == "valid" or tuple(m.padding) == (0, 0, 0))
    )


def _padded_small_map(frames, args):
    """Returns (frames zero-padded, conv args without padding) for maps smaller than the kernel.

    oneDNN's depthwise backward takes a slow path when a map is smaller than the kernel (a 2x2
    res5 map under a 3x3 kernel: 14.6 ms against 3.6 ms padded first, channels-last, batch 256x128,
    AMD EPYC, 2 threads); padding explicitly gives the same values and gradients."""
    stride, (ph, pw), dilation = args
    if ph == 0 and pw == 0:
        return frames, args
    frames = F.pad(frames, (pw, pw, ph, ph)).contiguous(memory_format=torch.channels_last)
    return frames, (stride, (0, 0), dilation)


def is_factorizable_depthwise(m):
    """True for a depthwise nn.Conv3d (one filter per channel) with a 1 x kh x kw or kt x 1 x 1 kernel."""
    if not isinstance(m, nn.Conv3d) or m.padding_mode != "zeros" or isinstance(m.padding, str):
        return False
    if not (m.groups == m.in_channels == m.out_channels):
        return False
    kt, kh, kw = m.kernel_size
    if kt == 1:
        return m.stride[0] == 1 and m.padding[0] == 0
    if kh == 1 and kw == 1:
        return m.stride[1:] == (1, 1) and m.padding[1:] == (0, 0)
    return False


def _route_convs(model, cls, applies, attr, impl, stock):
    """Retypes every plain Conv3d of `model` for which `applies(m)` holds to `cls` (unless `impl` is
    the `stock` forward) and sets `attr = impl` on every `cls` module; returns how many have it."""
    count = 0
    for m in model.modules():
        if type(m) in (nn.Conv3d, ChannelsLastConv3d) and impl != stock and applies(m):
            m.__class__ = cls
        if isinstance(m, cls):
            setattr(m, attr, impl)
            count += 1
    return count


DEPTHWISE_IMPLS = ("conv3d", "conv2d", "kernel")


def set_depthwise_impl(model, impl):
    """Runs every factorizable depthwise Conv3d of `model` as `impl` ("conv3d" | "conv2d" | "kernel"),
    in place.

    Returns the number of convs switched. Parameters and state_dict are untouched.
    """
    if impl not in DEPTHWISE_IMPLS:
        raise ValueError(f"depthwise impl must be one of {DEPTHWISE_IMPLS}, got {impl!r}")
    return _route_convs(model, DepthwiseConv3d, is_factorizable_depthwise, "depthwise_impl", impl, "conv3d")


def set_pointwise_impl(model, impl):
    """Runs every 1x1x1 Conv3d of `model` (stride 1, no padding, one group) as `impl` ("conv" |
    "matmul"), in place; returns how many. Parameters and state_dict are untouched."""
    if impl not in POINTWISE_IMPLS:
        raise ValueError(f"pointwise impl must be one of {POINTWISE_IMPLS}, got {impl!r}")
    return _route_convs(model, PointwiseConv3d, is_pointwise, "pointwise_impl", impl, "conv")


def set_middle_routes(model, depthwise):
    """Gives every unit of `model` that takes a `middle_route` (VoV3D's BottleneckUnit: its `a_act` and
    middle) and whose middle is a depthwise 1x3x3 then 3x1x1 conv a SpatialTemporalPair when
    `depthwise` is "kernel", and removes it otherwise; returns how many units have one."""
    count = 0
    for m in model.modules():
        m.__dict__.pop("middle_route", None)
        if depthwise != "kernel" or not hasattr(type(m), "middle_route") or not hasattr(m, "fusable_parts"):
            continue
        parts = m.fusable_parts()
        convs = [getattr(m, name) for name in parts["middle"]]
        if len(convs) == 2 and is_spatial_temporal_pair(*convs):
            m.middle_route = SpatialTemporalPair(parts["a_act"], *convs)
            count += 1
    return count


def apply_conv_routes(model, memory_format, depthwise, pointwise="conv"):
    """Puts `model`'s weights in `memory_format` (a torch.memory_format), runs its factorizable
    depthwise convs as `depthwise` ("conv3d" | "conv2d" | "kernel", which also runs a unit's
    spatial + temporal middle as one pass: set_middle_routes), in channels_last_3d its 1x1x1 convs as
    `pointwise` ("conv" | "matmul") and every other Conv3d as ChannelsLastConv3d; in place
    (parameters keep their identity); returns `model`.

    Routes applied before are undone first: a contiguous model runs plain nn.Conv3d forwards, also
    for the ambiguous tensors (one channel, 1x1 maps) that count as channels-last too; the matrix
    product needs channels-last rows, so contiguous models keep their 1x1x1 convs."""
    for m in model.modules():
        if isinstance(m, ChannelsLastConv3d):
            m.__class__ = nn.Conv3d
            m.__dict__.pop("depthwise_impl", None)
            m.__dict__.pop("pointwise_impl", None)
    model.to(memory_format=memory_format)
    set_depthwise_impl(model, depthwise)
    set_middle_routes(model, depthwise)
    if memory_format == torch.channels_last_3d:
        set_pointwise_impl(model, pointwise)
        route_channels_last_convs(model)
    return model
