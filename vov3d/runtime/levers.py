"""Speed levers that keep one model implementation: every lever is a switch, never a model copy.

| lever                          | key                         | default (measured by tools/benchmark.py --mode model) |
|--------------------------------|-----------------------------|--------------------------------------------------------|
| memory format                  | MODEL.MEMORY_FORMAT         | auto: channels_last_3d (CPU and CUDA); on CPU every    |
|                                |                             | Conv3d then stays channels-last (ChannelsLastConv3d)   |
| depthwise 1xkxk / kx1x1 convs  | MODEL.DEPTHWISE_IMPL        | auto: conv2d on CPU, conv3d (stock) on CUDA            |
| BN folded into the conv        | MODEL.FOLD_BN               | inference / export only (`fold_batchnorm`)             |
| torch.compile                  | MODEL.COMPILE               | off (opt-in: compile time is paid every run)           |
| cuDNN autotuner                | MODEL.CUDNN_BENCHMARK       | on (CUDA only)                                         |
| autocast in inference          | MODEL.INFERENCE_AMP         | auto: float16 on CUDA, off on CPU                      |
| fused D(2+1)D units (C kernel) | MODEL.CPU_FUSED_UNITS       | auto: on for CPU inference (vov3d/models/fused_units.py) |
| autocast in training           | TRAIN.MIXED_PRECISION(_DTYPE) | the engine's keys (vov3d/engine/batch.py)            |

The depthwise lever runs a depthwise Conv3d whose kernel is 1 x kh x kw (spatial) as a depthwise
Conv2d over the N*T frames, and one whose kernel is kt x 1 x 1 (temporal) as a depthwise kt x 1
Conv2d over (T, H*W). The Conv2d weights are views of the Conv3d parameters, so state_dict names,
shapes and values are unchanged and gradients land in the Conv3d parameters. With channels_last_3d
activations both reshapes are views (no copy). Depthwise Conv3d backward is slow on CPU
(pytorch/pytorch#37406, #110885), depthwise Conv2d is well optimised. Full 3x3x3 depthwise kernels
(X3D) stay Conv3d: splitting them into shifted Conv2d taps measured slower.

Every fp32 lever keeps outputs within 1e-5 of the plain path (tests/test_speed.py).
"""

import collections
import contextlib
import copy
import logging

import torch
import torch.nn as nn
import torch.nn.functional as F

logger = logging.getLogger(__name__)

MEMORY_FORMATS = ("auto", "channels_last_3d", "contiguous")
DEPTHWISE_IMPLS = ("auto", "conv3d", "conv2d")
INFERENCE_AMPS = ("auto", "off", "bfloat16", "float16")
CPU_FUSED_UNITS = ("auto", "on", "off")


# ----------------------------------------------------------------------------------------------- #
# Device and key resolution
# ----------------------------------------------------------------------------------------------- #


def cfg_device_type(cfg):
    """Returns "cuda" when cfg runs on GPUs that exist, else "cpu"."""
    return "cuda" if cfg.NUM_GPUS > 0 and torch.cuda.is_available() else "cpu"


def _model_device_type(model, cfg=None):
    for p in model.parameters():
        return p.device.type
    return cfg_device_type(cfg) if cfg is not None else "cpu"


def resolve_memory_format(cfg):
    """Returns the torch.memory_format that MODEL.MEMORY_FORMAT selects."""
    choice = cfg.MODEL.MEMORY_FORMAT
    if choice in ("auto", "channels_last_3d"):
        return torch.channels_last_3d
    if choice == "contiguous":
        return torch.contiguous_format
    raise ValueError(f"MODEL.MEMORY_FORMAT must be auto, channels_last_3d or contiguous, got {choice!r}")


def resolve_depthwise_impl(cfg, device_type=None):
    """Returns "conv2d" or "conv3d", what MODEL.DEPTHWISE_IMPL selects on `device_type`.

    auto: conv2d on CPU (measured faster, train and eval); conv3d on CUDA, where the tool has not
    measured it yet (run tools/benchmark.py --mode model on a GPU to decide).
    """
    choice = cfg.MODEL.DEPTHWISE_IMPL
    if choice not in DEPTHWISE_IMPLS:
        raise ValueError(f"MODEL.DEPTHWISE_IMPL must be one of {DEPTHWISE_IMPLS}, got {choice!r}")
    if choice == "auto":
        device_type = device_type or cfg_device_type(cfg)
        return "conv2d" if device_type == "cpu" else "conv3d"
    return choice


