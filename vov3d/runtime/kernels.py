"""Builds and loads the C kernels in vov3d/runtime/csrc/ (fused inference units, depthwise convs,
training BatchNorm).

The kernels are plain C (no PyTorch headers), compiled on first use with the system C compiler
(`$CC`, else `cc`) for the CPU at hand (-march=native), and called through ctypes on tensors'
memory. The shared library is cached per source, flags and CPU model in
`$VOV3D_KERNEL_CACHE` (default `~/.cache/vov3d/kernels`): keyed by the CPU so that a home directory
shared by different cluster nodes never hands a node code for instructions it lacks. It is written
to a temporary name and renamed, so processes building at the same time never load a half-written
file.

Without a compiler (or when the build fails) `load_library` returns None, logs why once, and
callers run the stock PyTorch path: the kernels are a speed lever, never a requirement.
"""

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading

import torch  # noqa: F401  (loaded first: the kernel then shares torch's OpenMP runtime)

logger = logging.getLogger(__name__)

CSRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "csrc")
ABI_VERSIONS = {"d2plus1d_cpu": 8, "depthwise_cpu": 3, "batchnorm_cpu": 4}  # what each library's <name>_abi_version() returns

_lock = threading.Lock()
_libraries = {}
_failures = {}

_p, _i, _l = ctypes.c_void_p, ctypes.c_int, ctypes.c_long
SIGNATURES = {
    "d2plus1d_cpu": {
        # x, ldx, N, T, Hin, Win, Cin, Wa, ba, Cp, s, W1, W2, b2, y, ysum, nthreads
        "d2plus1d_front": [_p, _l, _i, _i, _i, _i, _i, _p, _p, _i, _i, _p, _p, _p, _p, _p, _i],
        # y, N, TP, Cp, scale, Wc, bc, Coutp, Cout, res, ldr, out, ldo, relu, nthreads
        "d2plus1d_back": [_p, _i, _l, _i, _p, _p, _p, _i, _i, _p, _l, _p, _l, _i, _i],
        # x, ldx, N, T, Hin, Win, Cin, Wa, ba, Cp, s, W1, W2, b2, Wc, bc, Coutp, Cout, res, ldr, out, ldo, relu, nthreads
        "d2plus1d_unit": [_p, _l, _i, _i, _i, _i, _i, _p, _p, _i, _i, _p, _p, _p, _p, _p, _i, _i, _p, _l, _p, _l, _i, _i],
        # x, ldx, M, K, W, Np, bias, out, ldo, N, res, ldr, relu, nthreads
        "pointwise_rows": [_p, _l, _l, _i, _p, _i, _p, _p, _l, _i, _p, _l, _i, _i],
        # x, ldx, N, T, Hin, Win, params, table, buf, y, ysum, scale, res, ldr, relu, out, sc_w, sc_b, sc_stride,
        # nthreads
        "tosa_block": [_p, _l, _i, _i, _i, _i, _p, _p, _p, _p, _p, _p, _p, _l, _i, _p, _p, _p, _i, _i],
        # x, ldx, N, P, K, W, Np, bias, Nout, relu, pooled, nthreads
        "pointwise_pool": [_p, _l, _i, _l, _i, _p, _i, _p, _i, _i, _p, _i],
        # x, strides[5], N, Cin, T, Hin, Win, s, Wxy, bxy, Cp, Kt, Wt, bt, Cout, out, ldo, nthreads
        "x3d_stem": [_p, _p, _i, _i, _i, _i, _i, _i, _p, _p, _i, _i, _p, _p, _i, _p, _l, _i],
        # set (> 0: the L2 size in bytes the kernel cuts frames into bands for; 0: only read it)
        "d2plus1d_l2_bytes": [_l],
        "d2plus1d_lanes": [],
        "d2plus1d_cpu_abi_version": [],
    },
    "depthwise_cpu": {
        # x, F, Hin, Win, C, w, s, y, H, W, nthreads
        "dw_spatial": [_p, _l, _i, _i, _i, _p, _i, _p, _i, _i, _i],
        # g, F, H, W, C, w, dx, Hin, Win, nthreads (stride 2)
        "dw_spatial_input_grad": [_p, _l, _i, _i, _i, _p, _p, _i, _i, _i],
        # g, x, F, H, W, C, Hin, Win, s, dw, nthreads
        "dw_spatial_weight_grad": [_p, _p, _l, _i, _i, _i, _i, _i, _i, _p, _i],
        # x, N, T, P, C, w, y, nthreads
        "dw_temporal": [_p, _i, _i, _l, _i, _p, _p, _i],
        # g, x, N, T, P, C, dw, nthreads
        "dw_temporal_weight_grad": [_p, _p, _i, _i, _l, _i, _p, _i],
        # x, N, T, Hin, Win, C, ws, s, wt, y, H, W, relu_in, nthreads
        "dw_spatial_temporal": [_p, _i, _i, _i, _i, _i, _p, _i, _p, _p, _i, _i, _i, _i],
        # g, x, N, T, Hin, Win, C, ws, ws_rev, s, wt, wt_rev, dx, dws, dwt, H, W, relu_in, nthreads
        "dw_spatial_temporal_backward": [_p, _p, _i, _i, _i, _i, _i, _p, _p, _i, _p, _p, _p, _p, _p, _i, _i, _i, _i],
        "depthwise_cpu_abi_version": [],
    },
    "batchnorm_cpu": {
        # x, M, C, shift, sum, sumsq, nthreads
        "bn_stats": [_p, _l, _i, _p, _p, _p, _i],
        # g, x, M, C, mean, sum_g, sum_gx, nthreads
        "bn_grad_sums": [_p, _p, _l, _i, _p, _p, _p, _i],
        # u, cu, v, cv, M, C, a, b, c, out, nthreads
        "bn_apply": [_p, _p, _p, _p, _l, _i, _p, _p, _p, _p, _i],
        "batchnorm_cpu_abi_version": [],
    },
}


