"""The two steps that make a built (plain) model fast on the device at hand.

    train_model = prepare_for_training(model, cfg, wrap=ddp)   # routes applied in place, measured
    infer_model = prepare_for_inference(model, cfg)            # an inference copy; `model` untouched

`build_model` returns the plain module; nothing is retyped until one of these runs. Levers set to
`auto` are measured here (vov3d/runtime/autotune.py), explicit values are applied as they are.
A user of the API gets the same speed from plain `model.eval()` and no-grad forwards: vov3d/runtime/
eval_path.py runs them on an InferenceModel kept beside the model.
"""

import contextlib
import copy
import itertools
import logging
from dataclasses import dataclass

import torch
import torch.nn as nn

from vov3d.runtime import autotune, heap, kernels, levers
from vov3d.runtime.batchnorm import has_narrow_batchnorms, set_batchnorm_impl
from vov3d.runtime.conv_routes import apply_conv_routes, is_factorizable_depthwise, is_pointwise
from vov3d.runtime.depthwise import kernel_takes
from vov3d.runtime.fold_bn import fold_batchnorm
from vov3d.runtime.fused_units import FusedStem, fuse_d2plus1d_blocks, has_fusable_units
from vov3d.runtime.layout import format_name, memory_format_from_name, record_decision

logger = logging.getLogger(__name__)

# Measurement bounds: a few steps per candidate, interleaved, within a time budget per decision.
TUNE_REPS, TUNE_ROUNDS, TUNE_MARGIN, TUNE_BUDGET_S = 2, 2, 0.05, 60.0
_AMP_NAMES = {None: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}


@dataclass(frozen=True)
class Route:
    """One combination of machine-dependent levers."""

    memory_format: str = "contiguous"  # "contiguous" | "channels_last_3d"
    depthwise: str = "conv3d"  # "conv3d" | "conv2d" | "kernel" (CPU channels-last clips)
    pointwise: str = "conv"  # "conv" | "matmul" (1x1x1 convs of channels-last routes)
    fused: bool = False  # fused D(2+1)D kernel (CPU inference copies)
    amp: torch.dtype = None  # inference autocast dtype, None = fp32
    batchnorm: str = "stock"  # "stock" | "kernel" (training BN of narrow channels-last clips)

    @property
    def name(self):
        """Returns a readable name: "stock" or the levers joined by "+"."""
        parts = []
        if self.memory_format != "contiguous":
            parts.append("cl3d")
        if self.depthwise != "conv3d":
            parts.append("dw_" + self.depthwise)
        if self.pointwise != "conv":
            parts.append("pw_" + self.pointwise)
        if self.batchnorm != "stock":
            parts.append("bn_" + self.batchnorm)
        if self.fused:
            parts.append("fused")
        if self.amp is not None:
            parts.append(_AMP_NAMES[self.amp])
        return "+".join(parts) or "stock"


def _default_cfg(device):
    from vov3d.config.defaults import get_cfg

    cfg = get_cfg()
    cfg.NUM_GPUS = 1 if torch.device(device).type == "cuda" else 0
    return cfg


def _bare(model):
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def model_device(model):
    """Returns the device of `model`'s first parameter (CPU for a model without parameters)."""
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def _has_factorizable_depthwise(model):
    return any(is_factorizable_depthwise(m) for m in model.modules())


