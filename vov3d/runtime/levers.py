"""Speed levers and their keys: what each MODEL.* value asks for on the device at hand.

| lever                          | key                    | values (default first)                                   |
|--------------------------------|------------------------|----------------------------------------------------------|
| memory format                  | MODEL.MEMORY_FORMAT    | auto (measured) / channels_last_3d / contiguous          |
| depthwise 1xkxk / kx1x1 convs  | MODEL.DEPTHWISE_IMPL   | auto (measured) / conv2d / conv3d / kernel (C, CPU)      |
| 1x1x1 convs (channels-last)    | MODEL.POINTWISE_IMPL   | auto (measured) / conv / matmul                          |
| fused D(2+1)D units (C kernel) | MODEL.CPU_FUSED_UNITS  | auto (measured, CPU inference) / on / off                |
| training BN, narrow channels-  | MODEL.BATCHNORM_IMPL   | auto (measured, CPU channels-last training) / stock /    |
| last clips (C kernel)          |                        | kernel                                                   |
| freed heap kept between train  | MODEL.CPU_KEEP_HEAP    | auto (measured: page faults of a CPU train step) / on / |
| steps (glibc)                  |                        | off                                                      |
| autocast in inference          | MODEL.INFERENCE_AMP    | auto (measured on CUDA: off / bf16 / fp16; off on CPU) / |
|                                |                        | off / bfloat16 / float16                                 |
| cuDNN autotuner                | MODEL.CUDNN_BENCHMARK  | True (CUDA only; cuDNN measures its algorithms itself)   |
| BN folded into the conv        | MODEL.FOLD_BN          | True (inference copies only; always fewer ops)           |
| torch.compile                  | MODEL.COMPILE          | False (opt-in: compile time is paid every run)           |
| autocast in training           | TRAIN.MIXED_PRECISION  | the engine's keys (vov3d/engine/batch.py)                |

`auto` means measured (vov3d/runtime/autotune.py): the candidates are timed on the model's real
input shape at first use, their outputs checked equal, the fastest kept only when it beats stock ops
by a margin, and the decision cached on disk per machine, torch version, model and input shape.
An explicit value is used as it is and never measured.
"""

import contextlib

import torch

from vov3d.runtime.layout import MEMORY_FORMATS, memory_format_from_name

DEPTHWISE_IMPLS = ("auto", "conv3d", "conv2d", "kernel")
INFERENCE_AMPS = ("auto", "off", "bfloat16", "float16")
CPU_FUSED_UNITS = ("auto", "on", "off")
POINTWISE_IMPLS = ("auto", "conv", "matmul")
BATCHNORM_IMPLS = ("auto", "stock", "kernel")
CPU_KEEP_HEAP = ("auto", "on", "off")
_AMP_DTYPES = {"off": None, "bfloat16": torch.bfloat16, "float16": torch.float16}


def cfg_device_type(cfg):
    """Returns "cuda" when cfg runs on GPUs that exist, else "cpu"."""
    return "cuda" if cfg.NUM_GPUS > 0 and torch.cuda.is_available() else "cpu"


def _check(key, value, allowed):
    if value not in allowed:
        raise ValueError(f"{key} must be one of {allowed}, got {value!r}")
    return value


def memory_format_choices(cfg):
    """Returns the torch.memory_format candidates MODEL.MEMORY_FORMAT allows (stock first)."""
    choice = _check("MODEL.MEMORY_FORMAT", cfg.MODEL.MEMORY_FORMAT, MEMORY_FORMATS)
    if choice == "auto":
        return [torch.contiguous_format, torch.channels_last_3d]
    return [memory_format_from_name(choice)]


def depthwise_choices(cfg, device_type):
    """Returns the depthwise routes MODEL.DEPTHWISE_IMPL allows on `device_type` (stock conv3d first;
    "kernel": vov3d/runtime/depthwise.py, a CPU lever measured by auto on CPUs only)."""
    choice = _check("MODEL.DEPTHWISE_IMPL", cfg.MODEL.DEPTHWISE_IMPL, DEPTHWISE_IMPLS)
    if choice != "auto":
        return [choice]
    return ["conv3d", "conv2d", "kernel"] if device_type == "cpu" else ["conv3d", "conv2d"]


