"""Speed levers (vov3d/runtime) keep outputs, gradients and checkpoints; the benchmark tool runs.

No timing assertions here: speed is measured by tools/benchmark.py --mode model; the measured `auto`
decisions are tested in tests/test_autotune.py.
"""

import copy
import json
import os
import subprocess
import sys

import pytest
import torch
import torch.nn as nn

from tests.conftest import randomize_bn
from vov3d.config.defaults import get_cfg
from vov3d.models import build_model
from vov3d.runtime import conv_routes, fold_bn, layout, levers, prepare
from vov3d.runtime.layout import to_model_format

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOL = 1e-5


def tiny_cfg(name, memory_format="contiguous", depthwise="conv3d", pointwise="conv"):
    cfg = get_cfg()
    cfg.merge_from_file(os.path.join(REPO, "configs", "Kinetics", f"{name}_M_16x5.yaml"))
    cfg.NUM_GPUS = 0
    cfg.DATA.NUM_FRAMES = 4
    cfg.DATA.TRAIN_CROP_SIZE = 32
    cfg.DATA.TEST_CROP_SIZE = 32
    cfg.MODEL.NUM_CLASSES = 7
    cfg.MODEL.DROPOUT_RATE = 0.0
    cfg.MODEL.MEMORY_FORMAT = memory_format
    cfg.MODEL.DEPTHWISE_IMPL = depthwise
    cfg.MODEL.POINTWISE_IMPL = pointwise
    return cfg


def build(cfg):
    """The built model with the routes cfg's explicit MODEL.MEMORY_FORMAT / DEPTHWISE_IMPL / POINTWISE_IMPL name."""
    torch.manual_seed(0)
    model = randomize_bn(build_model(cfg))
    fmt = layout.memory_format_from_name(cfg.MODEL.MEMORY_FORMAT)
    return conv_routes.apply_conv_routes(model, fmt, cfg.MODEL.DEPTHWISE_IMPL, cfg.MODEL.POINTWISE_IMPL)


def logits(model, x):
    """Eval-mode classifier outputs (pre-softmax), captured at head.projection."""
    out = []
    h = model.head.projection.register_forward_hook(lambda m, i, o: out.append(o))
    model.eval()
    with torch.no_grad():
        model([x])
    h.remove()
    return out[0]


@pytest.fixture(scope="module")
def clip():
    return torch.randn(2, 3, 4, 32, 32, generator=torch.Generator().manual_seed(1))


# ----------------------------------------------------------------------------------------------- #
# Depthwise Conv3d as Conv2d
# ----------------------------------------------------------------------------------------------- #


def assert_same_forward_backward(ref, dut, x):
    """`dut` (a conv route) gives `ref`'s output, input gradient and parameter gradients on `x`, and
    keeps a channels-last clip channels-last."""
    xr, xd = x.clone().requires_grad_(), x.clone().requires_grad_()
    yr, yd = ref(xr), dut(xd)
    assert yd.shape == yr.shape
    assert torch.allclose(yd, yr, atol=TOL)
    if x.is_contiguous(memory_format=torch.channels_last_3d):
        assert yd.is_contiguous(memory_format=torch.channels_last_3d)
    g = torch.randn_like(yr)
    yr.backward(g)
    yd.backward(g)
    assert torch.allclose(xd.grad, xr.grad, atol=TOL)
    assert torch.allclose(dut.weight.grad, ref.weight.grad, atol=1e-4)
    if ref.bias is not None:
        assert torch.allclose(dut.bias.grad, ref.bias.grad, atol=1e-4)


