"""Depthwise 1x3x3 and 3x1x1 convs of channels-last CPU clips on the C kernel (MODEL.DEPTHWISE_IMPL kernel).

vov3d/runtime/csrc/depthwise_cpu.c computes the forward pass and both gradients of the two
depthwise convs of a D(2+1)D unit (VoV3D, X3D with X3D.UNIT d2plus1d): 1x3x3 with padding 1 and
stride 1 or 2, and 3x1x1 with padding 1 and stride 1, no bias. `DepthwiseConv3d` (conv_routes.py)
runs through `depthwise_kernel` when `kernel_applies`; everything else (another kernel shape, a bias,
NCTHW clips, autocast, other devices and dtypes, traces, no C compiler) takes the conv2d route. A
unit whose middle is the two convs in a row (VoV3D's) runs them and the ReLU before them as one pass,
`SpatialTemporalPair`.
Outputs and gradients match nn.Conv3d within float rounding (tests/test_depthwise_kernel.py).
"""

import torch
import torch.nn as nn

from vov3d.runtime import kernels

_CL = torch.channels_last_3d
SPATIAL = ((1, 3, 3), (0, 1, 1))  # (kernel, padding) of the spatial conv; stride (1, s, s), s = 1 or 2
TEMPORAL = ((3, 1, 1), (1, 0, 0))  # of the temporal conv; stride 1


def _lib():
    return kernels.load_library("depthwise_cpu")


def _check(status, what):
    if status:
        raise RuntimeError(f"the depthwise kernel ran out of memory in {what}")


def _shape(conv):
    return tuple(conv.kernel_size), tuple(conv.padding) if not isinstance(conv.padding, str) else None


def kernel_takes(conv):
    """True for an nn.Conv3d the C kernel computes: depthwise, no bias, a SPATIAL or TEMPORAL shape."""
    if not isinstance(conv, nn.Conv3d):
        return False
    shape, stride = _shape(conv), tuple(conv.stride)
    if shape == SPATIAL:
        if stride not in ((1, 1, 1), (1, 2, 2)):
            return False
    elif shape != TEMPORAL or stride != (1, 1, 1):
        return False
    return (
        conv.bias is None and tuple(conv.dilation) == (1, 1, 1)
        and conv.padding_mode == "zeros" and conv.groups == conv.in_channels == conv.out_channels
    )


def kernel_applies(conv, x):
    """True when the C kernel computes depthwise `conv` (an nn.Conv3d) on input `x`."""
    return (
        kernel_takes(conv)
        and x.dim() == 5 and x.device.type == "cpu" and x.dtype == torch.float32
        and conv.weight.dtype == torch.float32 and x.numel() > 0
        and x.is_contiguous(memory_format=_CL)
        and not torch.is_autocast_enabled("cpu")
        and not torch.jit.is_tracing() and not torch.compiler.is_compiling()
        and _lib() is not None
    )


def _has_hooks(m):
    return bool(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks
                or nn.modules.module._global_forward_hooks or nn.modules.module._global_forward_pre_hooks)


def is_spatial_temporal_pair(spatial, temporal):
    """True for a spatial conv then a temporal conv of the same width, both taken by the kernel (a
    D(2+1)D unit's middle)."""
    return (
        kernel_takes(spatial) and kernel_takes(temporal) and _shape(spatial) == SPATIAL
        and _shape(temporal) == TEMPORAL and spatial.out_channels == temporal.in_channels
    )


class SpatialTemporalPair:
    """A unit's activation `act` and middle, spatial conv then temporal conv, as one pass of the C
    kernel (dw_spatial_temporal: the intermediate never goes to memory, nor is it kept for the
    backward pass; a ReLU `act` is applied as the input is read and its gradient as dx is written).
    Set as a unit's `middle_route` by vov3d/runtime/conv_routes.py, called on the pre-activation;
    where the kernel does not apply (its or the convs' own checks, another activation, a hook on any
    of the three modules) they run one after the other."""

    def __init__(self, act, spatial, temporal):
        self.act, self.spatial, self.temporal = act, spatial, temporal

    def __call__(self, x):
        a, s, t = self.act, self.spatial, self.temporal
        if (
            getattr(s, "depthwise_impl", None) == "kernel" and getattr(t, "depthwise_impl", None) == "kernel"
            and kernel_applies(s, x) and kernel_applies(t, x)  # x's checks hold for s(x) too
            and type(a) in (nn.ReLU, nn.Identity) and not any(_has_hooks(m) for m in (a, s, t))
        ):
            return _SpatialTemporal.apply(x, s.weight, t.weight, s.stride[1], type(a) is nn.ReLU)
        return t(s(a(x)))


def depthwise_kernel(conv, x):
    """`conv`(x) through the C kernel (call only when `kernel_applies(conv, x)`); differentiable."""
    if conv.kernel_size[0] == 1:
        return _Spatial.apply(x, conv.weight, conv.stride[1])
    return _Temporal.apply(x, conv.weight)


def _taps(weight, reverse=False):
    """(C, 1, kt, kh, kw) weights -> tap-major (taps, C), optionally in reverse tap order."""
    w = weight.detach().reshape(weight.shape[0], -1)
    return (w.flip(1) if reverse else w).t().contiguous()


def _from_taps(grad_taps, weight):
    return grad_taps.t().reshape(weight.shape).contiguous()