def candidate_routes(cfg, model, device_type, inference):
    """Returns the Routes the keys allow for `model` on `device_type`, stock (or the closest) first;
    a lever that changes nothing in this model (no factorizable depthwise conv, no fusable unit) is
    left out, so nothing is measured twice."""
    formats = [format_name(f) for f in levers.memory_format_choices(cfg)]
    depthwise = levers.depthwise_choices(cfg, device_type) if _has_factorizable_depthwise(model) else ["conv3d"]
    if cfg.MODEL.DEPTHWISE_IMPL == "auto" and (
        kernels.load_library("depthwise_cpu") is None or not any(kernel_takes(m) for m in model.modules())
    ):
        depthwise = [d for d in depthwise if d != "kernel"]  # no C compiler or no conv it takes: conv2d again
    pointwise = levers.pointwise_choices(cfg) if any(is_pointwise(m) for m in model.modules()) else ["conv"]
    batchnorm = ["stock"]
    if not inference and has_narrow_batchnorms(model):
        batchnorm = levers.batchnorm_choices(cfg, device_type)
        if cfg.MODEL.BATCHNORM_IMPL == "auto" and kernels.load_library("batchnorm_cpu") is None:
            batchnorm = ["stock"]  # no C compiler: nothing to measure
    fused = levers.fused_units_choices(cfg, device_type) if inference else [False]
    if cfg.MODEL.CPU_FUSED_UNITS == "auto" and not has_fusable_units(model):
        fused = [False]
    amps = levers.inference_amp_choices(cfg, device_type) if inference else [None]
    routes = []
    for fmt, dw, pw, bn, fu, amp in itertools.product(formats, depthwise, pointwise, batchnorm, fused, amps):
        if fu and fmt != "channels_last_3d" and "channels_last_3d" in formats:
            continue  # the kernel reads channels-last rows only: contiguous + fused is contiguous
        if fmt != "channels_last_3d" or (fu and pw != "conv" and "conv" in pointwise):
            pw = "conv"  # products need channels-last rows; fused units run their 1x1x1 convs themselves
        if fmt != "channels_last_3d" and "channels_last_3d" in formats:
            bn = "stock"  # the BN kernel reads channels-last clips only
            if dw == "kernel":
                continue  # so does the depthwise kernel: contiguous + kernel is contiguous + conv2d
        route = Route(fmt, dw, pw, fu, amp, bn)
        if route not in routes:
            routes.append(route)
    return routes


def _random_clip(shape, route, device):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(tuple(shape), generator=g).to(device)
    return x.contiguous(memory_format=memory_format_from_name(route.memory_format))


# ----------------------------------------------------------------------------------------------- #
# Training
# ----------------------------------------------------------------------------------------------- #