def pointwise_choices(cfg):
    """Returns how MODEL.POINTWISE_IMPL allows 1x1x1 convs of channels-last routes to run (stock conv
    first; "matmul": one matrix product each, vov3d/runtime/conv_routes.py: PointwiseConv3d)."""
    choice = _check("MODEL.POINTWISE_IMPL", cfg.MODEL.POINTWISE_IMPL, POINTWISE_IMPLS)
    return ["conv", "matmul"] if choice == "auto" else [choice]


def batchnorm_choices(cfg, device_type):
    """Returns how MODEL.BATCHNORM_IMPL allows training BatchNorms of channels-last clips to run on
    `device_type` (stock first; "kernel": vov3d/runtime/batchnorm.py, a CPU lever: ["stock"] elsewhere)."""
    choice = _check("MODEL.BATCHNORM_IMPL", cfg.MODEL.BATCHNORM_IMPL, BATCHNORM_IMPLS)
    if device_type != "cpu" or choice == "stock":
        return ["stock"]
    return ["stock", "kernel"] if choice == "auto" else ["kernel"]


def fused_units_choices(cfg, device_type):
    """Returns the fused-kernel settings MODEL.CPU_FUSED_UNITS allows on `device_type` (off first; a
    CPU lever that needs MODEL.FOLD_BN and no MODEL.COMPILE: [False] elsewhere)."""
    choice = _check("MODEL.CPU_FUSED_UNITS", cfg.MODEL.CPU_FUSED_UNITS, CPU_FUSED_UNITS)
    if device_type != "cpu" or not cfg.MODEL.FOLD_BN or cfg.MODEL.COMPILE or choice == "off":
        return [False]
    return [False, True] if choice == "auto" else [True]


def keep_heap_choice(cfg, device_type):
    """Returns what MODEL.CPU_KEEP_HEAP asks of training on `device_type`: "auto", "on" or "off"
    (vov3d/runtime/heap.py; a CPU lever: "off" elsewhere)."""
    choice = _check("MODEL.CPU_KEEP_HEAP", cfg.MODEL.CPU_KEEP_HEAP, CPU_KEEP_HEAP)
    return choice if device_type == "cpu" else "off"


def inference_amp_choices(cfg, device_type):
    """Returns the autocast dtypes (None = fp32) MODEL.INFERENCE_AMP allows on `device_type` (fp32 first).
    auto measures float16 and bfloat16 on CUDA; on CPU it stays fp32 (autocast there is opt-in)."""
    choice = _check("MODEL.INFERENCE_AMP", cfg.MODEL.INFERENCE_AMP, INFERENCE_AMPS)
    if choice == "auto":
        if device_type != "cuda":
            return [None]
        dtypes = [None, torch.float16]
        if torch.cuda.is_bf16_supported():
            dtypes.append(torch.bfloat16)
        return dtypes
    return [_AMP_DTYPES[choice]]


def validate(cfg):
    """Raises a one-line ValueError naming the first MODEL.* speed key with a value it does not take."""
    memory_format_choices(cfg)
    depthwise_choices(cfg, "cpu")
    pointwise_choices(cfg)
    batchnorm_choices(cfg, "cpu")
    fused_units_choices(cfg, "cpu")
    keep_heap_choice(cfg, "cpu")
    inference_amp_choices(cfg, "cpu")


def autocast(device_type, dtype):
    """Returns an autocast context for `dtype` on `device_type` (a null context for None)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device_type, dtype=dtype)


def apply_cudnn_benchmark(cfg):
    """Sets torch.backends.cudnn.benchmark from MODEL.CUDNN_BENCHMARK when running on CUDA."""
    if cfg_device_type(cfg) == "cuda":
        torch.backends.cudnn.benchmark = bool(cfg.MODEL.CUDNN_BENCHMARK)