def resolve_inference_amp(cfg, device_type=None):
    """Returns the autocast dtype of MODEL.INFERENCE_AMP on `device_type`, or None (fp32)."""
    choice = cfg.MODEL.INFERENCE_AMP
    if choice not in INFERENCE_AMPS:
        raise ValueError(f"MODEL.INFERENCE_AMP must be one of {INFERENCE_AMPS}, got {choice!r}")
    device_type = device_type or cfg_device_type(cfg)
    if choice == "auto":
        return torch.float16 if device_type == "cuda" else None
    return {"off": None, "bfloat16": torch.bfloat16, "float16": torch.float16}[choice]


def resolve_cpu_fused_units(cfg, device_type=None):
    """Returns True when MODEL.CPU_FUSED_UNITS asks for the fused D(2+1)D kernel on `device_type`
    (a CPU lever: False on CUDA whatever the key says)."""
    choice = cfg.MODEL.CPU_FUSED_UNITS
    if choice not in CPU_FUSED_UNITS:
        raise ValueError(f"MODEL.CPU_FUSED_UNITS must be one of {CPU_FUSED_UNITS}, got {choice!r}")
    return choice != "off" and (device_type or cfg_device_type(cfg)) == "cpu"


def inference_autocast(cfg, device):
    """Returns the autocast context of MODEL.INFERENCE_AMP for `device` (a null context when off)."""
    device_type = torch.device(device).type
    dtype = resolve_inference_amp(cfg, device_type)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device_type, dtype=dtype)


# ----------------------------------------------------------------------------------------------- #
# Conv3d forwards: channels-last kept on CPU, depthwise convolutions as Conv2d
# ----------------------------------------------------------------------------------------------- #