def cache_dir():
    root = os.environ.get("VOV3D_KERNEL_CACHE")
    if not root:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(base, "vov3d", "kernels")
    return root


def _cpu_signature():
    """The CPU model and feature flags (what -march=native compiles for)."""
    try:
        with open("/proc/cpuinfo") as f:
            lines = [ln for ln in f if ln.startswith(("model name", "flags"))]
        return "".join(sorted(set(lines)))
    except OSError:
        return platform.processor() or platform.machine()


def _compiler():
    cc = os.environ.get("CC") or "cc"
    return shutil.which(cc.split()[0]) and cc


def compile_flags(native=True, openmp=True):
    flags = ["-O3", "-shared", "-fPIC", "-std=gnu11"]
    return flags + (["-march=native"] if native else []) + (["-fopenmp"] if openmp else [])


# Tried in order: a compiler without OpenMP still gives a (single-threaded) kernel, one without
# -march=native (some non-x86 compilers) a portable one.
FLAG_CHOICES = [compile_flags(n, o) for n, o in ((True, True), (False, True), (True, False), (False, False))]


def _build(name, cc):
    """Returns the path of kernel `name` built with the first flag choice the compiler takes; a
    library cached from an earlier build is used as it is (no compiler call)."""
    src = os.path.join(CSRC, name + ".c")
    source = b""
    # the headers of csrc/ are part of every kernel's source: a changed header rebuilds them all
    for path in [src] + sorted(os.path.join(CSRC, h) for h in os.listdir(CSRC) if h.endswith(".h")):
        with open(path, "rb") as f:
            source += f.read()
    signature = _cpu_signature().encode() + sys.platform.encode()
    paths = []
    for flags in FLAG_CHOICES:
        key = hashlib.sha256(source + " ".join([cc] + flags).encode() + signature).hexdigest()[:16]
        paths.append(os.path.join(cache_dir(), f"{name}-{key}.so"))
    for path in paths:
        if os.path.exists(path):
            return path
    os.makedirs(cache_dir(), exist_ok=True)
    errors = []
    for flags, path in zip(FLAG_CHOICES, paths):
        fd, tmp = tempfile.mkstemp(suffix=".so", prefix=f".{name}-", dir=cache_dir())
        os.close(fd)
        cmd = cc.split() + flags + ["-o", tmp, src]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
            if proc.returncode == 0:
                os.replace(tmp, path)  # atomic: concurrent builders each rename a complete file
                return path
            errors.append(f"{' '.join(cmd)}: {(proc.stderr or proc.stdout).strip()[-1000:]}")
        except (OSError, subprocess.SubprocessError) as e:
            errors.append(f"{' '.join(cmd)}: {e}")
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    raise RuntimeError(f"building {src} failed: " + " | ".join(errors))


def load_library(name="d2plus1d_cpu"):
    """Returns the ctypes library of kernel `name` (built on first use), or None when it cannot be
    built here (no C compiler, build error, not a POSIX system); the reason is logged once and
    kept in `unavailable_reason(name)`."""
    with _lock:
        if name in _libraries:
            return _libraries[name]
        if name in _failures:
            return None
        try:
            if os.name != "posix":
                raise RuntimeError(f"CPU kernels are built on POSIX systems only (this is {os.name})")
            cc = _compiler()
            if not cc:
                raise RuntimeError(f"no C compiler found (tried {os.environ.get('CC') or 'cc'}; set CC)")
            lib = ctypes.CDLL(_build(name, cc))
            for fn, argtypes in SIGNATURES[name].items():
                getattr(lib, fn).argtypes = argtypes
                getattr(lib, fn).restype = ctypes.c_int  # 0 ok, 1 out of memory, 2 shape not taken; or the ABI version
            if getattr(lib, f"{name}_abi_version")() != ABI_VERSIONS[name]:
                raise RuntimeError("the cached kernel library has another ABI version")
        except (OSError, RuntimeError, AttributeError) as e:  # AttributeError: a symbol missing
            _failures[name] = str(e)
            logger.warning("CPU kernel %s unavailable, using stock PyTorch ops: %s", name, str(e).splitlines()[0])
            return None
        _libraries[name] = lib
        return lib


def unavailable_reason(name="d2plus1d_cpu"):
    """Why load_library(name) returned None, or None if it did not (or was not called)."""
    return _failures.get(name)


def pointer(t):
    """The address of tensor t's first element (None for None), for the ctypes calls."""
    return None if t is None else ctypes.c_void_p(t.data_ptr())
