"""The depthwise conv C kernel (vov3d/runtime/depthwise.py, MODEL.DEPTHWISE_IMPL kernel): outputs and
both gradients equal to nn.Conv3d's (computed in float64), for channel counts that leave a partial
vector at every vector width, odd and tiny maps, one or two threads; and the cases it does not take
run the conv2d route instead."""

import copy
import os

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from vov3d.runtime import conv_routes, depthwise, kernels

CL = torch.channels_last_3d
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = pytest.mark.skipif(kernels.load_library("depthwise_cpu") is None,
                                reason="no C compiler: the kernel route runs conv2d")


def reference(x, weight, stride, padding, g):
    """Output and gradients of the depthwise conv in float64 (torch's own Conv3d)."""
    xr = x.detach().double().requires_grad_()
    wr = weight.detach().double().requires_grad_()
    y = F.conv3d(xr, wr, None, stride, padding, 1, x.shape[1])
    y.backward(g.double())
    return y, xr.grad, wr.grad


def assert_close(a, b, what):
    scale = b.abs().max().item() or 1.0
    err = (a.double() - b).abs().max().item() / scale
    assert err < 1e-5, f"{what}: relative error {err:.1e}"


SHAPES = [  # (N, C, T, H, W): C 3 / 12 / 21 / 40 leave partial vectors on 4-, 8- and 16-float vectors
    (2, 40, 4, 9, 9), (1, 21, 3, 7, 5), (1, 12, 5, 6, 6), (2, 3, 2, 1, 1), (1, 17, 1, 2, 3),
]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind", ["spatial_s1", "spatial_s2", "temporal"])
@pytest.mark.parametrize("threads", [1, 2])
def test_kernel_matches_conv3d_in_float64(shape, kind, threads):
    c = shape[1]
    kernel, stride, padding = {
        "spatial_s1": ((1, 3, 3), (1, 1, 1), (0, 1, 1)),
        "spatial_s2": ((1, 3, 3), (1, 2, 2), (0, 1, 1)),
        "temporal": ((3, 1, 1), (1, 1, 1), (1, 0, 0)),
    }[kind]
    torch.manual_seed(0)
    conv = nn.Conv3d(c, c, kernel, stride, padding, groups=c, bias=False)
    x = torch.randn(shape).contiguous(memory_format=CL).requires_grad_()
    assert depthwise.kernel_applies(conv, x)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        y = depthwise.depthwise_kernel(conv, x)
        g = torch.randn_like(y)
        y.backward(g)
    finally:
        torch.set_num_threads(previous)
    ref_y, ref_dx, ref_dw = reference(x, conv.weight, stride, padding, g)
    assert y.shape == ref_y.shape and y.is_contiguous(memory_format=CL)
    assert x.grad.is_contiguous(memory_format=CL) and conv.weight.grad.shape == conv.weight.shape
    assert_close(y, ref_y, "output")
    assert_close(x.grad, ref_dx, "input gradient")
    assert_close(conv.weight.grad, ref_dw, "weight gradient")


def test_route_runs_the_kernel_and_a_non_channels_last_gradient_is_taken():
    """DepthwiseConv3d with impl kernel calls the kernel (not conv2d) on a channels-last clip, and an
    incoming gradient in another layout (a transpose upstream) gives the same gradients."""
    torch.manual_seed(0)
    ref = nn.Conv3d(8, 8, (1, 3, 3), padding=(0, 1, 1), groups=8, bias=False)
    dut = copy.deepcopy(ref)
    conv_routes.set_depthwise_impl(dut, "kernel")
    calls = []
    original = depthwise._Spatial.apply
    depthwise._Spatial.apply = lambda *a: calls.append(1) or original(*a)
    try:
        x = torch.randn(2, 8, 3, 6, 6).contiguous(memory_format=CL)
        y = dut(x.requires_grad_())
    finally:
        depthwise._Spatial.apply = original
    assert calls == [1]
    g = torch.randn(y.shape)  # NCTHW-contiguous, not channels-last
    y.backward(g)
    _, ref_dx, ref_dw = reference(x, ref.weight, (1, 1, 1), (0, 1, 1), g)
    assert_close(x.grad, ref_dx, "input gradient")
    assert_close(dut.weight.grad, ref_dw, "weight gradient")


@pytest.mark.parametrize("case", ["ncthw", "bias", "kernel5", "stride3", "float64", "temporal_stride2",
                                  "autocast"])
def test_cases_the_kernel_does_not_take_run_conv2d(case):
    torch.manual_seed(0)
    args = dict(kernel_size=(1, 3, 3), padding=(0, 1, 1), stride=1, bias=False)
    if case == "bias":
        args["bias"] = True
    elif case == "kernel5":
        args.update(kernel_size=(1, 5, 5), padding=(0, 2, 2))
    elif case == "stride3":
        args["stride"] = (1, 3, 3)
    elif case == "temporal_stride2":
        args.update(kernel_size=(3, 1, 1), padding=(1, 0, 0), stride=(2, 1, 1))
    ref = nn.Conv3d(6, 6, groups=6, **args)
    x = torch.randn(2, 6, 4, 7, 7)
    if case != "ncthw":
        x = x.contiguous(memory_format=CL)
    if case == "float64":
        ref, x = ref.double(), x.double()
    dut = copy.deepcopy(ref)
    conv_routes.set_depthwise_impl(dut, "kernel")
    if case == "autocast":
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert not depthwise.kernel_applies(dut, x)
        return
    assert not depthwise.kernel_applies(dut, x)
    y = dut(x.requires_grad_())
    assert torch.allclose(y, ref(x), atol=1e-5)