class ChannelsLastConv3d(nn.Conv3d):
    """An nn.Conv3d that keeps channels-last clips channels-last on CPU.

    For a batch of one (a test clip, a demo video), PyTorch's CPU dispatch picks its reference
    `slow_conv3d` for some convs (a 3-channel stem conv, 1x1x1 convs) even when the input is
    channels_last_3d: it returns NCTHW, so every later layer pays a layout change, and the stem conv
    alone ran 11x slower (17 ms vs 1.5 ms at 16x224^2). This sends fp32 channels-last CPU inputs
    to oneDNN, as PyTorch itself does for larger batches (differentiable, same numerics class);
    anything else takes the stock forward. Retyped in place by `route_channels_last_convs`.
    """

    def forward(self, x):
        if (
            x.dim() == 5 and x.device.type == "cpu" and x.dtype == torch.float32
            and self.weight.dtype == torch.float32 and self.padding_mode == "zeros"
            and not isinstance(self.padding, str) and torch.backends.mkldnn.is_available()
            and torch.backends.mkldnn.enabled and not torch.is_autocast_enabled("cpu")
            and x.is_contiguous(memory_format=torch.channels_last_3d) and x.numel() > 0
            and not torch.jit.is_tracing()  # traces (fvcore's FLOP count, exports) keep aten::_convolution
        ):
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
    `depthwise_impl == "conv3d"` is the Conv3d forward (ChannelsLastConv3d's).
    """

    depthwise_impl = "conv3d"

    def forward(self, x):
        if self.depthwise_impl != "conv2d" or x.dim() != 5:
            return super().forward(x)
        if self.kernel_size[0] == 1:
            return self._spatial(x)
        return self._temporal(x)

    def _spatial(self, x):
        n, c, t, h, w = x.shape
        weight = self.weight.squeeze(2)  # (C, 1, kh, kw), a view
        args = (self.stride[1:], self.padding[1:], self.dilation[1:])
        if x.is_contiguous(memory_format=torch.channels_last_3d) or t == 1:
            # (N, C, T, H, W) channels-last -> (N*T, C, H, W) channels-last: a view.
            y = F.conv2d(x.transpose(1, 2).reshape(n * t, c, h, w), weight, self.bias, *args, self.groups)
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


def set_depthwise_impl(model, impl):
    """Runs every factorizable depthwise Conv3d of `model` as `impl` ("conv2d" | "conv3d"), in place.

    Returns the number of convs switched. Parameters and state_dict are untouched.
    """
    if impl not in ("conv2d", "conv3d"):
        raise ValueError(f"depthwise impl must be conv2d or conv3d, got {impl!r}")
    count = 0
    for m in model.modules():
        if type(m) in (nn.Conv3d, ChannelsLastConv3d) and impl == "conv2d" and is_factorizable_depthwise(m):
            m.__class__ = DepthwiseConv3d
        if isinstance(m, DepthwiseConv3d):
            m.depthwise_impl = impl
            count += 1
    return count


# ----------------------------------------------------------------------------------------------- #
# Layout: weights, clips, batches
# ----------------------------------------------------------------------------------------------- #


def apply_memory_format(model, cfg):
    """Applies the layout levers in place and returns `model`: 5-D weights in MODEL.MEMORY_FORMAT,
    depthwise convs run as MODEL.DEPTHWISE_IMPL resolves for the model's device, other Conv3d kept
    channels-last on CPU (ChannelsLastConv3d) in channels_last_3d. Called by build_model."""
    fmt = resolve_memory_format(cfg)
    model = model.to(memory_format=fmt)
    set_depthwise_impl(model, resolve_depthwise_impl(cfg, _model_device_type(model, cfg)))
    if fmt == torch.channels_last_3d:
        route_channels_last_convs(model)
    return model


def to_model_format(x, cfg, device=None):
    """Returns a 5-D clip on `device` in the model's memory format (one copy at most)."""
    fmt = resolve_memory_format(cfg)
    if device is not None:
        x = x.to(device, non_blocking=True)
    if x.dim() == 5 and not x.is_contiguous(memory_format=fmt):
        x = x.contiguous(memory_format=fmt)
    return x


def empty_clip_batch(shape, memory_format=torch.channels_last_3d):
    """Returns an uninitialised float32 batch of clips, shape (..., C, T, H, W), in which every clip
    is laid out in `memory_format` (a torch.memory_format or a MODEL.MEMORY_FORMAT string).

    Datasets write each clip into it once (vov3d.datasets.base); the batch then reaches the model
    with no re-layout, also after the test path's (N, V, ...) -> (N*V, ...) reshape, which stays a
    view. Inside a DataLoader worker it lives in shared memory, so sending it costs no copy either.
    """
    if isinstance(memory_format, str):
        memory_format = torch.contiguous_format if memory_format == "contiguous" else torch.channels_last_3d
    shape = tuple(int(n) for n in shape)
    lead = len(shape) - 4
    if memory_format == torch.channels_last_3d and lead >= 0:
        alloc = shape[:lead] + shape[lead + 1:] + shape[lead:lead + 1]  # channels innermost
        order = tuple(range(lead)) + (len(shape) - 1,) + tuple(range(lead, len(shape) - 1))
    else:
        alloc, order = shape, tuple(range(len(shape)))
    if torch.utils.data.get_worker_info() is None:
        out = torch.empty(alloc, dtype=torch.float32)
    else:
        numel = 1
        for n in alloc:
            numel *= n
        storage = torch.empty(0)._typed_storage()._new_shared(numel, device="cpu")
        out = torch.empty(0).new(storage).resize_(alloc)
    return out.permute(order)


# ----------------------------------------------------------------------------------------------- #
# BatchNorm folding
# ----------------------------------------------------------------------------------------------- #

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
# Tensor calls that read metadata only: they are not a second consumer of a conv output.
_METADATA_CALLS = {
    "__get__", "dim", "size", "stride", "numel", "is_contiguous", "data_ptr", "element_size", "__len__",
    "is_floating_point", "get_device", "ndimension", "nelement", "is_complex",
}


class _UseCounter(torch.overrides.TorchFunctionMode):
    """Counts, per tensor id, the torch calls taking that tensor outside any BatchNorm forward."""

    def __init__(self):
        super().__init__()
        self.uses = collections.Counter()
        self.in_bn = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if not self.in_bn and getattr(func, "__name__", "") not in _METADATA_CALLS:
            for a in list(args) + list(kwargs.values()):
                if isinstance(a, torch.Tensor):
                    self.uses[id(a)] += 1
                elif isinstance(a, (list, tuple)):
                    for b in a:
                        if isinstance(b, torch.Tensor):
                            self.uses[id(b)] += 1
        return func(*args, **kwargs)


def find_conv_bn_pairs(model, example_inputs):
    """Returns [(conv_name, bn_name)] of every BatchNorm whose input is the output of one conv, used
    by nothing but that BatchNorm, found by running `example_inputs` through `model` (eval, no grad).

    Found from what the forward does, not from names, so it covers every model of the zoo.
    """
    names = {m: n for n, m in model.named_modules()}
    produced = {}  # id(output) -> (output, conv name); outputs are kept alive so ids stay unique
    candidates = []
    counter = _UseCounter()
    handles = []

    def conv_hook(m, inp, out):
        if isinstance(out, torch.Tensor):
            produced[id(out)] = (out, names[m])
            counter.uses[id(out)] = 0

    def bn_pre(m, inp):
        x = inp[0]
        if id(x) in produced and produced[id(x)][0] is x:
            candidates.append((produced[id(x)][1], names[m], id(x), counter.uses[id(x)]))
        counter.in_bn += 1

    def bn_post(m, inp, out):
        counter.in_bn -= 1

    for m in model.modules():
        if isinstance(m, _CONVS):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            handles.append(m.register_forward_pre_hook(bn_pre))
            handles.append(m.register_forward_hook(bn_post))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), counter:
            model(example_inputs)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    pairs, seen_bn, bn_count = [], set(), collections.Counter(bn for _, bn, _, _ in candidates)
    for conv, bn, tid, uses_before in candidates:
        # Foldable: the BN runs once, and nobody used the conv output before or after it.
        if bn_count[bn] == 1 and uses_before == 0 and counter.uses[tid] == 0 and bn not in seen_bn:
            pairs.append((conv, bn))
            seen_bn.add(bn)
    conv_count = collections.Counter(c for c, _ in pairs)
    return [(c, b) for c, b in pairs if conv_count[c] == 1]


