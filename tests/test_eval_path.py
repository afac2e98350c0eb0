"""The fast path of plain model.eval() (vov3d/runtime/eval_path.py): no-grad eval forwards of a built
model run a prepared inference copy with the model's outputs, and the plain forward runs wherever the
copy could not stand in (grad, hooks, train mode, changed weights)."""

import os

import pytest
import torch

import vov3d  # noqa: F401  (registers the fast eval path with the models)
from vov3d.config.defaults import get_cfg
from vov3d.models import build_model
from vov3d.runtime.eval_path import prepared_copy
from vov3d.runtime.prepare import InferenceModel

from conftest import REPO, randomize_bn

TOL = 1e-5


@pytest.fixture(autouse=True)
def accelerated(monkeypatch, one_thread):
    monkeypatch.setenv("VOV3D_ACCELERATED_EVAL", "1")


def tiny_model(seed=0):
    cfg = get_cfg()
    cfg.merge_from_file(os.path.join(REPO, "configs", "Kinetics", "VoV3D_M_16x5.yaml"))
    # Explicit levers: the routing and the numerics are the subject here, not the measuring.
    cfg.merge_from_list(["NUM_GPUS", 0, "DATA.NUM_FRAMES", 4, "DATA.TRAIN_CROP_SIZE", 32, "DATA.TEST_CROP_SIZE", 32,
                         "MODEL.NUM_CLASSES", 7, "MODEL.DROPOUT_RATE", 0.0, "VOV3D.INNER_CH", 8,
                         "MODEL.MEMORY_FORMAT", "channels_last_3d", "MODEL.DEPTHWISE_IMPL", "conv2d",
                         "MODEL.CPU_FUSED_UNITS", "off"])
    torch.manual_seed(seed)
    return randomize_bn(build_model(cfg), seed).eval()


def plain_output(model, x):
    model.accelerated_eval = False
    try:
        with torch.no_grad():
            return model([x])
    finally:
        model.accelerated_eval = True


def test_no_grad_eval_runs_a_prepared_copy_with_the_models_outputs():
    model, x = tiny_model(), torch.randn(2, 3, 4, 32, 32)
    keys = list(model.state_dict())
    with torch.no_grad():
        y = model([x])
    copy = prepared_copy(model)
    assert isinstance(copy, InferenceModel)
    assert not any(isinstance(m, torch.nn.BatchNorm3d) for m in copy._built.modules())  # BN folded
    assert (y - plain_output(model, x)).abs().max().item() <= TOL
    assert list(model.state_dict()) == keys  # the copy is no submodule: checkpoints unchanged
    with torch.no_grad():
        model([x])
    assert prepared_copy(model) is copy  # built once while the weights stay


def test_new_weights_are_never_served_stale():
    model, x = tiny_model(0), torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        before = model([x])
        model.load_state_dict(tiny_model(1).state_dict())
        after = model([x])
    assert (after - plain_output(model, x)).abs().max().item() <= TOL
    assert (after - before).abs().max().item() > 1e-3
    with torch.no_grad():
        next(model.parameters()).mul_(1.5)  # an in-place update
        scaled = model([x])
    assert (scaled - plain_output(model, x)).abs().max().item() <= TOL


def test_grad_hooks_and_train_mode_run_the_plain_forward():
    model, x = tiny_model(), torch.randn(1, 3, 4, 32, 32)
    y = model([x])  # grad enabled: gradients must reach the model's own parameters
    assert y.grad_fn is not None and prepared_copy(model) is None
    y.sum().backward()
    assert next(model.parameters()).grad is not None
    seen = []
    handle = model.head.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    with torch.no_grad():
        model([x])
    handle.remove()
    assert seen and prepared_copy(model) is None  # a hook must see the model's own modules run
    with torch.no_grad():
        model([x])
    assert prepared_copy(model) is not None
    model.train()
    assert prepared_copy(model) is None  # freed while training


def test_switched_off_by_the_config_key():
    model, x = tiny_model(), torch.randn(1, 3, 4, 32, 32)
    model.accelerated_eval = False
    with torch.no_grad():
        model([x])
    assert prepared_copy(model) is None


def test_replaced_buffers_and_deep_pre_hooks_are_seen():
    model, x = tiny_model(), torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        model([x])
    copy = prepared_copy(model)
    copy.train()  # an inference copy stays in eval mode, all of it
    assert not copy.training and not any(m.training for m in copy.modules())
    bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm3d))
    bn.running_var = bn.running_var * 4.0  # a new tensor, not an in-place update
    with torch.no_grad():
        y = model([x])
    assert prepared_copy(model) is not copy
    assert (y - plain_output(model, x)).abs().max().item() <= TOL
    seen = []
    deep = [m for m in model.modules() if isinstance(m, torch.nn.Conv3d)][-1]
    handle = deep.register_forward_pre_hook(lambda m, i: seen.append(i[0].shape))
    with torch.no_grad():
        model([x])
    handle.remove()
    assert seen  # the model's own modules ran