def _kernel():
    """What every call needs: the library, the pointer function, the thread count."""
    return _lib(), kernels.pointer, torch.get_num_threads()


class _Spatial(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, stride):
        lib, ptr, threads = _kernel()
        n, c, t, hin, win = x.shape
        h, w = (hin - 1) // stride + 1, (win - 1) // stride + 1
        y = torch.empty((n, c, t, h, w), memory_format=_CL)
        taps = _taps(weight)  # held here: a temporary's memory is freed before the call reads it
        _check(lib.dw_spatial(ptr(x), n * t, hin, win, c, ptr(taps), stride, ptr(y), h, w, threads),
               "the spatial forward")
        ctx.save_for_backward(x, weight)
        ctx.stride = stride
        return y

    @staticmethod
    def backward(ctx, grad):
        (x, weight), g, (lib, ptr, threads) = ctx.saved_tensors, grad.contiguous(memory_format=_CL), _kernel()
        (n, c, t, hin, win), (h, w), s = x.shape, g.shape[3:], ctx.stride
        dx = dw = None
        if ctx.needs_input_grad[0]:
            dx = torch.empty_like(x, memory_format=_CL)
            if s == 1:  # the forward conv of g with the taps reversed
                taps = _taps(weight, reverse=True)
                status = lib.dw_spatial(ptr(g), n * t, h, w, c, ptr(taps), 1, ptr(dx), hin, win, threads)
            else:
                taps = _taps(weight)
                status = lib.dw_spatial_input_grad(ptr(g), n * t, h, w, c, ptr(taps), ptr(dx), hin, win, threads)
            _check(status, "the spatial input gradient")
        if ctx.needs_input_grad[1]:
            grad_taps = torch.empty(9, c)
            _check(lib.dw_spatial_weight_grad(ptr(g), ptr(x), n * t, h, w, c, hin, win, s, ptr(grad_taps), threads),
                   "the spatial weight gradient")
            dw = _from_taps(grad_taps, weight)
        return dx, dw, None


class _Temporal(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight):
        lib, ptr, threads = _kernel()
        n, c, t, h, w = x.shape
        y = torch.empty_like(x, memory_format=_CL)
        taps = _taps(weight)
        _check(lib.dw_temporal(ptr(x), n, t, h * w, c, ptr(taps), ptr(y), threads), "the temporal forward")
        ctx.save_for_backward(x, weight)
        return y

    @staticmethod
    def backward(ctx, grad):
        (x, weight), g, (lib, ptr, threads) = ctx.saved_tensors, grad.contiguous(memory_format=_CL), _kernel()
        n, c, t, h, w = x.shape
        dx = dw = None
        if ctx.needs_input_grad[0]:  # the forward conv of g with the taps reversed
            dx, taps = torch.empty_like(x, memory_format=_CL), _taps(weight, reverse=True)
            _check(lib.dw_temporal(ptr(g), n, t, h * w, c, ptr(taps), ptr(dx), threads),
                   "the temporal input gradient")
        if ctx.needs_input_grad[1]:
            grad_taps = torch.empty(3, c)
            _check(lib.dw_temporal_weight_grad(ptr(g), ptr(x), n, t, h * w, c, ptr(grad_taps), threads),
                   "the temporal weight gradient")
            dw = _from_taps(grad_taps, weight)
        return dx, dw


class _SpatialTemporal(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w_spatial, w_temporal, stride, relu_in):
        lib, ptr, threads = _kernel()
        n, c, t, hin, win = x.shape
        h, w = (hin - 1) // stride + 1, (win - 1) // stride + 1
        y = torch.empty((n, c, t, h, w), memory_format=_CL)
        ws, wt = _taps(w_spatial), _taps(w_temporal)
        _check(lib.dw_spatial_temporal(ptr(x), n, t, hin, win, c, ptr(ws), stride, ptr(wt), ptr(y), h, w,
                                       int(relu_in), threads), "the spatial-temporal forward")
        ctx.save_for_backward(x, w_spatial, w_temporal)
        ctx.stride, ctx.relu_in = stride, relu_in
        return y

    @staticmethod
    def backward(ctx, grad):
        (x, w_spatial, w_temporal), g = ctx.saved_tensors, grad.contiguous(memory_format=_CL)
        lib, ptr, threads = _kernel()
        n, c, t, hin, win = x.shape
        ws, ws_rev = _taps(w_spatial), _taps(w_spatial, reverse=True)
        wt, wt_rev = _taps(w_temporal), _taps(w_temporal, reverse=True)
        dx = torch.empty_like(x, memory_format=_CL) if ctx.needs_input_grad[0] else None
        dws, dwt = torch.empty(9, c), torch.empty(3, c)
        _check(lib.dw_spatial_temporal_backward(
            ptr(g), ptr(x), n, t, hin, win, c, ptr(ws), ptr(ws_rev), ctx.stride, ptr(wt), ptr(wt_rev), ptr(dx),
            ptr(dws), ptr(dwt), g.shape[3], g.shape[4], int(ctx.relu_in), threads), "the spatial-temporal backward")
        return (dx, _from_taps(dws, w_spatial) if ctx.needs_input_grad[1] else None,
                _from_taps(dwt, w_temporal) if ctx.needs_input_grad[2] else None, None, None)
