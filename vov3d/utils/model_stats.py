"""Parameter, FLOP and activation counts of a model, as the papers' tables count them.

GFLOPs here are fvcore's counts of **conv and linear multiply-adds** (one MAC = one "flop"), the
convention of the X3D and VoV3D tables; BatchNorm, pooling, activations and element-wise ops are
not counted. Counts are for one clip at the config's test crop (N=1).
"""

import copy
import logging
import math
import warnings
from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

# fvcore scripts a helper at import time; torch now warns that torch.jit.script is deprecated.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    from fvcore.nn import ActivationCountAnalysis, FlopCountAnalysis

# fvcore operator names that are multiply-adds of conv / fully-connected layers.
MAC_OPERATORS = ("conv", "linear", "addmm", "matmul", "bmm", "einsum")


def params_count(model, trainable_only=False):
    """Returns the number of parameters (model.parameters(), BN affine included, buffers not)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def stats_input(cfg, frames=None, crop=None, device=None):
    """Returns the model input [1 x C x T x crop x crop] used for counting (zeros)."""
    frames = frames or cfg.DATA.NUM_FRAMES
    crop = crop or cfg.DATA.TEST_CROP_SIZE
    x = torch.zeros(1, cfg.DATA.INPUT_CHANNEL_NUM[0], frames, crop, crop, device=device)
    return [x]


def _quiet(analysis):
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    return analysis


def flop_analysis(model, inputs):
    """Returns fvcore's FlopCountAnalysis of `model` on `inputs` (eval mode, warnings off)."""
    was_training = model.training
    model.eval()
    try:
        # fvcore's tracer logs every skipped op at WARNING; the counts we report ignore them anyway.
        logging.getLogger("fvcore.nn.jit_analysis").setLevel(logging.ERROR)
        analysis = _quiet(FlopCountAnalysis(model, (inputs,)))
        analysis.total()  # run the trace now, under eval mode
        return analysis
    finally:
        model.train(was_training)


def gflops(model, inputs):
    """Returns conv + linear GMACs of one forward of `model` on `inputs`."""
    by_op = flop_analysis(model, inputs).by_operator()
    return sum(v for k, v in by_op.items() if k in MAC_OPERATORS) / 1e9


def activations_m(model, inputs):
    """Returns the number of conv/linear output elements of one forward, in millions (fvcore)."""
    was_training = model.training
    model.eval()
    try:
        analysis = _quiet(ActivationCountAnalysis(model, (inputs,)))
        return analysis.total() / 1e6
    finally:
        model.train(was_training)


def stage_table(model, inputs):
    """Returns rows (name, params, GMACs, output shape) for each top-level child of the model."""
    analysis = flop_analysis(model, inputs)
    by_module = analysis.by_module_and_operator()
    shapes = OrderedDict()
    hooks = [
        child.register_forward_hook(
            lambda _m, _i, out, name=name: shapes.__setitem__(name, tuple((out[0] if isinstance(out, list) else out).shape))
        )
        for name, child in model.named_children()
    ]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(inputs)
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    rows = []
    for name, child in model.named_children():
        macs = sum(v for k, v in by_module.get(name, {}).items() if k in MAC_OPERATORS)
        rows.append((name, params_count(child), macs / 1e9, shapes.get(name)))
    return rows


class _MacCounter(TorchFunctionMode):
    """Counts multiply-adds and output elements of every conv / linear call, functional ones included."""

    CONVS = (F.conv1d, F.conv2d, F.conv3d)

    def __init__(self):
        super().__init__()
        self.macs = 0
        self.activations = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is F.batch_norm and args[0].device.type == "meta":
            return torch.empty_like(args[0])  # shape-preserving; its meta kernel is slow Python (prims)
        out = func(*args, **(kwargs or {}))
        if func in self.CONVS or func is F.linear:
            weight = args[1] if len(args) > 1 else kwargs["weight"]
            # conv: Cin/groups x kernel per output element; linear: in_features.
            per_output = weight[0].numel() if func in self.CONVS else weight.shape[-1]
            self.macs += out.numel() * per_output
            self.activations += out.numel()
        return out


def shape_counts(model, inputs):
    """Returns {"macs", "activations", "conv_params"} of one forward, counted from shapes on the meta device.

    The same quantities as `gflops` x 1e9 / `activations_m` x 1e6 (conv + linear multiply-adds and their
    output elements, as fvcore counts them) for models whose multiply-adds are all conv / linear calls
    (every conv model here), without computing anything: the model runs in eval mode on meta tensors (a
    copy of it, unless it already lives on the meta device), so a 32 x 256^2 clip of VoV3D-L is counted
    in about a second. `conv_params` is the number of conv
    and linear weights (biases and BN excluded), the quantity of the VoV3D paper's Table 1.
    """
    on_meta = all(p.device.type == "meta" for p in model.parameters())
    meta = model if on_meta else copy.deepcopy(model).to("meta")  # built on meta: nothing to copy
    was_training = meta.training
    conv_params = sum(m.weight.numel() for m in meta.modules() if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear)))
    counter = _MacCounter()
    try:
        with torch.no_grad(), counter:
            meta.eval()([x.to("meta") for x in inputs] if isinstance(inputs, (list, tuple)) else inputs.to("meta"))
    finally:
        meta.train(was_training)
    return {"macs": counter.macs, "activations": counter.activations, "conv_params": conv_params}


def model_summary(model, cfg, frames=None, crop=None):
    """Returns a dict with params, GFLOPs (conv/linear MACs), activations and the per-stage table."""
    device = next(model.parameters()).device
    inputs = stats_input(cfg, frames, crop, device)
    return {
        "params": params_count(model),
        "gflops": gflops(model, inputs),
        "activations_m": activations_m(model, inputs),
        "stages": stage_table(model, inputs),
        "input_shape": tuple(inputs[0].shape),
    }