def set_submodule(model, name, module):
    """Replaces the submodule called `name` (dotted) of `model` by `module`."""
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


@torch.no_grad()
def fold_conv_bn_(conv, bn):
    """Folds eval-mode `bn` into `conv` in place (the conv gets a bias); keeps the weight's layout."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps) if bn.affine else torch.rsqrt(bn.running_var + bn.eps)
    shift = bn.bias if bn.affine else torch.zeros_like(bn.running_mean)
    w = conv.weight
    new_w = (w.double() * scale.double().view(-1, *([1] * (w.dim() - 1)))).to(w.dtype)
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(bn.running_mean, dtype=torch.float64)
    new_b = ((bias - bn.running_mean.double()) * scale.double() + shift.double()).to(w.dtype)
    conv.weight = nn.Parameter(new_w.contiguous(memory_format=_weight_format(w)), requires_grad=False)
    conv.bias = nn.Parameter(new_b, requires_grad=False)


def _weight_format(w):
    if w.dim() == 5 and w.is_contiguous(memory_format=torch.channels_last_3d) and not w.is_contiguous():
        return torch.channels_last_3d
    if w.dim() == 4 and w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


def fold_batchnorm(model, example_inputs):
    """Returns an inference-only copy of `model` (eval mode, no grad) in which every BatchNorm that
    directly follows a conv is folded into that conv and replaced by nn.Identity.

    `example_inputs` is what the model's forward takes (vov3d models: a list of one clip); it is run
    once to find the conv -> BN pairs (find_conv_bn_pairs). Eval outputs stay within 1e-5. The
    original model is untouched: train and save checkpoints with it, never with the copy.
    """
    folded = copy.deepcopy(model).eval()
    pairs = find_conv_bn_pairs(folded, example_inputs)
    for conv_name, bn_name in pairs:
        bn = folded.get_submodule(bn_name)
        if not bn.track_running_stats or bn.running_mean is None:
            continue
        fold_conv_bn_(folded.get_submodule(conv_name), bn)
        set_submodule(folded, bn_name, nn.Identity())
    for p in folded.parameters():
        p.requires_grad_(False)
    logger.debug("Folded %d BatchNorms into their convs", len(pairs))
    return folded


def example_inputs_for(cfg, device=None, batch=1, crop=None):
    """Returns a list of one random clip shaped as cfg's test clips, in the model's memory format."""
    crop = crop or cfg.DATA.TEST_CROP_SIZE
    x = torch.randn(batch, cfg.DATA.INPUT_CHANNEL_NUM[0], cfg.DATA.NUM_FRAMES, crop, crop)
    return [to_model_format(x, cfg, device)]


# ----------------------------------------------------------------------------------------------- #
# What the engine calls
# ----------------------------------------------------------------------------------------------- #


def apply_cudnn_benchmark(cfg):
    """Sets torch.backends.cudnn.benchmark from MODEL.CUDNN_BENCHMARK when running on CUDA."""
    if cfg_device_type(cfg) == "cuda":
        torch.backends.cudnn.benchmark = bool(cfg.MODEL.CUDNN_BENCHMARK)


def maybe_compile(model, cfg):
    """Returns torch.compile(model) when MODEL.COMPILE, else `model`."""
    if not cfg.MODEL.COMPILE:
        return model
    logger.info("Compiling the model with torch.compile (MODEL.COMPILE True); the first steps are slow")
    return torch.compile(model)


def prepare_model_for_training(model, cfg):
    """Returns the module the train loop should call: cuDNN autotuner on (CUDA), compiled when
    MODEL.COMPILE. Call after DDP wrapping; optimise and checkpoint the bare model, not the result.
    Training autocast stays TRAIN.MIXED_PRECISION (vov3d/engine/batch.py)."""
    apply_cudnn_benchmark(cfg)
    return maybe_compile(model, cfg)


def prepare_model_for_inference(model, cfg, example_inputs=None):
    """Returns the module to evaluate: a BN-folded inference copy when MODEL.FOLD_BN (BN stats
    must be final: call after loading the checkpoint / precise BN), its D(2+1)D units fused on CPU
    (MODEL.CPU_FUSED_UNITS), compiled when MODEL.COMPILE,
    in eval mode. Run it under `inference_autocast(cfg, device)`. `model` itself is not changed."""
    apply_cudnn_benchmark(cfg)
    model = model.module if hasattr(model, "module") and isinstance(model, nn.parallel.DistributedDataParallel) \
        else model
    out = model
    if cfg.MODEL.FOLD_BN:
        device = next(model.parameters()).device
        if example_inputs is None:
            example_inputs = example_inputs_for(cfg, device)
        out = fold_batchnorm(model, example_inputs)
        # The fused kernel works on the folded copy (never on `model`); torch.compile fuses by itself.
        if not cfg.MODEL.COMPILE and resolve_cpu_fused_units(cfg, device.type):
            fuse_cpu_units(out, required=cfg.MODEL.CPU_FUSED_UNITS == "on")
    out = maybe_compile(out, cfg)
    return out.eval()


def fuse_cpu_units(folded, required=False):
    """Runs the D(2+1)D bottlenecks of the BN-folded inference copy `folded` with the fused CPU
    kernel (vov3d/models/fused_units.py), in place; returns how many. `required`: raise when the
    kernel cannot be built here instead of keeping the stock ops."""
    from vov3d.models import cpu_kernels
    from vov3d.models.fused_units import fuse_d2plus1d_blocks

    count = fuse_d2plus1d_blocks(folded)
    reason = cpu_kernels.unavailable_reason("d2plus1d_cpu")
    if required and reason:
        raise RuntimeError(f"MODEL.CPU_FUSED_UNITS is on but the CPU kernel cannot be built: {reason}")
    return count