@pytest.mark.parametrize("kernel,stride,bias", [
    ((1, 3, 3), (1, 1, 1), False), ((1, 3, 3), (1, 2, 2), False), ((1, 5, 5), (1, 2, 2), True),
    ((3, 1, 1), (1, 1, 1), False), ((5, 1, 1), (1, 1, 1), True), ((3, 1, 1), (2, 1, 1), True),
])
@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last_3d])
@pytest.mark.parametrize("size", [9, 2])  # 2: a map smaller than the kernel (padded before the conv)
@pytest.mark.parametrize("impl", ["conv2d", "kernel"])  # kernel: the C kernel where it applies, else conv2d
def test_depthwise_routes_match_conv3d_forward_and_backward(kernel, stride, bias, fmt, size, impl):
    torch.manual_seed(0)
    c = 6
    ref = nn.Conv3d(c, c, kernel, stride=stride, padding=tuple(k // 2 for k in kernel), groups=c, bias=bias)
    ref = ref.to(memory_format=fmt)
    dut = copy.deepcopy(ref)
    assert conv_routes.set_depthwise_impl(dut, impl) == 1
    assert isinstance(dut, conv_routes.DepthwiseConv3d) and isinstance(dut, nn.Conv3d)
    x = torch.randn(2, c, 5, size, size).contiguous(memory_format=fmt)
    assert_same_forward_backward(ref, dut, x)
    # The switch goes back to the Conv3d forward (the channels-last route's, which may pick another
    # kernel than stock with one thread: equal to it, close to stock), and the checkpoint format never changes.
    conv_routes.set_depthwise_impl(dut, "conv3d")
    channels_last_ref = copy.deepcopy(ref)
    assert conv_routes.route_channels_last_convs(channels_last_ref) == 1
    assert torch.equal(dut(x), channels_last_ref(x))
    assert torch.allclose(dut(x), ref(x), atol=TOL)
    assert list(dut.state_dict()) == list(ref.state_dict())


# ----------------------------------------------------------------------------------------------- #
# 1x1x1 Conv3d as a matrix product
# ----------------------------------------------------------------------------------------------- #


@pytest.mark.parametrize("fmt", [torch.channels_last_3d, torch.contiguous_format])
@pytest.mark.parametrize("bias", [False, True])
def test_pointwise_matmul_matches_conv3d_forward_and_backward(fmt, bias):
    torch.manual_seed(0)
    ref = nn.Conv3d(6, 10, 1, bias=bias).to(memory_format=torch.channels_last_3d)
    dut = copy.deepcopy(ref)
    assert conv_routes.set_pointwise_impl(dut, "matmul") == 1
    assert isinstance(dut, conv_routes.PointwiseConv3d)
    x = torch.randn(2, 6, 3, 5, 7).contiguous(memory_format=fmt)  # a correct result in either layout
    assert_same_forward_backward(ref, dut, x)
    assert list(dut.state_dict()) == list(ref.state_dict())


def test_only_1x1x1_convs_become_pointwise_and_only_in_channels_last():
    convs = [nn.Conv3d(4, 4, 1), nn.Conv3d(4, 4, 1, stride=2), nn.Conv3d(4, 4, 1, groups=2),
             nn.Conv3d(4, 4, (1, 3, 3), padding=(0, 1, 1)), nn.Conv3d(4, 4, 1, padding=1)]
    seq = nn.Sequential(*convs)
    conv_routes.apply_conv_routes(seq, torch.channels_last_3d, "conv3d", "matmul")
    assert [type(m) is conv_routes.PointwiseConv3d for m in seq] == [True, False, False, False, False]
    assert seq[0].pointwise_impl == "matmul"
    conv_routes.apply_conv_routes(seq, torch.contiguous_format, "conv3d", "matmul")
    assert all(type(m) is nn.Conv3d for m in seq)  # the products need channels-last rows
    with pytest.raises(ValueError, match="pointwise"):
        conv_routes.set_pointwise_impl(seq, "gemm")


def test_only_factorizable_depthwise_convs_switch():
    full = nn.Conv3d(4, 4, (1, 3, 3), padding=(0, 1, 1))
    dw333 = nn.Conv3d(4, 4, 3, padding=1, groups=4)
    mult = nn.Conv3d(4, 8, (1, 3, 3), padding=(0, 1, 1), groups=4)
    seq = nn.Sequential(full, dw333, mult)
    assert conv_routes.set_depthwise_impl(seq, "conv2d") == 0
    assert all(type(m) is nn.Conv3d for m in seq)


def test_auto_levers_offer_stock_first_and_explicit_values_only_themselves():
    cfg = tiny_cfg("VoV3D")
    cfg.MODEL.DEPTHWISE_IMPL = "auto"
    cfg.MODEL.MEMORY_FORMAT = "auto"
    cfg.MODEL.POINTWISE_IMPL = "auto"
    assert levers.depthwise_choices(cfg, "cpu") == ["conv3d", "conv2d", "kernel"]
    assert levers.depthwise_choices(cfg, "cuda") == ["conv3d", "conv2d"]  # the kernel is a CPU one
    assert levers.memory_format_choices(cfg) == [torch.contiguous_format, torch.channels_last_3d]
    assert levers.fused_units_choices(cfg, "cpu") == [False, True]
    assert levers.fused_units_choices(cfg, "cuda") == [False]  # a CPU kernel
    assert levers.inference_amp_choices(cfg, "cpu") == [None]  # autocast on CPU is opt-in
    assert levers.pointwise_choices(cfg) == ["conv", "matmul"]
    assert levers.batchnorm_choices(cfg, "cpu") == ["stock", "kernel"]
    assert levers.batchnorm_choices(cfg, "cuda") == ["stock"]  # a CPU kernel
    model = build_model(cfg)
    cfg.MODEL.BATCHNORM_IMPL = "stock"
    names = [r.name for r in prepare.candidate_routes(cfg, model, "cpu", inference=False)]
    # the depthwise kernel reads channels-last clips only: no contiguous + dw_kernel
    assert names == ["stock", "dw_conv2d", "cl3d", "cl3d+pw_matmul", "cl3d+dw_conv2d", "cl3d+dw_conv2d+pw_matmul",
                     "cl3d+dw_kernel", "cl3d+dw_kernel+pw_matmul"]
    cfg.MODEL.BATCHNORM_IMPL = "auto"  # the BN kernel: channels-last training routes only
    names = [r.name for r in prepare.candidate_routes(cfg, model, "cpu", inference=False)]
    assert names == ["stock", "dw_conv2d", "cl3d", "cl3d+bn_kernel", "cl3d+pw_matmul", "cl3d+pw_matmul+bn_kernel",
                     "cl3d+dw_conv2d", "cl3d+dw_conv2d+bn_kernel", "cl3d+dw_conv2d+pw_matmul",
                     "cl3d+dw_conv2d+pw_matmul+bn_kernel", "cl3d+dw_kernel", "cl3d+dw_kernel+bn_kernel",
                     "cl3d+dw_kernel+pw_matmul", "cl3d+dw_kernel+pw_matmul+bn_kernel"]
    names = [r.name for r in prepare.candidate_routes(cfg, model, "cpu", inference=True)]
    assert "cl3d+dw_conv2d+fused" in names and not any("fused" in n and "pw_" in n for n in names)
    assert not any("bn_" in n for n in names)  # inference copies fold their BNs
    cfg.MODEL.POINTWISE_IMPL = "matmul"
    cfg.MODEL.MEMORY_FORMAT = "contiguous"  # products need channels-last rows: contiguous keeps convs
    assert all(r.pointwise == "conv" for r in prepare.candidate_routes(cfg, model, "cpu", inference=False))
    cfg.MODEL.MEMORY_FORMAT = "auto"
    cfg.MODEL.DEPTHWISE_IMPL = "conv3d"
    cfg.MODEL.CPU_FUSED_UNITS = "on"
    cfg.MODEL.INFERENCE_AMP = "bfloat16"
    assert levers.depthwise_choices(cfg, "cpu") == ["conv3d"]
    assert levers.fused_units_choices(cfg, "cpu") == [True]
    assert levers.inference_amp_choices(cfg, "cpu") == [torch.bfloat16]
    assert levers.pointwise_choices(cfg) == ["matmul"]
    cfg.MODEL.BATCHNORM_IMPL = "kernel"
    assert levers.batchnorm_choices(cfg, "cpu") == ["kernel"]
    cfg.MODEL.BATCHNORM_IMPL = "yes"
    with pytest.raises(ValueError, match="MODEL.BATCHNORM_IMPL"):
        levers.validate(cfg)
    cfg.MODEL.BATCHNORM_IMPL = "auto"
    cfg.MODEL.DEPTHWISE_IMPL = "bogus"
    with pytest.raises(ValueError, match="MODEL.DEPTHWISE_IMPL"):
        levers.validate(cfg)
    cfg.MODEL.DEPTHWISE_IMPL = "conv3d"
    cfg.MODEL.POINTWISE_IMPL = "gemm"
    with pytest.raises(ValueError, match="MODEL.POINTWISE_IMPL"):
        levers.validate(cfg)


def test_build_model_returns_the_plain_module():
    model = build_model(tiny_cfg("VoV3D", "channels_last_3d", "conv2d"))
    assert all(type(m) is nn.Conv3d for m in model.modules() if isinstance(m, nn.Conv3d))
    assert all(p.is_contiguous() for p in model.parameters())


# ----------------------------------------------------------------------------------------------- #
# Whole models: every fp32 lever keeps outputs within 1e-5 of the plain path
# ----------------------------------------------------------------------------------------------- #

LAYOUTS = [("channels_last_3d", "conv3d", "conv"), ("contiguous", "conv2d", "conv"),
           ("channels_last_3d", "conv2d", "conv"), ("channels_last_3d", "conv2d", "matmul"),
           ("channels_last_3d", "kernel", "matmul")]


@pytest.mark.parametrize("name", ["VoV3D", "X3D"])
def test_layout_levers_keep_eval_outputs_and_state_dict(name, clip):
    plain = build(tiny_cfg(name))
    ref = logits(plain, clip)
    ref_probs = plain.eval()([clip]).detach()
    plain_state = plain.state_dict()
    for fmt, impl, pw in LAYOUTS:
        cfg = tiny_cfg(name, fmt, impl, pw)
        model = build(cfg)
        state = model.state_dict()
        assert list(state) == list(plain_state)
        for k, v in state.items():
            assert v.shape == plain_state[k].shape and torch.equal(v, plain_state[k]), k
        x = to_model_format(clip, cfg)
        assert torch.allclose(logits(model, x), ref, atol=TOL), (fmt, impl)
        assert torch.allclose(model.eval()([x]).detach(), ref_probs, atol=TOL)


@pytest.mark.parametrize("name", ["VoV3D", "X3D"])
def test_layout_levers_keep_train_loss_and_gradients(name, clip):
    """Train-mode loss within 1e-5; gradients compared with BN on running statistics, because batch
    statistics over a 2 x 4 x 32^2 clip amplify rounding (fp32 vs fp64 differs by ~2% there)."""
    labels = torch.tensor([1, 5])

    def loss_and_grads(cfg, frozen_bn):
        model = build(cfg).train()
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.weight.fill_(1.0)  # zero-initialised final BNs would leave gradients at 0
                    if frozen_bn:
                        m.eval()
        loss = nn.functional.cross_entropy(model([to_model_format(clip, cfg)]), labels)
        loss.backward()
        return loss.detach(), {k: p.grad for k, p in model.named_parameters()}

    ref_loss, _ = loss_and_grads(tiny_cfg(name), frozen_bn=False)
    _, ref_grads = loss_and_grads(tiny_cfg(name), frozen_bn=True)
    for fmt, impl, pw in LAYOUTS:
        loss, _ = loss_and_grads(tiny_cfg(name, fmt, impl, pw), frozen_bn=False)
        assert torch.allclose(loss, ref_loss, atol=TOL), (fmt, impl, pw)
        _, grads = loss_and_grads(tiny_cfg(name, fmt, impl, pw), frozen_bn=True)
        for k, g in grads.items():
            scale = max(1.0, ref_grads[k].abs().max().item())
            assert torch.allclose(g, ref_grads[k], atol=TOL * scale), (fmt, impl, pw, k)


# ----------------------------------------------------------------------------------------------- #
# BatchNorm folding
# ----------------------------------------------------------------------------------------------- #


@pytest.mark.parametrize("name", ["VoV3D", "X3D"])
@pytest.mark.parametrize("fmt,impl", [("contiguous", "conv3d"), ("channels_last_3d", "conv2d")])
def test_fold_batchnorm_folds_every_conv_bn_and_matches(name, fmt, impl, clip):
    cfg = tiny_cfg(name, fmt, impl)
    model = build(cfg)
    before = copy.deepcopy(model.state_dict())
    x = to_model_format(clip, cfg)
    folded = fold_bn.fold_batchnorm(model, [x])
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in folded.modules())
    assert not folded.training and not any(p.requires_grad for p in folded.parameters())
    assert torch.allclose(logits(folded, x), logits(model, x), atol=TOL)
    with torch.no_grad():
        assert torch.allclose(folded([x]), model.eval()([x]), atol=TOL)
    # The model itself (what is trained and checkpointed) is untouched.
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def test_folded_model_traces_for_export(clip):
    cfg = tiny_cfg("VoV3D", "channels_last_3d", "conv2d")
    model = build(cfg)
    x = to_model_format(clip, cfg)
    folded = fold_bn.fold_batchnorm(model, [x])
    with torch.no_grad():
        traced = torch.jit.trace(folded, ([x],), check_trace=False)
        assert torch.allclose(traced([x]), folded([x]), atol=TOL)


class _SharedOutput(nn.Module):
    """conv -> bn, but the conv output also feeds a residual add: folding would be wrong."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(3, 3, 1, bias=False)
        self.bn = nn.BatchNorm3d(3)
        self.conv2 = nn.Conv3d(3, 3, 1, bias=False)
        self.bn2 = nn.BatchNorm3d(3)

    def forward(self, xs):
        y = self.conv(xs[0])
        z = self.bn(y) + y
        return self.bn2(self.conv2(z))


def test_fold_batchnorm_skips_a_conv_output_used_twice():
    model = randomize_bn(_SharedOutput()).eval()
    x = torch.randn(2, 3, 2, 4, 4)
    assert fold_bn.find_conv_bn_pairs(model, [x]) == [("conv2", "bn2")]
    folded = fold_bn.fold_batchnorm(model, [x])
    assert isinstance(folded.bn, nn.BatchNorm3d) and isinstance(folded.bn2, nn.Identity)
    with torch.no_grad():
        assert torch.allclose(folded([x]), model([x]), atol=TOL)


# ----------------------------------------------------------------------------------------------- #
# Engine helpers
# ----------------------------------------------------------------------------------------------- #


def test_prepare_for_inference_folds_a_copy(clip):
    cfg = tiny_cfg("VoV3D", "channels_last_3d", "conv2d")
    cfg.MODEL.CPU_FUSED_UNITS = "off"
    model = build(cfg)
    assert cfg.MODEL.FOLD_BN  # the default: tests and exports run a folded copy
    before = copy.deepcopy(model.state_dict())
    for fold in (False, True):
        cfg.MODEL.FOLD_BN = fold
        inf = prepare.prepare_for_inference(model, cfg)
        assert inf is not model and not inf.train().training  # an eval-only copy
        x = to_model_format(clip, cfg)
        with torch.no_grad():
            assert torch.allclose(inf([x]), model.eval()([x]), atol=TOL)
        (route,) = inf._built.values()
        has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in route.modules())
        assert has_bn is not fold
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_prepare_for_training_compiles_only_when_asked():
    cfg = tiny_cfg("VoV3D", "channels_last_3d", "conv2d")
    cfg.MODEL.BATCHNORM_IMPL, cfg.MODEL.CPU_KEEP_HEAP = "stock", "off"  # nothing to measure: every lever explicit
    model = build_model(cfg)
    params = list(model.parameters())
    assert prepare.prepare_for_training(model, cfg) is model
    assert list(model.parameters()) == params  # an optimizer built before stays valid
    assert any(isinstance(m, conv_routes.DepthwiseConv3d) for m in model.modules())
    wrapped = prepare.prepare_for_training(model, cfg, wrap=lambda m: nn.Sequential(m))
    assert isinstance(wrapped, nn.Sequential) and wrapped[0] is model
    cfg.MODEL.COMPILE = True
    compiled = prepare.prepare_for_training(model, cfg)
    assert compiled is not model and compiled._orig_mod is model  # constructed lazily, compiled on call


class _Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv3d(3, 8, 1, bias=False)
        self.b = nn.Conv3d(8, 8, (1, 3, 3), padding=(0, 1, 1), groups=8, bias=False)
        self.t = nn.Conv3d(8, 8, (3, 1, 1), padding=(1, 0, 0), groups=8, bias=False)
        self.bn = nn.BatchNorm3d(8)

    def forward(self, xs):
        return self.bn(self.t(self.b(self.a(xs[0])))).relu().mean((2, 3, 4))


def test_compiled_levers_match_on_a_small_model():
    pytest.importorskip("torch._dynamo")
    model = randomize_bn(_Toy()).eval().to(memory_format=torch.channels_last_3d)
    conv_routes.set_depthwise_impl(model, "conv2d")
    x = torch.randn(2, 3, 4, 8, 8).contiguous(memory_format=torch.channels_last_3d)
    with torch.no_grad():
        ref = model([x])
        try:
            out = torch.compile(model)([x])
        except Exception as e:  # no working compiler toolchain in this environment
            pytest.skip(f"torch.compile unavailable: {type(e).__name__}: {e}")
    assert torch.allclose(out, ref, atol=TOL)


# ----------------------------------------------------------------------------------------------- #
# Batches in the model's memory format, one copy
# ----------------------------------------------------------------------------------------------- #


@pytest.mark.parametrize("fmt", [torch.channels_last_3d, torch.contiguous_format, "channels_last_3d", "contiguous"])
@pytest.mark.parametrize("shape", [(3, 3, 4, 6, 5), (2, 6, 3, 4, 6, 5)])  # train batch, test batch (N, V, ...)
def test_clip_batches_are_born_in_the_model_layout(fmt, shape):
    out = layout.empty_clip_batch(shape, fmt)
    want = torch.channels_last_3d if fmt in (torch.channels_last_3d, "channels_last_3d") else torch.contiguous_format
    assert out.shape == shape
    clips = torch.randn(shape)
    out.copy_(clips)
    flat = out.reshape((-1,) + shape[-4:])
    assert flat.data_ptr() == out.data_ptr() and torch.equal(flat, clips.reshape(flat.shape))  # a view
    assert flat.is_contiguous(memory_format=want)
    # Already in the model's format: to_model_format hands it over without another copy.
    cfg = get_cfg()
    cfg.MODEL.MEMORY_FORMAT = "contiguous" if want == torch.contiguous_format else "channels_last_3d"
    assert layout.clip_memory_format(cfg) == want
    assert to_model_format(flat, cfg).data_ptr() == out.data_ptr()


class _Clips(torch.utils.data.Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        return i

    def __getitems__(self, indices):
        batch = layout.empty_clip_batch((len(indices), 3, 2, 4, 4))
        for k, i in enumerate(indices):
            batch[k].fill_(float(i))
        return batch


def test_clip_batch_in_a_worker_uses_shared_memory():
    loader = torch.utils.data.DataLoader(_Clips(), batch_size=2, num_workers=1, collate_fn=lambda b: b)
    batches = list(loader)
    assert len(batches) == 2
    for k, b in enumerate(batches):
        assert b.is_contiguous(memory_format=torch.channels_last_3d)
        assert torch.equal(b[:, 0, 0, 0, 0], torch.tensor([2.0 * k, 2.0 * k + 1]))


# ----------------------------------------------------------------------------------------------- #
# The benchmark tool
# ----------------------------------------------------------------------------------------------- #


def test_benchmark_tool_model_mode_prints_json(tmp_path):
    out = tmp_path / "bench.json"
    cmd = [
        sys.executable, os.path.join(REPO, "tools", "benchmark.py"), "--mode", "model",
        "--cfg", os.path.join(REPO, "configs", "Kinetics", "VoV3D_M_16x5.yaml"),
        "--batch", "1", "--frames", "4", "--crop", "32", "--iters", "1", "--repeats", "1", "--warmup", "1",
        "--threads", "1",  # a shared machine: two spinning threads per process crawl
        "--levers", "cl3d+dw_conv2d+fold_bn,defaults,api", "--json", "--output", str(out),
        # `defaults` measures the memory format and the fused kernel; the other levers (measured in
        # tests/test_autotune.py) are fixed here to keep the tool's run short.
        "MODEL.NUM_CLASSES", "10", "MODEL.DEPTHWISE_IMPL", "conv2d", "MODEL.POINTWISE_IMPL", "conv",
        "MODEL.BATCHNORM_IMPL", "stock", "MODEL.CPU_KEEP_HEAP", "off",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert result == json.loads(out.read_text())
    assert result["mode"] == "model" and result["device"] == "cpu" and result["threads"] == 1
    (cfg_res,) = result["configs"]
    assert (cfg_res["batch"], cfg_res["frames"], cfg_res["crop"]) == (1, 4, 32)
    rows = {r["variant"]: r for r in cfg_res["variants"]}
    assert list(rows) == ["stock", "cl3d+dw_conv2d+fold_bn", "defaults", "api"]
    assert rows["stock"]["train_ratio"] == 1.0 and rows["stock"]["eval_ratio"] == 1.0
    assert rows["defaults"]["levers"]["memory_format"] == "auto"  # measured by the runtime
    assert rows["api"]["train_step_s"] is None  # eval only
    for name, r in rows.items():
        assert r["eval_forward_s"] > 0 and r["max_abs_logit_diff_vs_stock"] <= TOL, name
        if name != "api":
            assert r["train_step_s"] > 0 and r["train_clips_per_s"] > 0
            assert r["peak_rss_train_mb"] > 0 and r["peak_rss_eval_mb"] > 0, r
    assert rows["cl3d+dw_conv2d+fold_bn"]["route"] == "cl3d+dw_conv2d / cl3d+dw_conv2d"
    goals = result["goals"]["VoV3D:VoV3D_M_16x5.yaml"]
    assert {"train_ok", "infer_ok", "api_eval_ok"} <= set(goals)
    machine = result["machine"]
    assert machine["cpu"] and machine["threads"] == 1 and isinstance(machine["isa"], list)
    assert "Machine: " in proc.stderr and "stock" in proc.stderr  # the table goes to stderr with --json


def test_batch_of_one_stays_channels_last_and_matches():
    """PyTorch sends some CPU convs of a one-clip batch to slow_conv3d (NCTHW out); ours stay channels-last."""
    cfg = tiny_cfg("VoV3D", "channels_last_3d", "conv2d")
    model = build(cfg).eval()
    assert any(type(m) is conv_routes.ChannelsLastConv3d for m in model.modules())
    ref = build(tiny_cfg("VoV3D")).eval()  # NCTHW, stock convs
    x = torch.randn(1, 3, 4, 32, 32)
    layouts = []
    model.s1.pathway0_stem.conv_xy.register_forward_hook(
        lambda m, i, o: layouts.append(o.is_contiguous(memory_format=torch.channels_last_3d)))
    with torch.no_grad():
        out = model([to_model_format(x, cfg)])
        assert torch.allclose(out, ref([x]), atol=TOL)
    assert layouts == [True]
    # Gradients flow through the oneDNN route too.
    model.train()
    xg = to_model_format(x, cfg).requires_grad_(True)
    model([xg]).sum().backward()
    assert xg.grad is not None and model.s1.pathway0_stem.conv_xy.weight.grad is not None