def train_input_shape(cfg):
    """Returns the shape of one process's training batch (N, C, T, H, W) under cfg."""
    per_process = max(1, cfg.TRAIN.BATCH_SIZE // max(1, cfg.NUM_GPUS))
    crop = cfg.DATA.TRAIN_CROP_SIZE
    return (per_process, cfg.DATA.INPUT_CHANNEL_NUM[0], cfg.DATA.NUM_FRAMES, crop, crop)


@contextlib.contextmanager
def _trial_steps(model, routes, shape, device):
    """Yields run(name): a train step (forward + backward) of route `name` on a random clip of `shape`;
    leaves no trace in `model` (BN statistics, gradients, RNG streams and mode are restored on exit)."""
    by_name = {r.name: r for r in routes}
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if device.type == "cuda" else None
    was_training = model.training

    def run(name):
        route = by_name[name]
        apply_route(model, route)
        x = [_random_clip(shape, route, device)]

        def step():
            apply_route(model, route)
            torch.set_rng_state(rng)  # the same dropout masks for every candidate: outputs comparable
            model.train()
            model.zero_grad(set_to_none=True)
            out = model(x)
            out.float().square().mean().backward()
            return out.detach()

        return step

    try:
        yield run
    finally:
        with torch.no_grad():
            for b, saved in buffers:
                b.copy_(saved)
        model.zero_grad(set_to_none=True)
        torch.set_rng_state(rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
        model.train(was_training)


def _measure_training(model, cfg, routes, shape, device):
    """Returns the Route whose train step (forward + backward) measures fastest; leaves no trace
    in `model`."""
    by_name = {r.name: r for r in routes}

    def check(out, ref, name):  # batch-statistics BN amplifies summation order: a looser tolerance
        return autotune.outputs_match(out, ref, rtol=1e-2, atol=1e-3)

    key = autotune.decision_key("train", device, model, shape, list(by_name))
    with _trial_steps(model, routes, shape, device) as run:
        choice = autotune.decide("train", key, list(by_name), run, check=check, reps=TUNE_REPS,
                                 rounds=TUNE_ROUNDS, budget_s=TUNE_BUDGET_S, margin=TUNE_MARGIN,
                                 sync=_sync(device))
    return by_name[choice]


def _keep_heap(model, cfg, route, shape, device):
    """Keeps freed memory in the heap between train steps when MODEL.CPU_KEEP_HEAP asks for it (auto:
    when the route's train step measures more than heap.FAULTS_PER_STEP page faults; the decision is
    cached like the routes'). See vov3d/runtime/heap.py."""
    choice = levers.keep_heap_choice(cfg, device.type)
    if choice == "off" or heap.is_kept():
        return
    if heap.glibc() is None:
        logger.info("MODEL.CPU_KEEP_HEAP %s: the C library is not glibc, its heap is left as it is", choice)
        return
    if choice == "auto":
        key = autotune.decision_key("heap", device, model, shape, ["off", "on"])
        cached = autotune.load_decision(key)
        if cached is not None:
            choice = cached["choice"]
            logger.info("Freed heap between train steps: %s (cached for %s, %s)", choice, key["machine"],
                        "x".join(map(str, shape)))
        else:
            with _trial_steps(model, [route], shape, device) as run:
                step = run(route.name)
                faults = heap.faults_per_step(step)
                choice = "on" if faults > heap.FAULTS_PER_STEP else "off"
                after = None
                if choice == "on":
                    heap.keep_freed_memory()
                    after = heap.faults_per_step(step, steps=1)
            autotune.save_decision(key, choice, {"page_faults_per_step": faults, "kept": after})
            logger.info("Freed heap between train steps: %s, measured on %s at %s (%.0f page faults a step%s)",
                        "kept" if choice == "on" else "left to glibc", key["machine"], "x".join(map(str, shape)),
                        faults, f", {after:.0f} once kept" if after is not None else "")
    if choice == "on":
        heap.keep_freed_memory()


def apply_route(model, route):
    """Applies `route`'s layout, conv routes and BatchNorm route to `model`, in place; returns `model`."""
    apply_conv_routes(model, memory_format_from_name(route.memory_format), route.depthwise, route.pointwise)
    set_batchnorm_impl(model, route.batchnorm)
    return model


def _sync(device):
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return None


def prepare_for_training(model, cfg, wrap=None, input_shape=None):
    """Returns the module the train loop should call: `model` with its conv routes and layout set
    (in place; parameters keep their identity, so an optimizer built before stays valid), wrapped by
    `wrap` (e.g. DistributedDataParallel), compiled when MODEL.COMPILE. Levers set to `auto` are
    measured on train steps of `input_shape` (default: cfg's per-process training batch). Optimise,
    EMA and checkpoint `model`, not the result. Training autocast stays TRAIN.MIXED_PRECISION."""
    device = model_device(model)
    levers.apply_cudnn_benchmark(cfg)
    routes = candidate_routes(cfg, model, device.type, inference=False)
    if len(routes) == 1:
        route = routes[0]
    else:
        route = _measure_training(model, cfg, routes, input_shape or train_input_shape(cfg), device)
    if route.batchnorm == "kernel" and kernels.load_library("batchnorm_cpu") is None:
        reason = kernels.unavailable_reason("batchnorm_cpu")
        raise RuntimeError(f"MODEL.BATCHNORM_IMPL is kernel but the CPU kernel cannot be built: {reason}")
    apply_route(model, route)
    _keep_heap(model, cfg, route, input_shape or train_input_shape(cfg), device)
    if cfg.MODEL.MEMORY_FORMAT == "auto":
        record_decision(route.memory_format)
    model.runtime_route = route.name
    out = wrap(model) if wrap is not None else model
    if cfg.MODEL.COMPILE:
        logger.info("Compiling the model with torch.compile (MODEL.COMPILE True); the first steps are slow")
        out = torch.compile(out)
    return out


# ----------------------------------------------------------------------------------------------- #
# Inference
# ----------------------------------------------------------------------------------------------- #


def _plain_copy(model):
    """Returns a deep copy of `model` without the prepared copy of its fast eval path (eval_path.py),
    whose own no-grad eval forwards run its modules as they are (no copy of a copy)."""
    state = model.__dict__.pop("_accelerated_eval_state", None)
    try:
        copied = copy.deepcopy(model)
    finally:
        if state is not None:
            model.__dict__["_accelerated_eval_state"] = state
    copied.accelerated_eval = False
    return copied


class InferenceModel(nn.Module):
    """An eval-only copy of a model that runs the fastest route for each clip shape it is given.

    At the first call with a new clip shape (C, T, H, W) the route is picked (measured when a lever is
    `auto`, from the disk cache when known); the clip is then moved into the route's layout and run
    under its autocast. The copy's BatchNorms are folded when MODEL.FOLD_BN (from the weights as they
    are at preparation: prepare again after loading other weights).
    """

    def __init__(self, model, cfg):
        super().__init__()
        self.cfg = cfg
        self.source = _plain_copy(_bare(model)).eval()
        for p in self.source.parameters():
            p.requires_grad_(False)
        self.device = model_device(self.source)
        self._folded = None
        self._built = nn.ModuleDict()  # route name -> module, so .to() / state_dict see them
        self._chosen = {}  # clip shape (C, T, H, W) -> Route
        self._any_layout = set()  # routes whose input goes straight into a fused stem (reads any layout)
        self.routes = candidate_routes(cfg, self.source, self.device.type, inference=True)
        super().train(False)  # once: train() below never walks the modules

    def train(self, mode=True):
        """Stays in eval mode: this is an inference copy. Its modules were put in eval mode when made,
        so nothing is walked (nn.Module.train over its ~2000 modules cost ~9 ms a call on VoV3D-M)."""
        self.training = False
        return self

    def _base(self, probe):
        if self._folded is None:
            self._folded = fold_batchnorm(self.source, probe) if self.cfg.MODEL.FOLD_BN else self.source
        return self._folded

    def build(self, route, probe):
        """Returns the module running `route` (built once): a copy of the (folded) model with its
        routes applied, its D(2+1)D units fused when route.fused."""
        if route.name not in self._built:
            m = copy.deepcopy(self._base(probe))
            apply_route(m, route)
            if route.fused:
                fuse_d2plus1d_blocks(m)
                if any(isinstance(mod, FusedStem) for mod in m.modules()):
                    self._any_layout.add(route.name)
                reason = kernels.unavailable_reason("d2plus1d_cpu")
                if reason and self.cfg.MODEL.CPU_FUSED_UNITS == "on":
                    raise RuntimeError(f"MODEL.CPU_FUSED_UNITS is on but the CPU kernel cannot be built: {reason}")
            if self.cfg.MODEL.COMPILE:
                m = torch.compile(m)
            self._built[route.name] = m.eval()
        return self._built[route.name]

    def _run(self, route, inputs):
        m = self._built[route.name]
        fmt = memory_format_from_name(route.memory_format)
        if route.name not in self._any_layout:  # a fused stem reads clips as they come: no copy
            inputs = [x.contiguous(memory_format=fmt) if x.dim() == 5 else x for x in inputs]
        with torch.no_grad(), levers.autocast(self.device.type, route.amp):
            return m(inputs)

    def _choose(self, inputs):
        x = inputs[0]
        probe = [x[:1].contiguous()]
        routes = self.routes
        if len(routes) == 1:
            self.build(routes[0], probe)
            return routes[0]
        by_name = {r.name: r for r in routes}

        def run(name):
            route = by_name[name]
            self.build(route, probe)
            clip = [_random_clip(x.shape, route, self.device)]
            return lambda: self._run(route, clip)

        def check(out, ref, name):  # half-precision candidates agree to their precision
            loose = by_name[name].amp is not None
            return autotune.outputs_match(out, ref, rtol=2e-2 if loose else 1e-3, atol=2e-3 if loose else 1e-4)

        key = autotune.decision_key("inference", self.device, self.source, x.shape, list(by_name))
        choice = autotune.decide("inference", key, list(by_name), run, check=check, reps=TUNE_REPS,
                                 rounds=TUNE_ROUNDS, budget_s=TUNE_BUDGET_S, margin=TUNE_MARGIN,
                                 sync=_sync(self.device))
        running = {choice} | {r.name for r in self._chosen.values()}
        for name in list(self._built):  # keep only what runs
            if name not in running:
                del self._built[name]
        return by_name[choice]

    def route_for(self, inputs):
        """Returns the Route used for clips shaped as inputs[0] (picking it at the first such call)."""
        shape = tuple(inputs[0].shape[1:])
        if shape not in self._chosen:
            # Not recorded as the batch layout: that is the training route's (prepare_for_training),
            # and a training run's batches must not change layout after its first evaluation.
            self._chosen[shape] = self._choose(inputs)
        route = self._chosen[shape]
        if route.name not in self._built:  # the probe (a copy of one clip) only when building
            self.build(route, [inputs[0][:1].contiguous()])
        return route

    def forward(self, inputs):
        if isinstance(inputs, torch.Tensor):
            inputs = [inputs]
        return self._run(self.route_for(inputs), inputs)


def prepare_for_inference(model, cfg=None):
    """Returns an eval-only inference copy of `model` (InferenceModel) that runs the fastest route for
    each clip shape; `model` itself is not changed. `cfg` gives the MODEL.* levers (default: every
    lever `auto`, BN folded). Call after the final weights are loaded (BN folding reads them)."""
    model = _bare(model)
    cfg = cfg if cfg is not None else _default_cfg(model_device(model))
    levers.apply_cudnn_benchmark(cfg)
    return InferenceModel(model, cfg)