@pytest.mark.parametrize("shape,stride", [((2, 40, 6, 9, 9), 1), ((1, 21, 5, 7, 5), 2), ((3, 12, 4, 6, 6), 1),
                                          ((1, 17, 1, 3, 3), 2), ((2, 8, 2, 1, 1), 1)])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("act", ["relu", "identity"])
def test_spatial_temporal_pair_matches_the_two_convs_in_float64(shape, stride, threads, act):
    """One pass of the activation and both convs (the intermediate in a ring of frames, recomputed in
    the backward pass): runs of frames split within a clip (one clip on two threads) and across clips
    (three on two)."""
    c = shape[1]
    torch.manual_seed(0)
    b1 = nn.Conv3d(c, c, (1, 3, 3), (1, stride, stride), (0, 1, 1), groups=c, bias=False)
    b2 = nn.Conv3d(c, c, (3, 1, 1), 1, (1, 0, 0), groups=c, bias=False)
    conv_routes.set_depthwise_impl(nn.ModuleList([b1, b2]), "kernel")
    pair = depthwise.SpatialTemporalPair(nn.ReLU(inplace=True) if act == "relu" else nn.Identity(), b1, b2)
    x = torch.randn(shape).contiguous(memory_format=CL).requires_grad_()
    calls = []
    original = depthwise._SpatialTemporal.apply
    depthwise._SpatialTemporal.apply = lambda *a: calls.append(1) or original(*a)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        y = pair(x)
        g = torch.randn_like(y)
        y.backward(g)
    finally:
        torch.set_num_threads(previous)
        depthwise._SpatialTemporal.apply = original
    assert calls == [1] and y.is_contiguous(memory_format=CL)
    xd, w1, w2 = (t.detach().double().requires_grad_() for t in (x, b1.weight, b2.weight))
    ref = F.relu(xd) if act == "relu" else xd
    ref = F.conv3d(F.conv3d(ref, w1, None, (1, stride, stride), (0, 1, 1), 1, c), w2, None, 1, (1, 0, 0), 1, c)
    ref.backward(g.double())
    assert_close(y, ref, "output")
    assert_close(x.grad, xd.grad, "input gradient")
    assert_close(b1.weight.grad, w1.grad, "spatial weight gradient")
    assert_close(b2.weight.grad, w2.grad, "temporal weight gradient")


def test_middle_routes_follow_the_depthwise_route_and_respect_hooks():
    """apply_conv_routes gives VoV3D's units the pair with the kernel route only; a hook on a middle conv
    makes the unit run its convs one by one (the hook sees its conv's output)."""
    from vov3d.config.defaults import get_cfg
    from vov3d.models import build_model
    from vov3d.models.vov3d import BottleneckUnit

    cfg = get_cfg()
    cfg.merge_from_file(os.path.join(REPO, "configs", "Kinetics", "VoV3D_M_16x5.yaml"))
    cfg.NUM_GPUS = 0
    model = build_model(cfg)
    units = [m for m in model.modules() if isinstance(m, BottleneckUnit)]
    assert conv_routes.set_middle_routes(model, "kernel") == len(units) > 0
    conv_routes.apply_conv_routes(model, CL, "conv2d")
    assert all(u.middle_route is None for u in units)
    conv_routes.apply_conv_routes(model, CL, "kernel")
    unit = units[1]
    assert isinstance(unit.middle_route, depthwise.SpatialTemporalPair) and unit.middle_route.temporal is unit.b2
    assert unit.middle_route.act is unit.a_relu
    seen = []
    handle = unit.b2.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    x = torch.randn(1, unit.a[0].in_channels, 2, 5, 5).contiguous(memory_format=CL)
    unit.eval()
    with torch.no_grad():
        y = unit(x)
    handle.remove()
    assert len(seen) == 1
    with torch.no_grad():
        assert torch.allclose(unit(x), y, atol=1e-5)  # the pair again, same result
    copied = copy.deepcopy(unit)
    assert copied.middle_route.spatial is copied.b1  # a copy's pair runs the copy's convs


def test_auto_offers_the_kernel_only_to_models_with_convs_it_takes():
    """X3D-M's depthwise convs are 3x3x3 (and a 5x1x1 in the stem): the kernel route would be the conv2d
    route again, so auto does not measure it; VoV3D's units are what it takes."""
    from vov3d.config.defaults import get_cfg
    from vov3d.models import build_model
    from vov3d.runtime import prepare

    for name, offered in (("X3D", False), ("VoV3D", True)):
        cfg = get_cfg()
        cfg.merge_from_file(os.path.join(REPO, "configs", "Kinetics", f"{name}_M_16x5.yaml"))
        cfg.NUM_GPUS = 0
        routes = prepare.candidate_routes(cfg, build_model(cfg), "cpu", inference=False)
        assert any(r.depthwise == "kernel" for r in routes) == offered, name
        assert any(r.depthwise == "conv2d" for r in routes)
