"""Fused CPU inference of D(2+1)D bottlenecks: the `MODEL.CPU_FUSED_UNITS` speed lever.

VoV3D's unit (and X3D's bottleneck with X3D.UNIT d2plus1d) is a chain of narrow ops: 1x1x1 conv,
ReLU, depthwise 1x3x3, depthwise 3x1x1, [SE], Swish, 1x1x1 conv, [+ input, ReLU]. On a CPU each op
is a pass over a tensor too large for the cache, so the unit costs about ten memory passes while
its arithmetic is small; VoV3D-M moves 1.5x the activations of X3D-M for the same clip. The
kernel in vov3d/runtime/csrc/d2plus1d_cpu.c does the unit in two passes (see there), and a T-OSA
block built of such units writes every unit straight into its concatenation buffer, so the
`torch.cat` copy goes too; the block's aggregation conv runs on the kernel's GEMM as well, and the
residual block around a fused block (shortcut + ReLU) joins that GEMM's epilogue.

Blocks say what they are made of (`fusable_parts()`, `aggregation_parts()`, `residual_parts()`), so
this file needs no model family. It runs on BN-folded inference copies only
(vov3d.runtime.prepare_for_inference, where `auto` keeps it only when it measures faster): each block
is wrapped, never rewritten, and falls back to its own forward whenever the kernel does not apply
(autograd, another dtype or device, a layout other than channels-last rows, no C compiler).
Outputs stay within 1e-5 of the stock path (tests/test_fused_units.py).
"""

import logging

import torch
import torch.nn as nn
import torch.nn.functional as F

from vov3d.models.layers import SqueezeExcitation, Swish
from vov3d.runtime import kernels
from vov3d.runtime.conv_routes import is_pointwise
from vov3d.runtime.fold_bn import set_submodule

logger = logging.getLogger(__name__)

def lanes():
    """The kernel's channel vector width (16 floats with AVX-512, 8 with AVX2, 4 otherwise): packed
    weights and its internal buffers pad channels to a multiple of it."""
    lib = kernels.load_library("d2plus1d_cpu")
    return lib.d2plus1d_lanes() if lib is not None else 16


