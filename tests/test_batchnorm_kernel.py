"""The training BatchNorm kernel for narrow channels-last clips (vov3d/runtime/batchnorm.py,
MODEL.BATCHNORM_IMPL) gives nn.BatchNorm3d's outputs, gradients and running statistics, falls back to
the stock forward where it does not apply, and is a route lever like the others. No timing
assertions: tools/benchmark.py --mode model measures speed."""

import copy
import logging
import os

import pytest
import torch
import torch.nn as nn

from tests.conftest import randomize_bn
from vov3d.config import get_cfg
from vov3d.models import build_model
from vov3d.runtime import batchnorm, kernels, prepare
from vov3d.runtime.batchnorm import KernelBatchNorm3d, set_batchnorm_impl
from vov3d.runtime.prepare import Route, apply_route

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CL = torch.channels_last_3d


@pytest.fixture(scope="module")
def kernel():
    lib = kernels.load_library("batchnorm_cpu")
    if lib is None:
        reason = kernels.unavailable_reason("batchnorm_cpu")
        if os.environ.get("CI"):
            pytest.fail(f"the CPU kernel must build on CI: {reason}")
        pytest.skip(f"no CPU kernel here: {reason}")
    return lib


def pair(channels, affine=True, momentum=0.1, seed=0):
    torch.manual_seed(seed)
    stock = nn.BatchNorm3d(channels, affine=affine, momentum=momentum).train()
    if affine:
        with torch.no_grad():
            stock.weight.uniform_(0.5, 1.5)
            stock.bias.uniform_(-1, 1)
    fast = copy.deepcopy(stock)
    assert set_batchnorm_impl(fast, "kernel") == 1 and type(fast) is KernelBatchNorm3d
    return stock, fast


def close(a, b, rel=1e-4):
    return (a - b).abs().max().item() <= rel * max(1.0, a.abs().max().item())


@pytest.mark.parametrize("shape,scale,offset", [
    ((2, 20, 4, 7, 7), 1.0, 0.0),
    ((3, 7, 2, 5, 5), 1.0, 0.0),  # a channel count that is no divisor of the vector width, a tail
    ((1, 64, 3, 4, 4), 1.0, 0.0),  # the widest layer the kernel takes
    ((2, 40, 2, 6, 6), 0.01, 100.0),  # a large mean, small variance: sums of x and x^2 would cancel
    ((2, 16, 1, 1, 2), 1.0, 0.0),  # two positions
])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("threads", [1, 2])
def test_kernel_matches_batchnorm_in_training(kernel, shape, scale, offset, affine, threads):
    stock, fast = pair(shape[1], affine)
    exact = copy.deepcopy(stock).double()  # float64: the reference both are held to

    def as_good_as_stock(s, f, e, rel):
        # within `rel` of float64, or no further from it than 1.5x stock's own float32 error (a
        # large mean over a small variance is ill-conditioned in float32 for both)
        err_stock, err_fast = (s.double() - e).abs().max().item(), (f.double() - e).abs().max().item()
        return err_fast <= max(rel * max(1.0, e.abs().max().item()), 1.5 * err_stock)

    g = torch.Generator().manual_seed(1)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for step in range(2):  # running statistics over two steps
            x = (torch.randn(shape, generator=g) * scale + offset).contiguous(memory_format=CL)
            grad = torch.randn(shape, generator=g).contiguous(memory_format=CL)
            xs, xf, xe = x.clone().requires_grad_(), x.clone().requires_grad_(), x.double().requires_grad_()
            ys, yf, ye = stock(xs), fast(xf), exact(xe)
            for y, x_ in ((ys, xs), (yf, xf), (ye, xe)):
                y.backward(grad.to(y.dtype))
            assert yf.is_contiguous(memory_format=CL)
            assert as_good_as_stock(ys, yf, ye, 1e-4) and as_good_as_stock(xs.grad, xf.grad, xe.grad, 1e-3)
    finally:
        torch.set_num_threads(before)
    if affine:
        assert as_good_as_stock(stock.weight.grad, fast.weight.grad, exact.weight.grad, 1e-3)
        assert as_good_as_stock(stock.bias.grad, fast.bias.grad, exact.bias.grad, 1e-4)
    for name in ("running_mean", "running_var"):
        assert as_good_as_stock(getattr(stock, name), getattr(fast, name), getattr(exact, name), 1e-4), name
    assert torch.equal(stock.num_batches_tracked, fast.num_batches_tracked)


def test_same_bits_on_every_run(kernel):
    """Bit-exact resumes need the same sums in the same order every time (per-thread partial sums
    added in thread order, not as threads finish)."""
    x = torch.randn(2, 20, 8, 14, 14).contiguous(memory_format=CL)
    grad = torch.randn(2, 20, 8, 14, 14).contiguous(memory_format=CL)
    results = []
    for _ in range(3):
        _, fast = pair(20)
        xi = x.clone().requires_grad_()
        y = fast(xi)
        y.backward(grad)
        results.append((y.detach(), xi.grad, fast.weight.grad, fast.running_var))
    for other in results[1:]:
        assert all(torch.equal(a, b) for a, b in zip(results[0], other))


def test_cumulative_average_when_momentum_is_none(kernel):
    stock, fast = pair(20, momentum=None)
    g = torch.Generator().manual_seed(2)
    for _ in range(3):
        x = torch.randn(2, 20, 2, 4, 4, generator=g).contiguous(memory_format=CL)
        stock(x), fast(x)
    assert close(stock.running_mean, fast.running_mean) and close(stock.running_var, fast.running_var)


