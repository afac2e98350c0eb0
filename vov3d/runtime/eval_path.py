"""A fast `model.eval()`: the plain model's no-grad eval forwards run a prepared inference copy.

A user of the API builds a model, calls `model.eval()` and runs clips under `torch.no_grad()`; with
stock ops that is the slow path (depthwise Conv3d, BN as separate ops). Here such a forward is sent to
an InferenceModel (prepare.py: routes measured per machine and clip shape, BN folded, fused units) kept
beside the model, so the user gets the engine's speed without calling `prepare_for_inference`:

    model = vov3d.models.create("vov3d_m", num_classes=174).eval()
    with torch.no_grad():
        probs = model([clip])        # the prepared copy: same outputs within 1e-5

The plain forward runs instead whenever the copy could not give the same thing:
- in train mode, or with grad enabled (gradients must reach the model's own parameters: Grad-CAM,
  attribution, fine-tuning in eval mode);
- when any submodule has forward hooks (feature taps, CAM) or global module hooks are set;
- while tracing, scripting, exporting or compiling (the graph must be the model's own modules);
- when the model's `accelerated_eval` is False (MODEL.ACCELERATED_EVAL False in its config), or the
  environment has VOV3D_ACCELERATED_EVAL=0.

The copy is rebuilt when any parameter or buffer changed (in-place update, load_state_dict, `.to()`),
so it never serves stale weights. It runs in fp32 (no autocast) whatever MODEL.INFERENCE_AMP says:
`model.eval()` promises the model's numerics. Registered into vov3d.models.base when vov3d.runtime is
imported (vov3d/__init__.py does), so models do not import the runtime.
"""

import logging
import os

import torch

from vov3d.models import base

logger = logging.getLogger(__name__)


def _tracing():
    if torch.jit.is_tracing() or torch.jit.is_scripting():
        return True
    compiler = getattr(torch, "compiler", None)
    if compiler is not None and compiler.is_compiling():
        return True
    onnx = getattr(torch, "onnx", None)
    return bool(onnx is not None and getattr(onnx, "is_in_onnx_export", lambda: False)())


def _global_hooks_set():
    from torch.nn.modules import module as nn_module

    return bool(nn_module._global_forward_hooks or nn_module._global_forward_pre_hooks)


def weights_signature(model):
    """Returns a value that changes whenever a parameter or buffer of `model` is replaced, moved or
    updated in place (tensor version counters, storages, dtypes), or None when a submodule has forward
    hooks. One walk over the modules per forward (no state_dict(): its key strings cost three times
    as much, ~3 ms a call on VoV3D-M)."""
    out = []
    for m in model.modules():
        if m._forward_hooks or m._forward_pre_hooks:
            return None
        for tensors in (m._parameters, m._buffers):
            for t in tensors.values():
                if t is not None:
                    out.append((t.data_ptr(), t._version, t.dtype))
    return tuple(out)


def applies(model, inputs):
    """True when `model`'s forward on `inputs` may run the prepared copy, hooks aside (those are found
    by weights_signature's walk; see the module docstring)."""
    if model.training or torch.is_grad_enabled() or not getattr(model, "accelerated_eval", True):
        return False
    if os.environ.get("VOV3D_ACCELERATED_EVAL", "1") == "0":
        return False
    clips = inputs if isinstance(inputs, (list, tuple)) else [inputs]
    if len(clips) != 1 or not torch.is_tensor(clips[0]) or clips[0].dim() != 5 or clips[0].requires_grad:
        return False
    if not clips[0].is_floating_point() or clips[0].device.type not in ("cpu", "cuda") or _tracing():
        return False  # meta tensors (FLOP counting), integer clips, traces: the plain forward
    return not _global_hooks_set()


def _lever_cfg(model):
    from vov3d.runtime.prepare import _default_cfg, model_device

    cfg = getattr(model, "runtime_cfg", None)
    cfg = cfg.clone() if cfg is not None else _default_cfg(model_device(model))
    cfg.defrost()
    cfg.MODEL.INFERENCE_AMP = "off"
    cfg.MODEL.COMPILE = False
    return cfg


def accelerated_forward(model, inputs):
    """Returns the prepared copy's output for `inputs`, or None when the plain forward must run."""
    if not applies(model, inputs):
        return None
    from vov3d.runtime.prepare import InferenceModel

    signature = weights_signature(model)
    if signature is None:  # forward hooks (feature taps, CAM) must see the model's own modules
        return None
    state = model.__dict__.get("_accelerated_eval_state")
    if state is None or state[0] != signature:
        drop_copy(model)
        if state is None:
            logger.info("%s.eval(): no-grad forwards run a prepared inference copy (routes measured once "
                        "per machine and clip shape; model.accelerated_eval = False turns this off)",
                        type(model).__name__)
        # Kept in __dict__, not as a submodule: invisible to state_dict(), parameters() and .to().
        model.__dict__["_accelerated_eval_state"] = state = (signature, InferenceModel(model, _lever_cfg(model)))
    return state[1](list(inputs) if isinstance(inputs, (list, tuple)) else [inputs])


def prepared_copy(model):
    """Returns the InferenceModel `model`'s no-grad eval forwards run now, or None before the first."""
    state = model.__dict__.get("_accelerated_eval_state")
    return state[1] if state else None


def drop_copy(model):
    """Frees `model`'s prepared copy (it is rebuilt at the next accelerated forward)."""
    model.__dict__.pop("_accelerated_eval_state", None)


base.set_eval_accelerator(accelerated_forward, drop_copy)