def _padded(n):
    width = lanes()
    return -(-n // width) * width


def pack_pointwise(conv, rows, cols):
    """Returns a 1x1x1 conv as the kernel's GEMM reads it: the weight transposed to (inputs, outputs)
    and its bias, zero-padded to rows x cols and cols."""
    return _matrix(conv, rows, cols), _bias(conv, cols)


def _matrix(conv, rows, cols):  # weight (out, ...) -> (inputs or taps, out), zero-padded to rows x cols
    w = conv.weight.detach().float().reshape(conv.out_channels, -1).t()
    return F.pad(w, (0, cols - w.shape[1], 0, rows - w.shape[0])).contiguous()


def _bias(conv, width):
    if conv.bias is None:
        return torch.zeros(width)
    return F.pad(conv.bias.detach().float(), (0, width - conv.out_channels))


def _rows(t):
    """Returns `t` (N x C x T x H x W) as channels-last rows and their row stride."""
    ld = _row_stride(t)
    if ld is None:
        t = t.contiguous(memory_format=torch.channels_last_3d)
        ld = t.shape[1]
    return t, ld


def _is_depthwise(conv, kernel, padding, temporal_stride=1):
    return (
        isinstance(conv, nn.Conv3d) and conv.groups == conv.in_channels == conv.out_channels
        and conv.kernel_size == kernel and conv.padding == padding and conv.dilation == (1, 1, 1)
        and conv.padding_mode == "zeros" and conv.stride[0] == temporal_stride
    )


def d2plus1d_parts(block, folded=True):
    """Returns the pieces of a BN-folded D(2+1)D bottleneck as a dict, or None when `block` is not
    one the kernel computes exactly (another middle, BatchNorms left, other kernel sizes, ...).
    `folded=False` accepts BatchNorms still there (would the block be fused once folded?)."""
    describe = getattr(block, "fusable_parts", None)
    if not callable(describe):
        return None
    p = describe()
    if "middle" not in p:  # another kind of block (a stem)
        return None
    a, c, act, out_act, se = p["a"], p["c"], p["act"], p["out_act"], p["se"]
    if len(p["middle"]) != 2 or (out_act is not None and type(out_act) is not nn.ReLU):
        return None
    b1, b2 = (getattr(block, name) for name in p["middle"])
    inner = a.out_channels if isinstance(a, nn.Conv3d) else -1
    ok = (
        (not folded or all(isinstance(m, nn.Identity) for m in (p["a_bn"], p["mid_bn"], p["c_bn"])))
        and type(p["a_act"]) is nn.ReLU and type(act) is Swish
        and is_pointwise(a) and is_pointwise(c) and c.in_channels == inner
        and _is_depthwise(b1, (1, 3, 3), (0, 1, 1)) and b1.in_channels == inner and b1.bias is None
        and b1.stride[1] == b1.stride[2]
        and _is_depthwise(b2, (3, 1, 1), (1, 0, 0)) and b2.in_channels == inner and b2.stride == (1, 1, 1)
        and (se is None or type(se) is SqueezeExcitation)
    )
    if not ok:
        return None
    return {"a": a, "b1": b1, "b2": b2, "c": c, "se": se, "residual": p["residual"], "relu": out_act is not None,
            "stride": b1.stride[1]}


def _row_stride(t):
    """Returns the row stride of a 5-D N x C x T x H x W tensor whose elements sit as channels-last
    rows (channels contiguous; rows at one stride, as in a channels_last_3d tensor or a channel
    slice of one), else None."""
    n, c, frames, h, w = t.shape
    if c > 1 and t.stride(1) != 1:
        return None
    ld = None
    for dim, rows_inside in ((4, 1), (3, w), (2, h * w), (0, frames * h * w)):
        if t.shape[dim] == 1:
            continue
        if ld is None:
            if t.stride(dim) % rows_inside:
                return None
            ld = t.stride(dim) // rows_inside
        if t.stride(dim) != ld * rows_inside:
            return None
    ld = c if ld is None else ld
    return ld if ld >= c else None


class _KernelModule(nn.Module):
    """A module computed by the fused CPU kernel: its library, and the input checks every such
    module makes."""

    @property
    def lib(self):
        # Looked up, not stored: a ctypes library cannot be deep-copied or pickled with the module.
        return kernels.load_library("d2plus1d_cpu")

    @staticmethod
    def takes(x, channels, weight, rows=True):
        """True when the kernel computes `x`: fp32 CPU clips of `channels` channels (in channels-last rows
        when `rows`), no autograd, not being traced or compiled, with `weight` (a packed buffer) on
        the CPU too."""
        return (
            # A trace or a compiled graph cannot record a ctypes call: they get the stock ops.
            not torch.jit.is_tracing() and not torch.compiler.is_compiling()
            and x.dim() == 5 and x.device.type == "cpu" and x.dtype == torch.float32 and x.shape[1] == channels
            and x.numel() > 0 and not (torch.is_grad_enabled() and x.requires_grad)
            and weight.device.type == "cpu" and (not rows or _row_stride(x) is not None)
        )


class FusedD2plus1d(_KernelModule):
    """Wraps a BN-folded D(2+1)D bottleneck (`block`) and runs it with the fused CPU kernel.

    The weights are packed once (transposed, channels padded to 16) from the block's folded convs;
    the block stays as the fallback and for SE's gate.
    """

    def __init__(self, block, parts):
        super().__init__()
        self.block = block
        a, b1, b2, c = parts["a"], parts["b1"], parts["b2"], parts["c"]
        self.cin, self.inner, self.cout = a.in_channels, a.out_channels, c.out_channels
        self.stride, self.residual, self.relu = parts["stride"], parts["residual"], parts["relu"]
        self.se = parts["se"]
        cp, coutp = _padded(self.inner), _padded(self.cout)
        self.cp, self.coutp = cp, coutp
        packed = {"wa": _matrix(a, self.cin, cp), "ba": _bias(a, cp), "w1": _matrix(b1, 9, cp),
                  "w2": _matrix(b2, 3, cp), "b2": _bias(b2, cp), "wc": _matrix(c, cp, coutp), "bc": _bias(c, coutp)}
        for name, value in packed.items():
            self.register_buffer(name, value, persistent=False)

    def out_size(self, h, w):
        return (h - 1) // self.stride + 1, (w - 1) // self.stride + 1

    def applies(self, x):
        """True when the kernel computes this input: fp32 CPU clips in channels-last rows, no autograd,
        not being traced or compiled."""
        return self.takes(x, self.cin, self.wa)

    def forward(self, x):
        if not self.applies(x):
            return self.block(x)
        return self.compute(x)

    def compute(self, x, out=None, residual=None, relu=False):
        """Runs the unit on `x`; writes into `out` (N x cout x T x H x W, channels-last rows, e.g. a
        channel slice of a concatenation buffer) when given, else into a new tensor; returns it.
        `residual` / `relu`: the enclosing residual block's shortcut and ReLU (FusedResBlock), for a
        unit that has none of its own."""
        n, _, frames, hin, win = x.shape
        h, w = self.out_size(hin, win)
        threads = torch.get_num_threads()
        ptr = kernels.pointer
        ldx = _row_stride(x)
        if out is None:
            out = torch.empty((n, self.cout, frames, h, w), memory_format=torch.channels_last_3d)
        ldo = _row_stride(out)
        if ldo is None or tuple(out.shape) != (n, self.cout, frames, h, w):
            raise ValueError(f"output buffer of shape {tuple(out.shape)} is not channels-last rows of "
                             f"{(n, self.cout, frames, h, w)}")
        if residual is not None:
            res, ldr = _rows(residual)
        else:
            res, ldr = (x, ldx) if self.residual else (None, 0)
        front = (ptr(x), ldx, n, frames, hin, win, self.cin, ptr(self.wa), ptr(self.ba), self.cp, self.stride,
                 ptr(self.w1), ptr(self.w2), ptr(self.b2))
        back = (ptr(self.wc), ptr(self.bc), self.coutp, self.cout, ptr(res), ldr, ptr(out), ldo, int(self.relu or relu))
        if self.se is None:  # one pass: the unit's intermediate never leaves the cache
            status = self.lib.d2plus1d_unit(*front, *back, threads)
        else:  # SE needs the clip mean of the intermediate before the back half
            y, ysum = torch.empty((n, frames, h, w, self.cp)), torch.empty((n, self.cp))
            status = self.lib.d2plus1d_front(*front, ptr(y), ptr(ysum), threads)
            if not status:
                gate = self.se.gate(ysum[:, :self.inner] / float(frames * h * w))
                scale = F.pad(gate, (0, self.cp - self.inner)).float().contiguous()
                status = self.lib.d2plus1d_back(ptr(y), n, frames * h * w, self.cp, ptr(scale), *back, threads)
        if status:
            raise MemoryError("the fused D(2+1)D kernel could not allocate its per-thread buffers")
        return out


class FusedTOSA(_KernelModule):
    """Wraps a T-OSA block whose units are all FusedD2plus1d. With its aggregation conv BN-folded the
    whole block is one kernel call (tosa_block: every unit writes into the block's channels-last
    concatenation buffer, SE gates included, then the aggregation conv reads it); otherwise the units
    write into that buffer one by one and the aggregation runs as stock ops."""

    def __init__(self, block):
        super().__init__()
        self.block = block
        parts = block.aggregation_parts()
        self.packed = is_pointwise(parts["conv"]) and isinstance(parts["bn"], nn.Identity)
        if self.packed:
            params, table = self._pack(parts)
            self.register_buffer("params", params, persistent=False)
            self.register_buffer("table", table, persistent=False)

    @staticmethod
    def _pack(parts):
        """Returns the block's weights as one float array and the int64 table of their offsets and
        shapes the kernel reads (see tosa_block in csrc/d2plus1d_cpu.c for the fields)."""
        chunks, size = [], 0

        def add(t):
            nonlocal size
            start = size
            chunks.append(t.detach().float().reshape(-1))
            size += chunks[-1].numel()
            if size % 16:  # every array starts on a 64-byte boundary
                chunks.append(torch.zeros(16 - size % 16))
                size += chunks[-1].numel()
            return start

        conv, units = parts["conv"], parts["units"]
        first = units[0]
        coutp = _padded(conv.out_channels)
        w, b = pack_pointwise(conv, conv.in_channels, coutp)
        table = [len(units), int(parts["keep_input"]), conv.in_channels, first.cin, conv.out_channels, coutp,
                 add(w), add(b)]
        for u in units:
            se = u.se
            table += [u.cin, u.inner, u.cp, u.cout, u.coutp, u.stride, int(u.residual), int(u.relu),
                      se.fc1.out_channels if se is not None else 0,
                      add(u.wa), add(u.ba), add(u.w1), add(u.w2), add(u.b2), add(u.wc), add(u.bc)]
            if se is not None:
                table += [add(se.fc1.weight.flatten(1)), add(se.fc1.bias), add(se.fc2.weight.flatten(1)),
                          add(se.fc2.bias)]
            else:
                table += [0, 0, 0, 0]
        return torch.cat(chunks), torch.tensor(table, dtype=torch.int64)

    def applies(self, x):
        return self.block.aggregation_parts()["units"][0].applies(x)

    def forward(self, x):
        if not self.applies(x):
            return self.block(x)
        return self.compute(x)

    def compute(self, x, residual=None, relu=False, shortcut=None):
        """Runs the block on `x` (the kernel applies: see FusedD2plus1d.applies); `residual` / `relu`:
        the enclosing residual block's shortcut and ReLU, joined to the aggregation conv. `shortcut`:
        that block's shortcut conv instead of its output, (weight, bias, stride) packed as
        pack_pointwise does, computed by the kernel (packed blocks only)."""
        parts = self.block.aggregation_parts()
        layers = parts["units"]
        n, c, frames, hin, win = x.shape
        h, w = layers[0].out_size(hin, win)
        buf = torch.empty((n, parts["conv"].in_channels, frames, h, w), memory_format=torch.channels_last_3d)
        if not self.packed:
            return self._unit_by_unit(x, buf, parts, residual, relu)
        if shortcut is not None and residual is not None:
            raise ValueError("pass the shortcut's output (residual) or its conv (shortcut), not both")
        cp = max(u.cp for u in layers)
        y, ysum, scale = torch.empty(n * frames * h * w * cp), torch.empty(n * cp), torch.empty(n * cp)
        out = torch.empty((n, parts["conv"].out_channels, frames, h, w), memory_format=torch.channels_last_3d)
        res, ldr = _rows(residual) if residual is not None else (None, 0)
        ptr = kernels.pointer
        sc_w, sc_b, sc_stride = shortcut if shortcut is not None else (None, None, 1)
        status = self.lib.tosa_block(ptr(x), _row_stride(x), n, frames, hin, win, ptr(self.params), ptr(self.table),
                                     ptr(buf), ptr(y), ptr(ysum), ptr(scale), ptr(res), ldr, int(relu), ptr(out),
                                     ptr(sc_w), ptr(sc_b), sc_stride, torch.get_num_threads())
        if status:
            raise MemoryError("the fused D(2+1)D kernel could not allocate its per-thread buffers")
        return out

    @staticmethod
    def _unit_by_unit(x, buf, parts, residual, relu):
        offset = 0
        if parts["keep_input"]:
            buf[:, :x.shape[1]].copy_(x)
            offset = x.shape[1]
        inp = x
        for layer in parts["units"]:
            out = buf[:, offset:offset + layer.cout]
            layer.compute(inp, out)
            inp, offset = out, offset + layer.cout
        y = parts["bn"](parts["conv"](buf))
        if residual is not None:
            y = y + residual
        return torch.relu_(y) if relu else y


class _Wrapper(_KernelModule):
    """A module wrapping `self.inner` (a stem, a head) that answers for the attributes it does not
    have itself: `model.head.projection`, `model.head.forward_head(...)` keep working on a model
    whose head was wrapped (those run the wrapped module's own ops)."""

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "inner":
                raise
            return getattr(self.inner, name)


def stem_parts(stem, folded=True):
    """Returns the pieces of a BN-folded X3D stem (`fusable_parts()`: 3x3 spatial conv with padding 1,
    depthwise temporal conv of odd length, ReLU) as a dict, or None when `stem` is not one the kernel
    computes exactly. `folded=False` accepts the BatchNorm still there."""
    describe = getattr(stem, "fusable_parts", None)
    if not callable(describe):
        return None
    p = describe()
    spatial, temporal = p.get("spatial"), p.get("temporal")
    if not isinstance(spatial, nn.Conv3d) or not isinstance(temporal, nn.Conv3d):
        return None
    kt = temporal.kernel_size[0]
    ok = (
        (not folded or isinstance(p["bn"], nn.Identity)) and type(p["act"]) is nn.ReLU
        and spatial.kernel_size == (1, 3, 3) and spatial.padding == (0, 1, 1) and spatial.groups == 1
        and spatial.dilation == (1, 1, 1) and spatial.padding_mode == "zeros" and spatial.stride[0] == 1
        and spatial.stride[1] == spatial.stride[2]
        and kt % 2 == 1 and _is_depthwise(temporal, (kt, 1, 1), (kt // 2, 0, 0))
        and temporal.in_channels == spatial.out_channels and temporal.stride == (1, 1, 1)
    )
    if not ok:
        return None
    return {"spatial": spatial, "temporal": temporal, "stride": spatial.stride[1]}


class FusedStem(_Wrapper):
    """Wraps a BN-folded X3D stem (`stem`) and runs it with the fused CPU kernel (x3d_stem in
    csrc/d2plus1d_cpu.c): the input is read once, in any layout (no channels-last copy first), and
    the channels-last output written once. The stem stays as the fallback."""

    def __init__(self, stem, parts):
        super().__init__()
        self.inner = stem
        spatial, temporal = parts["spatial"], parts["temporal"]
        self.cin, self.cout, self.stride = spatial.in_channels, spatial.out_channels, parts["stride"]
        self.taps = temporal.kernel_size[0]
        cp = _padded(self.cout)
        self.cp = cp
        packed = {"wxy": _matrix(spatial, self.cin * 9, cp), "bxy": _bias(spatial, cp),
                  "wt": _matrix(temporal, self.taps, cp), "bt": _bias(temporal, cp)}
        for name, value in packed.items():
            self.register_buffer(name, value, persistent=False)

    def applies(self, x):
        return self.takes(x, self.cin, self.wxy, rows=False)  # any layout

    def forward(self, x):
        if not self.applies(x):
            return self.inner(x)
        n, _, frames, hin, win = x.shape
        h, w = (hin - 1) // self.stride + 1, (win - 1) // self.stride + 1
        out = torch.empty((n, self.cout, frames, h, w), memory_format=torch.channels_last_3d)
        strides = torch.tensor(x.stride(), dtype=torch.int64)
        ptr = kernels.pointer
        status = self.lib.x3d_stem(ptr(x), ptr(strides), n, self.cin, frames, hin, win, self.stride, ptr(self.wxy),
                                   ptr(self.bxy), self.cp, self.taps, ptr(self.wt), ptr(self.bt), self.cout, ptr(out),
                                   self.cout, torch.get_num_threads())
        if status:
            raise MemoryError("the fused stem kernel could not allocate its per-thread buffers")
        return out


def head_parts(head, folded=True):
    """Returns the pieces of a head whose pooled map the kernel computes (`pooling_parts()`: a BN-folded
    1x1x1 conv, ReLU, average pool) as a dict, or None. `folded=False` accepts the BatchNorm still there."""
    describe = getattr(head, "pooling_parts", None)
    if not callable(describe):
        return None
    p = describe()
    conv, pool = p["conv"], p["pool"]
    ok = (
        is_pointwise(conv) and (not folded or isinstance(p["bn"], nn.Identity)) and type(p["act"]) is nn.ReLU
        and (
            (type(pool) is nn.AdaptiveAvgPool3d and pool.output_size in (1, (1, 1, 1)))
            or (type(pool) is nn.AvgPool3d and pool.stride in (1, (1, 1, 1)) and pool.padding in (0, (0, 0, 0))
                and not pool.ceil_mode and pool.divisor_override is None)
        )
    )
    return {"conv": conv, "pool": pool} if ok else None


class FusedHead(_Wrapper):
    """Wraps a head (X3D's, VoV3D's) whose pooled map is the mean over the whole map of ReLU(1x1x1 conv)
    (`pooling_parts()`): the kernel computes that pooled map without writing the conv's output
    (pointwise_pool), and the head goes on from it (`head(pooled, pooled=True)`). The head stays as
    `inner`, and answers for what the wrapper does not have (its submodules, forward_head). A pool that leaves
    several positions (a test crop larger than the training crop) runs the head's own ops."""

    def __init__(self, head, parts):
        super().__init__()
        self.inner = head
        conv = parts["conv"]
        self.cin, self.cout = conv.in_channels, conv.out_channels
        pool = parts["pool"]  # None: adaptive (global at any size); else the kernel that must cover the map
        k = None if isinstance(pool, nn.AdaptiveAvgPool3d) else pool.kernel_size
        self.pool_kernel = k if k is None or isinstance(k, tuple) else (k, k, k)
        w, b = pack_pointwise(conv, self.cin, _padded(self.cout))
        self.register_buffer("w", w, persistent=False)
        self.register_buffer("b", b, persistent=False)

    def _global(self, x):
        return self.pool_kernel is None or tuple(self.pool_kernel) == tuple(x.shape[2:])

    def applies(self, x):
        return self.takes(x, self.cin, self.w) and self._global(x)

    def forward(self, x):
        if not self.applies(x):
            return self.inner(x)
        n = x.shape[0]
        pooled = torch.empty((n, self.cout))
        ptr = kernels.pointer
        positions = x.shape[2] * x.shape[3] * x.shape[4]
        status = self.lib.pointwise_pool(ptr(x), _row_stride(x), n, positions, self.cin, ptr(self.w),
                                         self.w.shape[1], ptr(self.b), self.cout, 1, ptr(pooled),
                                         torch.get_num_threads())
        if status:
            raise MemoryError("the fused head kernel could not allocate its buffers")
        return self.inner(pooled.view(n, self.cout, 1, 1, 1), pooled=True)


def _shortcut_conv(shortcut, branch):
    """Returns (conv, stride) when `shortcut` (a residual block's shortcut modules) is a BN-folded
    1x1x1 conv the T-OSA kernel computes itself: from the block input to the block output, at the
    block's spatial stride (VoV3D's branch1 where a stage starts); else None."""
    if not (isinstance(branch, FusedTOSA) and branch.packed) or len(shortcut) != 2:
        return None
    conv, bn = shortcut
    parts = branch.block.aggregation_parts()
    first, agg = parts["units"][0], parts["conv"]
    ok = (
        isinstance(conv, nn.Conv3d) and isinstance(bn, nn.Identity) and tuple(conv.kernel_size) == (1, 1, 1)
        and conv.groups == 1 and tuple(conv.padding) == (0, 0, 0) and tuple(conv.dilation) == (1, 1, 1)
        and tuple(conv.stride) == (1, first.stride, first.stride)
        and conv.in_channels == first.cin and conv.out_channels == agg.out_channels
    )
    return (conv, first.stride) if ok else None


class FusedResBlock(nn.Module):
    """Wraps a residual block (`residual_parts()`: ReLU(shortcut(x) + branch2(x))) whose branch2 is
    fused (FusedTOSA, or a FusedD2plus1d without a residual of its own, as in X3D with d2plus1d
    units): the shortcut is added and the ReLU applied in the kernel's last GEMM, not as two more
    passes over the block output. A 1x1x1 conv shortcut next to a T-OSA block runs in the same
    kernel call (no separate conv and output tensor)."""

    def __init__(self, block):
        super().__init__()
        self.block = block
        parts = block.residual_parts()
        found = _shortcut_conv(parts["shortcut"], parts["branch2"])
        self.shortcut_stride = found[1] if found else None
        if found:
            conv = found[0]
            w, b = pack_pointwise(conv, conv.in_channels, _padded(conv.out_channels))
            self.register_buffer("shortcut_w", w, persistent=False)
            self.register_buffer("shortcut_b", b, persistent=False)

    def forward(self, x):
        parts = self.block.residual_parts()
        branch = parts["branch2"]
        if not branch.applies(x):
            return self.block(x)
        if self.shortcut_stride is not None and branch.packed and self.shortcut_w.device.type == "cpu":
            return branch.compute(x, relu=True, shortcut=(self.shortcut_w, self.shortcut_b, self.shortcut_stride))
        shortcut = x
        for m in parts["shortcut"]:
            shortcut = m(shortcut)
        return branch.compute(x, residual=shortcut, relu=True)


def _fusable_residual_block(m):
    describe = getattr(m, "residual_parts", None)
    if not callable(describe):
        return False
    parts = describe()
    branch = parts["branch2"]
    own = isinstance(branch, FusedD2plus1d) and (branch.residual or branch.relu)
    return (isinstance(branch, (FusedTOSA, FusedD2plus1d)) and not own and type(parts["out_act"]) is nn.ReLU)


def has_fusable_units(model):
    """True when `model` has D(2+1)D bottlenecks the kernel would run once its BatchNorms are folded."""
    return any(d2plus1d_parts(m, folded=False) is not None for m in model.modules())


def fuse_d2plus1d_blocks(model):
    """Wraps, in place, every BN-folded D(2+1)D bottleneck of `model` in FusedD2plus1d and every
    aggregating block (`aggregation_parts()`, T-OSA) made only of them in FusedTOSA. Returns the
    number of bottlenecks wrapped (0 when the kernel cannot be built here). For inference copies
    only (vov3d.runtime.prepare_for_inference)."""
    if kernels.load_library("d2plus1d_cpu") is None:
        return 0
    # Blocks already wrapped (a second call) are left as they are.
    wrapped = tuple(n + "." for n, m in model.named_modules()
                    if isinstance(m, (FusedD2plus1d, FusedTOSA, FusedResBlock, FusedStem, FusedHead)))
    found = [(name, m, d2plus1d_parts(m)) for name, m in model.named_modules() if not name.startswith(wrapped)]
    count = 0
    for name, m, parts in found:
        if parts is not None and name:
            set_submodule(model, name, FusedD2plus1d(m, parts))
            count += 1
    for name, m in list(model.named_modules()):
        if name.startswith(wrapped):
            continue
        describe = getattr(m, "aggregation_parts", None)
        if callable(describe) and name and all(isinstance(u, FusedD2plus1d) for u in describe()["units"]):
            set_submodule(model, name, FusedTOSA(m))
    for name, m in list(model.named_modules()):
        if name and not name.startswith(wrapped) and _fusable_residual_block(m):
            set_submodule(model, name, FusedResBlock(m))
    if count:  # the stem and the head of a model whose units run on the kernel
        for name, m in list(model.named_modules()):
            if not name or name.startswith(wrapped):
                continue
            parts = stem_parts(m)
            if parts is not None:
                set_submodule(model, name, FusedStem(m, parts))
            parts = head_parts(m)
            if parts is not None:
                set_submodule(model, name, FusedHead(m, parts))
    logger.debug("Fused %d D(2+1)D bottlenecks for CPU inference", count)
    return count
