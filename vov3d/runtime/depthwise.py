"""Depthwise 1x3x3 and 3x1x1 convs of channels-last CPU clips on the C kernel (MODEL.DEPTHWISE_IMPL kernel).

vov3d/runtime/csrc/depthwise_cpu.c computes the forward pass and both gradients of the two
depthwise convs of a D(2+1)D unit (VoV3D, X3D with X3D.UNIT d2plus1d): 1x3x3 with padding 1 and
stride 1 or 2, and 3x1x1 with padding 1 and stride 1, no bias. `DepthwiseConv3d` (conv_routes.py)
runs through `depthwise_kernel` when `kernel_applies`; everything else (another kernel shape, a bias,
NCTHW clips, autocast, other devices and dtypes, traces, no C compiler) takes the conv2d route.
Outputs and gradients match nn.Conv3d within float rounding (tests/test_depthwise_kernel.py).
"""

import torch

from vov3d.runtime import kernels

_CL = torch.channels_last_3d
SPATIAL = ((1, 3, 3), (0, 1, 1))  # (kernel, padding) of the spatial conv; stride (1, s, s), s = 1 or 2
TEMPORAL = ((3, 1, 1), (1, 0, 0))  # of the temporal conv; stride 1


def _lib():
    return kernels.load_library("depthwise_cpu")


def _check(status, what):
    if status:
        raise RuntimeError(f"the depthwise kernel ran out of memory in {what}")


def kernel_applies(conv, x):
    """True when the C kernel computes depthwise `conv` (an nn.Conv3d) on input `x`."""
    shape = (tuple(conv.kernel_size), tuple(conv.padding) if not isinstance(conv.padding, str) else None)
    stride = tuple(conv.stride)
    if shape == SPATIAL:
        if stride not in ((1, 1, 1), (1, 2, 2)):
            return False
    elif shape != TEMPORAL or stride != (1, 1, 1):
        return False
    return (
        conv.bias is None and tuple(conv.dilation) == (1, 1, 1) and conv.padding_mode == "zeros"
        and conv.groups == conv.in_channels == conv.out_channels
        and x.dim() == 5 and x.device.type == "cpu" and x.dtype == torch.float32
        and conv.weight.dtype == torch.float32 and x.numel() > 0
        and x.is_contiguous(memory_format=_CL)
        and not torch.is_autocast_enabled("cpu")
        and not torch.jit.is_tracing() and not torch.compiler.is_compiling()
        and _lib() is not None
    )


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


class _Spatial(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, stride):
        lib, ptr, threads = _lib(), kernels.pointer, torch.get_num_threads()
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
        x, weight = ctx.saved_tensors
        lib, ptr, threads = _lib(), kernels.pointer, torch.get_num_threads()
        n, c, t, hin, win = x.shape
        g = grad.contiguous(memory_format=_CL)
        h, w, s = g.shape[3], g.shape[4], ctx.stride
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
        lib, ptr, threads = _lib(), kernels.pointer, torch.get_num_threads()
        n, c, t, h, w = x.shape
        y = torch.empty_like(x, memory_format=_CL)
        taps = _taps(weight)
        _check(lib.dw_temporal(ptr(x), n, t, h * w, c, ptr(taps), ptr(y), threads), "the temporal forward")
        ctx.save_for_backward(x, weight)
        return y

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        lib, ptr, threads = _lib(), kernels.pointer, torch.get_num_threads()
        n, c, t, h, w = x.shape
        g = grad.contiguous(memory_format=_CL)
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
