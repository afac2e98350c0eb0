"""Training BatchNorm of channels-last clips with few channels on the C kernel: MODEL.BATCHNORM_IMPL.

PyTorch's CPU BatchNorm vectorises along the channels of one position. On channels-last clips with
20 or 40 channels (VoV3D-M's res2 / res3 units) that leaves a scalar remainder at every position:
forward + backward measured 2-3x the time of the same BN on NCTHW tensors, and 15-20% of a
VoV3D-M train step (AMD EPYC, AVX-512, 2 threads, batch 2x16x112^2). vov3d/runtime/csrc/
batchnorm_cpu.c walks the clip as one flat array in blocks over which the channel pattern repeats,
so every load is a full vector.

`KernelBatchNorm3d` is an nn.BatchNorm3d retyped in place (parameters, buffers and state_dict
unchanged) whose training forward on fp32 CPU channels-last clips with at most NARROW channels
runs the kernel; everything else (eval mode, NCTHW, autocast, other devices, wider layers, no C
compiler) is the stock forward. Wider layers stay stock because PyTorch's kernel fills its vectors
there and the call overhead of this one made those layers slower. Same semantics as nn.BatchNorm3d
in training: batch statistics, biased variance to normalise, unbiased for the running variance,
momentum None as a cumulative average; outputs and gradients within float rounding
(tests/test_batchnorm_kernel.py).

Applied by the runtime's routes (vov3d/runtime/prepare.py): `auto` measures whole train steps with
and without it, like every other route lever.
"""

import torch
import torch.nn as nn

from vov3d.runtime import kernels

NARROW = 64  # the widest BN the kernel runs (its pattern block stays small; wider layers measured slower)
IMPLS = ("stock", "kernel")  # what set_batchnorm_impl takes (MODEL.BATCHNORM_IMPL without "auto")
_CL = torch.channels_last_3d


def _lib():
    return kernels.load_library("batchnorm_cpu")


def _check(status, what):
    if status:
        raise RuntimeError(f"the BatchNorm kernel could not run {what} (status {status})")


class _KernelBatchNormFunction(torch.autograd.Function):
    """Training BatchNorm of a channels-last clip: y = (x - mean) / sqrt(var + eps) * weight + bias."""

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, factor, eps):
        lib, ptr = _lib(), kernels.pointer
        c = x.shape[1]
        m = x.numel() // c
        threads = torch.get_num_threads()
        # Sums of x - shift and its square, shift = the clip's first position (one sample of each
        # channel, a few standard deviations from its mean at most), keep the variance exact where
        # sums of x and x^2, or of x minus a stale running mean, would cancel.
        shift = x.permute(0, 2, 3, 4, 1).reshape(-1, c)[0].clone()
        sums, squares = torch.empty(c, dtype=torch.float64), torch.empty(c, dtype=torch.float64)
        _check(lib.bn_stats(ptr(x), m, c, ptr(shift), ptr(sums), ptr(squares), threads), "its statistics")
        offset = sums / m
        var = (squares / m - offset * offset).clamp_min(0)
        mean = (shift.double() + offset).float()
        invstd = torch.rsqrt(var + eps).float()
        scale = (weight.detach() * invstd if weight is not None else invstd).contiguous()
        beta = (bias.detach() if bias is not None else torch.zeros_like(mean)).float().contiguous()
        y = torch.empty_like(x, memory_format=_CL)
        _check(lib.bn_apply(ptr(x), ptr(mean), None, None, m, c, ptr(scale), None, ptr(beta), ptr(y), threads),
               "its forward")
        if running_mean is not None:
            with torch.no_grad():
                running_mean.mul_(1 - factor).add_(mean, alpha=factor)
                running_var.mul_(1 - factor).add_(var.float() * (m / max(m - 1, 1)), alpha=factor)
        ctx.save_for_backward(x, mean, invstd, scale)
        ctx.affine = weight is not None
        return y

    @staticmethod
    def backward(ctx, grad):
        x, mean, invstd, scale = ctx.saved_tensors
        lib, ptr = _lib(), kernels.pointer
        g = grad.contiguous(memory_format=_CL)
        c = x.shape[1]
        m = x.numel() // c
        threads = torch.get_num_threads()
        sum_g, sum_gx = torch.empty(c, dtype=torch.float64), torch.empty(c, dtype=torch.float64)
        _check(lib.bn_grad_sums(ptr(g), ptr(x), m, c, ptr(mean), ptr(sum_g), ptr(sum_gx), threads), "its gradient sums")
        sum_g, sum_gx = sum_g.float(), sum_gx.float()
        # dx = scale * (g - mean(g) - xhat * mean(g * xhat)) = g * scale + (x - mean) * b + c per channel
        b = (-scale * invstd * invstd * sum_gx / m).contiguous()
        c_term = (-scale * sum_g / m).contiguous()
        dx = torch.empty_like(x, memory_format=_CL)
        _check(lib.bn_apply(ptr(g), None, ptr(x), ptr(mean), m, c, ptr(scale), ptr(b), ptr(c_term), ptr(dx), threads),
               "its backward")
        grad_weight = sum_gx * invstd if ctx.affine and ctx.needs_input_grad[1] else None
        grad_bias = sum_g if ctx.affine and ctx.needs_input_grad[2] else None
        return dx, grad_weight, grad_bias, None, None, None, None


class KernelBatchNorm3d(nn.BatchNorm3d):
    """An nn.BatchNorm3d whose training forward on narrow channels-last CPU clips runs the C kernel.

    Never constructed: `set_batchnorm_impl` retypes existing nn.BatchNorm3d modules in place.
    """

    def _kernel_applies(self, x):
        return (
            self.training and self.track_running_stats and self.num_features <= NARROW and x.dim() == 5
            and x.device.type == "cpu" and x.dtype == torch.float32 and x.numel() > x.shape[1]
            and x.is_contiguous(memory_format=_CL) and not torch.is_autocast_enabled("cpu")
            and not torch.jit.is_tracing() and not torch.jit.is_scripting() and not torch.compiler.is_compiling()
            and (self.weight is None or self.weight.dtype == torch.float32) and _lib() is not None
        )

    def forward(self, x):
        if not self._kernel_applies(x):
            return super().forward(x)
        self._check_input_dim(x)
        self.num_batches_tracked.add_(1)
        # As nn.BatchNorm: momentum None is a cumulative moving average.
        factor = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
        return _KernelBatchNormFunction.apply(x, self.weight, self.bias, self.running_mean, self.running_var,
                                              factor, self.eps)


def has_narrow_batchnorms(model):
    """True when `model` has BatchNorm3d layers the kernel would run (at most NARROW channels)."""
    return any(type(m) in (nn.BatchNorm3d, KernelBatchNorm3d) and m.num_features <= NARROW for m in model.modules())


def set_batchnorm_impl(model, impl):
    """Runs every nn.BatchNorm3d of `model` as `impl` ("kernel": KernelBatchNorm3d, "stock"), in place;
    returns how many are KernelBatchNorm3d. Parameters, buffers and state_dict are untouched."""
    if impl not in IMPLS:
        raise ValueError(f"batchnorm impl must be one of {IMPLS}, got {impl!r}")
    count = 0
    for m in model.modules():
        if type(m) in (nn.BatchNorm3d, KernelBatchNorm3d):
            m.__class__ = KernelBatchNorm3d if impl == "kernel" else nn.BatchNorm3d
            count += impl == "kernel"
    return count