def test_stock_forward_where_the_kernel_does_not_apply(kernel, monkeypatch):
    calls = []
    real = batchnorm._KernelBatchNormFunction.apply
    monkeypatch.setattr(batchnorm._KernelBatchNormFunction, "apply", lambda *a: calls.append(1) or real(*a))
    _, fast = pair(20)
    x = torch.randn(2, 20, 2, 4, 4)
    fast(x.contiguous(memory_format=CL))
    assert calls  # the kernel ran
    calls.clear()
    fast(x)  # NCTHW
    fast(x.double().contiguous(memory_format=CL).float().to(memory_format=torch.contiguous_format))
    fast.eval()(x.contiguous(memory_format=CL))  # eval: running statistics
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fast.train()(x.contiguous(memory_format=CL))
    _, wide = pair(batchnorm.NARROW + 1)
    wide(torch.randn(2, batchnorm.NARROW + 1, 2, 3, 3).contiguous(memory_format=CL))
    assert not calls
    with pytest.raises(ValueError):  # one value per channel: nn.BatchNorm's own error
        fast(torch.randn(1, 20, 1, 1, 1).contiguous(memory_format=CL))


def test_route_retypes_in_place_and_back(kernel):
    cfg = get_cfg()
    cfg.merge_from_file(os.path.join(REPO, "configs", "Kinetics", "VoV3D_M_16x5.yaml"))
    cfg.merge_from_list(["NUM_GPUS", 0, "DATA.NUM_FRAMES", 4, "DATA.TRAIN_CROP_SIZE", 32, "DATA.TEST_CROP_SIZE", 32,
                         "MODEL.NUM_CLASSES", 7])
    torch.manual_seed(0)
    model = randomize_bn(build_model(cfg)).train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    params = [id(p) for p in model.parameters()]
    x = torch.randn(2, 3, 4, 32, 32).contiguous(memory_format=CL)
    labels = torch.tensor([1, 4])
    exact = copy.deepcopy(model).double()
    stock = apply_route(copy.deepcopy(model), Route("channels_last_3d", "conv2d"))
    fast = apply_route(model, Route("channels_last_3d", "conv2d", batchnorm="kernel"))
    assert fast is model and [id(p) for p in model.parameters()] == params
    assert any(type(m) is KernelBatchNorm3d for m in model.modules())
    assert state.keys() == model.state_dict().keys()
    logits = []
    for m, clip in ((stock, x), (fast, x), (exact, x.double())):  # one train step each, same dropout masks
        torch.manual_seed(3)
        logits.append(m([clip]))
        nn.functional.cross_entropy(logits[-1], labels).backward()

    def relative_error(tensors, reference):
        diff = torch.cat([(t.double() - r.double()).flatten() for t, r in zip(tensors, reference)])
        return (diff.norm() / torch.cat([r.double().flatten() for r in reference]).norm()).item()

    # The forward is well conditioned: logits and running statistics as close to float64 as stock's.
    for name, got, ref, want in (
        ("logits", [logits[1]], [logits[2]], [logits[0]]),
        ("buffers", list(fast.state_dict().values()), list(exact.state_dict().values()),
         list(stock.state_dict().values())),
    ):
        assert relative_error(got, ref) <= max(1e-5, 1.5 * relative_error(want, ref)), name
    # The backward of 40 batch-statistics BNs over 2 x 4 x 1^2 .. 16^2 positions is not: a rounding
    # difference in the forward comes back amplified (stock's own gradients are 2e-4 to 2e-2 from
    # float64 depending on the op order of Swish). A wrong gradient formula would be off by O(1); the
    # BN layer's own gradients are held tightly in test_kernel_matches_batchnorm_in_training.
    grads = [[p.grad for p in m.parameters()] for m in (stock, fast, exact)]
    assert relative_error(grads[1], grads[2]) <= 0.05
    apply_route(model, Route("channels_last_3d", "conv2d"))
    assert not any(type(m) is KernelBatchNorm3d for m in model.modules())


def test_no_compiler_means_no_candidate_or_a_named_error(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("CC", "no-such-compiler-vov3d")
    monkeypatch.setenv("VOV3D_KERNEL_CACHE", str(tmp_path / "kernels"))
    monkeypatch.setattr(kernels, "_libraries", {})
    monkeypatch.setattr(kernels, "_failures", {})
    cfg = get_cfg()
    cfg.merge_from_file(os.path.join(REPO, "configs", "Kinetics", "VoV3D_M_16x5.yaml"))
    cfg.merge_from_list(["NUM_GPUS", 0, "DATA.NUM_FRAMES", 4, "DATA.TRAIN_CROP_SIZE", 32, "MODEL.NUM_CLASSES", 7,
                         "MODEL.MEMORY_FORMAT", "channels_last_3d", "MODEL.DEPTHWISE_IMPL", "conv2d",
                         "MODEL.POINTWISE_IMPL", "conv"])
    model = build_model(cfg)
    with caplog.at_level(logging.WARNING):
        routes = prepare.candidate_routes(cfg, model, "cpu", inference=False)
    assert [r.batchnorm for r in routes] == ["stock"] and "no-such-compiler-vov3d" in caplog.text
    cfg.MODEL.BATCHNORM_IMPL = "kernel"
    with pytest.raises(RuntimeError, match="MODEL.BATCHNORM_IMPL"):
        prepare.prepare_for_training(model, cfg)
