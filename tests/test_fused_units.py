"""The fused CPU kernel for D(2+1)D bottlenecks (vov3d/runtime/fused_units.py, MODEL.CPU_FUSED_UNITS)
gives the outputs of the stock ops, falls back where it does not apply, and degrades to stock ops
when no C compiler is there. No timing assertions: tools/benchmark.py --mode model measures speed."""

import copy
import io
import logging
import os
import subprocess
import sys

import pytest
import torch
import torch.nn as nn

from tests.conftest import randomize_bn, require_reference
from vov3d.config import get_cfg, validate
from vov3d.models import build_model
from vov3d.runtime import kernels as cpu_kernels
from vov3d.runtime.fold_bn import fold_batchnorm
from vov3d.runtime.fused_units import (FusedD2plus1d, FusedHead, FusedResBlock, FusedStem, FusedTOSA,
                                       d2plus1d_parts, fuse_d2plus1d_blocks, lanes, pack_pointwise, stem_parts)
from vov3d.models.stems import X3DStem
from vov3d.runtime.layout import to_model_format
from vov3d.runtime.prepare import prepare_for_inference
from vov3d.models.vov3d import BottleneckUnit, TOSATransform
from vov3d.utils.checkpoint import load_checkpoint

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOL = 1e-5
CL = torch.channels_last_3d


@pytest.fixture(scope="module")
def kernel():
    lib = cpu_kernels.load_library()
    if lib is None:
        reason = cpu_kernels.unavailable_reason()
        if os.environ.get("CI"):
            pytest.fail(f"the CPU kernel must build on CI: {reason}")
        pytest.skip(f"no CPU kernel here: {reason}")
    return lib


def folded_unit(cin, inner, cout, stride, use_se, x):
    torch.manual_seed(0)
    unit = randomize_bn(BottleneckUnit(cin, inner, cout, stride, "d2plus1d", use_se=use_se)).eval()
    unit = unit.to(memory_format=CL)
    return fold_batchnorm(unit, x)


def clip(n, c, t, h, w, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, t, h, w, generator=g).contiguous(memory_format=CL)


@pytest.mark.parametrize(
    "cin,inner,cout,stride,use_se,shape",
    [
        ((20, 40, 20, 1, True, (2, 8, 14, 14))),  # VoV3D unit with residual and SE
        ((20, 40, 20, 1, False, (2, 8, 14, 14))),
        ((24, 40, 20, 2, True, (2, 8, 15, 13))),  # stride 2 on odd sizes, no residual
        ((7, 12, 5, 1, False, (3, 5, 6, 5))),  # channels that are no multiple of 16, odd batch
        ((5, 33, 5, 1, True, (1, 1, 4, 4))),  # a single frame
        ((16, 32, 16, 1, True, (1, 2, 1, 1))),  # a single position
        ((40, 80, 40, 2, False, (4, 3, 7, 7))),
    ],
)
@pytest.mark.parametrize("threads", [1, 2])
def test_fused_unit_matches_stock_ops(kernel, cin, inner, cout, stride, use_se, shape, threads):
    n, t, h, w = shape
    x = clip(n, cin, t, h, w)
    folded = folded_unit(cin, inner, cout, stride, use_se, x)
    parts = d2plus1d_parts(folded)
    assert parts is not None and parts["residual"] == (cin == cout and stride == 1)
    fused = FusedD2plus1d(folded, parts)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.no_grad():
            ref, out = folded(x), fused(x)
    finally:
        torch.set_num_threads(before)
    assert out.shape == ref.shape and out.is_contiguous(memory_format=CL)
    assert (out - ref).abs().max().item() <= TOL * max(1.0, ref.abs().max().item())


@pytest.mark.parametrize("use_se", [True, False])  # two passes / one pass (d2plus1d_unit)
def test_fused_unit_reads_and_writes_channel_slices(kernel, use_se):
    """What a T-OSA block does: input and output are channel slices of wider channels-last tensors."""
    x_wide = clip(2, 30, 4, 6, 6)
    x = x_wide[:, 5:25]
    folded = folded_unit(20, 24, 20, 1, use_se, x.contiguous(memory_format=CL))
    fused = FusedD2plus1d(folded, d2plus1d_parts(folded))
    buf = torch.full((2, 50, 4, 6, 6), 7.0).contiguous(memory_format=CL)
    with torch.no_grad():
        ref = folded(x.contiguous(memory_format=CL))
        fused.compute(x, buf[:, 10:30])
    assert torch.allclose(buf[:, 10:30], ref, atol=TOL)
    assert (buf[:, :10] == 7).all() and (buf[:, 30:] == 7).all()  # nothing written outside the slice


def test_fused_unit_falls_back_where_the_kernel_does_not_apply(kernel):
    x = clip(2, 8, 3, 5, 5)
    folded = folded_unit(8, 16, 8, 1, False, x)
    fused = FusedD2plus1d(folded, d2plus1d_parts(folded))
    calls = []
    folded.register_forward_hook(lambda m, i, o: calls.append(1))
    with torch.no_grad():
        ref = folded(x)
        calls.clear()
        assert torch.allclose(fused(x), ref, atol=TOL) and not calls  # the kernel ran
        assert torch.allclose(fused(x.contiguous()), ref, atol=TOL) and calls  # NCTHW: stock ops
        calls.clear()
        fused(x.double().contiguous(memory_format=CL).float())
        assert not calls
    xg = x.clone().requires_grad_(True)
    out = fused(xg)  # autograd: stock ops, gradients flow
    assert calls and out.requires_grad
    out.sum().backward()
    assert xg.grad is not None


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("residual_layout", [None, "rows", "slice"])
def test_pointwise_rows_is_a_1x1x1_conv_with_residual_and_relu(kernel, relu, residual_layout):
    """The aggregation GEMM: rows read from a channel slice, a bias, the shortcut in any layout."""
    torch.manual_seed(0)
    conv = nn.Conv3d(21, 19, 1).eval()
    x = clip(2, 30, 3, 5, 7)[:, 4:25]  # rows of 21 channels at a stride of 30
    res = {None: None, "rows": clip(2, 19, 3, 5, 7, seed=2), "slice": clip(2, 25, 3, 5, 7, seed=2)[:, 3:22]}[residual_layout]
    width = -(-19 // lanes()) * lanes()
    w, b = pack_pointwise(conv, 21, width)
    assert w.shape == (21, width) and b.shape == (width,)
    out = torch.empty(2, 19, 3, 5, 7).contiguous(memory_format=CL)
    ldr = 0 if res is None else res.stride(4)
    kernel.pointwise_rows(cpu_kernels.pointer(x), x.stride(4), 2 * 3 * 5 * 7, 21, cpu_kernels.pointer(w), width,
                          cpu_kernels.pointer(b), cpu_kernels.pointer(out), 19, 19, cpu_kernels.pointer(res), ldr,
                          int(relu), 2)
    with torch.no_grad():
        ref = conv(x.contiguous())
        ref = ref + res if res is not None else ref
        ref = torch.relu(ref) if relu else ref
    assert torch.allclose(out, ref, atol=TOL)


def test_parts_refuse_blocks_the_kernel_does_not_compute():
    x = clip(1, 8, 2, 4, 4)
    unit = BottleneckUnit(8, 16, 8, 1, "d2plus1d").eval().to(memory_format=CL)
    assert d2plus1d_parts(unit) is None  # BatchNorms not folded
    assert d2plus1d_parts(fold_batchnorm(unit, x)) is not None
    other = BottleneckUnit(8, 16, 8, 1, "dw3d").eval().to(memory_format=CL)
    assert d2plus1d_parts(fold_batchnorm(other, x)) is None  # another middle


def tiny_cfg(rel, opts=()):
    """A tiny config with the layout levers explicit (the kernel's own lever is what varies here)."""
    cfg = get_cfg()
    cfg.merge_from_file(os.path.join(REPO, "configs", rel))
    cfg.merge_from_list(["NUM_GPUS", 0, "DATA.NUM_FRAMES", 4, "DATA.TRAIN_CROP_SIZE", 32,
                         "DATA.TEST_CROP_SIZE", 32, "MODEL.NUM_CLASSES", 7, "MODEL.MEMORY_FORMAT",
                         "channels_last_3d", "MODEL.DEPTHWISE_IMPL", "conv2d", "MODEL.CPU_FUSED_UNITS", "on"]
                        + list(opts))
    return cfg


def inference_copy(model, cfg, x):
    """Returns the module the runtime's inference copy of `model` runs for clips shaped as `x`."""
    inf = prepare_for_inference(model, cfg)
    route = inf.route_for([x])
    return inf._built[route.name]


def _logits(model, x):
    out = []
    h = model.get_submodule("head.projection").register_forward_hook(lambda m, i, o: out.append(o))
    with torch.no_grad():
        probs = model([x])
    h.remove()
    return out[0], probs


@pytest.mark.parametrize("rel,opts,units,blocks,residual_blocks", [
    ("Kinetics/VoV3D_M_16x5.yaml", (), 40, 8, 8),
    ("Kinetics/VoV3D_L_16x5.yaml", (), 55, 11, 11),
    ("SSv1/VoV3D_M_32x1.yaml", ("MODEL.NUM_CLASSES", 5), 40, 8, 8),
    ("Kinetics/X3D_M_16x5.yaml", ("X3D.UNIT", "d2plus1d"), 26, 0, 26),  # the shortcut joins the unit's GEMM
    ("Kinetics/X3D_M_16x5.yaml", (), 0, 0, 0),  # depthwise 3x3x3 middles: nothing to fuse
])
def test_whole_models_match_with_fused_units(kernel, rel, opts, units, blocks, residual_blocks):
    cfg = tiny_cfg(rel, opts)
    torch.manual_seed(0)
    model = randomize_bn(build_model(cfg)).eval()
    x = to_model_format(torch.randn(3, 3, 4, 32, 32), cfg)
    cfg.MODEL.CPU_FUSED_UNITS = "off"
    plain = inference_copy(model, cfg, x)
    cfg.MODEL.CPU_FUSED_UNITS = "on" if units else "auto"
    fused = inference_copy(model, cfg, x)
    assert not any(isinstance(m, FusedD2plus1d) for m in plain.modules())
    assert sum(isinstance(m, FusedD2plus1d) for m in fused.modules()) == units
    assert sum(isinstance(m, FusedTOSA) for m in fused.modules()) == blocks
    assert sum(isinstance(m, FusedResBlock) for m in fused.modules()) == residual_blocks
    assert sum(isinstance(m, FusedStem) for m in fused.modules()) == (1 if units else 0)
    assert sum(isinstance(m, FusedHead) for m in fused.modules()) == (1 if units else 0)
    for m in fused.modules():  # a conv shortcut beside a T-OSA block runs in its kernel call
        if isinstance(m, FusedResBlock) and isinstance(m.block.residual_parts()["branch2"], FusedTOSA):
            assert (m.shortcut_stride is not None) == bool(m.block.residual_parts()["shortcut"])
    assert all(m.packed for m in fused.modules() if isinstance(m, FusedTOSA))  # one kernel call per block
    assert not any(isinstance(m, (FusedD2plus1d, FusedTOSA)) for m in model.modules())  # model untouched
    (lp, pp), (lf, pf) = _logits(plain, x), _logits(fused, x)
    assert (lf - lp).abs().max().item() <= TOL * max(1.0, lp.abs().max().item())
    assert torch.allclose(pf, pp, atol=TOL)


def folded_stem(cin, cout, taps, stride, seed=0):
    torch.manual_seed(seed)
    stem = randomize_bn(X3DStem(cin, cout, taps)).eval()
    stem.conv_xy.stride = (1, stride, stride)
    for p in stem.parameters():
        p.data.normal_()
    return fold_batchnorm(stem, torch.zeros(1, cin, 2, 8, 8))


@pytest.mark.parametrize("n,cin,cout,frames,size,taps,stride,layout", [
    (2, 3, 24, 8, (32, 32), 5, 2, "ncthw"),
    (1, 3, 20, 3, (17, 19), 5, 2, "channels_last"),  # fewer frames than taps; odd sizes; half vector of channels
    (3, 3, 24, 7, (9, 8), 3, 1, "ncthw"),
    (1, 2, 40, 1, (5, 6), 5, 2, "channels_last"),
    (2, 3, 12, 9, (33, 31), 7, 2, "view"),  # a strided view of a larger clip
])
@pytest.mark.parametrize("threads", [1, 2])
def test_fused_stem_matches_stock_ops(kernel, n, cin, cout, frames, size, taps, stride, layout, threads):
    stem = folded_stem(cin, cout, taps, stride)
    parts = stem_parts(stem)
    assert parts is not None and stem_parts(X3DStem(cin, cout, taps)) is None  # BN not folded: refused
    fused = FusedStem(stem, parts)
    g = torch.Generator().manual_seed(2)
    if layout == "view":
        x = torch.randn(n, cin, 2 * frames, size[0] + 3, size[1] + 5, generator=g)[:, :, ::2, 3:, 2:-3]
    else:
        x = torch.randn(n, cin, frames, *size, generator=g)
        if layout == "channels_last":
            x = x.contiguous(memory_format=CL)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    l2 = kernel.d2plus1d_l2_bytes(0)
    try:
        with torch.no_grad():
            ref, out = stem(x), fused(x)
            kernel.d2plus1d_l2_bytes(4 << 10)  # bands of one row
            banded = fused(x)
    finally:
        kernel.d2plus1d_l2_bytes(l2)
        torch.set_num_threads(old)
    assert out.shape == ref.shape and out.is_contiguous(memory_format=CL)
    scale = max(1.0, ref.abs().max().item())
    assert (out - ref).abs().max().item() <= TOL * scale
    assert (banded - ref).abs().max().item() <= TOL * scale
    with torch.enable_grad():  # autograd: the stem's own ops
        xg = x.clone().requires_grad_(True)
        fused(xg).sum().backward()
    assert xg.grad is not None


def test_fused_head_pools_globally_or_runs_its_own_ops(kernel):
    """The head's pooled map from the kernel where the pool covers the whole map; a larger test crop
    (several positions left: fully-convolutional testing) runs the head's own ops. Either way the
    stock outputs; the wrapped head still answers for its submodules and forward_head."""
    cfg = tiny_cfg("Kinetics/VoV3D_M_16x5.yaml", ())
    torch.manual_seed(0)
    model = randomize_bn(build_model(cfg)).eval()
    for size in (32, 48):  # a 1x1 map after res5 (the training crop), a 2x2 map
        x = to_model_format(torch.randn(2, 3, 4, size, size), cfg)
        cfg.MODEL.CPU_FUSED_UNITS = "off"
        plain = inference_copy(model, cfg, x)
        cfg.MODEL.CPU_FUSED_UNITS = "on"
        fused = inference_copy(model, cfg, x)
        head = fused.head
        assert isinstance(head, FusedHead) and head.applies(clip(2, head.cin, 4, 1, 1))
        (lp, pp), (lf, pf) = _logits(plain, x), _logits(fused, x)
        assert (lf - lp).abs().max().item() <= TOL * max(1.0, lp.abs().max().item())
        assert torch.allclose(pf, pp, atol=TOL)
        with torch.no_grad():
            feats = fused.forward_features([x]) if hasattr(fused, "forward_features") else None
            if feats is not None:
                assert torch.allclose(head.forward_head(feats), plain.head.forward_head(feats), atol=1e-4)
    assert isinstance(fused.get_submodule("head.projection"), nn.Linear)


@pytest.mark.parametrize("l2_kib", [4, 24])
def test_frames_cut_into_bands_of_rows_match(kernel, l2_kib):
    """A frame whose buffers outgrow the L2 is computed in bands of rows (res2 at 28^2 on a 512 KiB
    L2); a small L2 size makes every frame of a small clip take that path, bands of one row (4 KiB)
    and of a few (24 KiB), at strides 1 and 2, with and without SE."""
    cfg = tiny_cfg("Kinetics/VoV3D_M_16x5.yaml", ())
    torch.manual_seed(0)
    model = randomize_bn(build_model(cfg)).eval()
    x = to_model_format(torch.randn(3, 3, 4, 32, 32), cfg)
    cfg.MODEL.CPU_FUSED_UNITS = "off"
    plain = inference_copy(model, cfg, x)
    cfg.MODEL.CPU_FUSED_UNITS = "on"
    fused = inference_copy(model, cfg, x)
    (lp, pp), (_, pf) = _logits(plain, x), _logits(fused, x)  # this machine's L2 size: whole 8^2 frames
    l2 = kernel.d2plus1d_l2_bytes(0)
    try:
        assert kernel.d2plus1d_l2_bytes(l2_kib << 10) == l2_kib << 10
        lb, pb = _logits(fused, x)
    finally:
        kernel.d2plus1d_l2_bytes(l2)
    assert (lb - lp).abs().max().item() <= TOL * max(1.0, lp.abs().max().item())
    assert torch.allclose(pb, pp, atol=TOL) and torch.allclose(pf, pp, atol=TOL)


def test_official_checkpoint_outputs_with_fused_units(kernel):
    ckpt, io_path = require_reference("vov3d_m.pyth", "vov3d_m_io.pt")
    ref = torch.load(io_path, weights_only=True)
    cfg = get_cfg()
    cfg.merge_from_file(str(require_reference("official-configs/SSv1_vov3d_vov3d_M_F16.yaml")))
    cfg.merge_from_list(ref["meta"]["opts"] + ["NUM_GPUS", 0, "MODEL.MEMORY_FORMAT", "channels_last_3d",
                                               "MODEL.DEPTHWISE_IMPL", "conv2d", "MODEL.CPU_FUSED_UNITS", "on"])
    model = build_model(cfg)
    assert load_checkpoint(str(ckpt), model, data_parallel=False) == 0
    x0 = ref["inputs"][0]
    inf = prepare_for_inference(model, cfg)
    assert sum(isinstance(m, FusedD2plus1d) for m in inference_copy(model, cfg, x0).modules()) == 40
    with torch.no_grad():
        for key_in, key_out in (("inputs", "outputs"), ("extra_inputs", "extra_outputs")):
            for x, expected in zip(ref[key_in], ref[key_out]):
                y = inf([to_model_format(x, cfg)])
                assert (y - expected).abs().max().item() <= 1e-5


def test_no_compiler_keeps_stock_ops_or_fails_when_required(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("CC", "no-such-compiler-vov3d")
    monkeypatch.setenv("VOV3D_KERNEL_CACHE", str(tmp_path / "kernels"))
    monkeypatch.setattr(cpu_kernels, "_libraries", {})
    monkeypatch.setattr(cpu_kernels, "_failures", {})
    cfg = tiny_cfg("Kinetics/VoV3D_M_16x5.yaml", ("MODEL.CPU_FUSED_UNITS", "auto"))
    model = randomize_bn(build_model(cfg)).eval()
    x = to_model_format(torch.randn(1, 3, 4, 32, 32), cfg)
    with caplog.at_level(logging.WARNING):
        inf = prepare_for_inference(model, cfg)
        with torch.no_grad():
            assert torch.allclose(inf([x]), model([x]), atol=TOL)
    assert "no-such-compiler-vov3d" in caplog.text
    assert not any(isinstance(m, FusedD2plus1d) for m in inf.modules())
    cfg.MODEL.CPU_FUSED_UNITS = "on"
    with pytest.raises(RuntimeError, match="MODEL.CPU_FUSED_UNITS"):
        prepare_for_inference(model, cfg)([x])


def test_bad_key_value_is_named():
    cfg = get_cfg()
    cfg.MODEL.CPU_FUSED_UNITS = "yes"
    with pytest.raises(ValueError, match="MODEL.CPU_FUSED_UNITS"):
        validate(cfg)


def test_concurrent_builds_share_one_cache(tmp_path, kernel):
    """Processes building the kernel at once (e.g. several test jobs) all end up loading it."""
    code = ("import sys; from vov3d.runtime import kernels as k; "
            "sys.exit(0 if k.load_library() is not None else 1)")
    env = dict(os.environ, VOV3D_KERNEL_CACHE=str(tmp_path / "kernels"), PYTHONPATH=REPO)
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, cwd=REPO) for _ in range(3)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0, 0]
    built = [f for f in os.listdir(tmp_path / "kernels") if f.endswith(".so")]
    assert len([f for f in built if not f.startswith(".")]) == 1, built
    assert not [f for f in built if f.startswith(".")]  # no half-written temporaries left


def test_fusion_only_touches_inference_copies(kernel):
    cfg = tiny_cfg("Kinetics/VoV3D_M_16x5.yaml")
    model = build_model(cfg)
    x = to_model_format(torch.randn(1, 3, 4, 32, 32), cfg)
    cfg.MODEL.FOLD_BN = False  # nothing folded: the kernel does not apply
    assert not any(isinstance(m, FusedD2plus1d) for m in inference_copy(model, cfg, x).modules())
    cfg.MODEL.FOLD_BN = True
    inf = prepare_for_inference(model, cfg)
    with torch.no_grad():
        inf([x])
    assert any(isinstance(m, FusedTOSA) for m in inf.modules())
    (route,) = inf._built.values()
    assert fuse_d2plus1d_blocks(route) == 0  # a second pass wraps nothing again
    # The checkpointed model keeps its plain structure and state_dict names.
    assert all(not k.startswith("fused") and ".block." not in k for k in model.state_dict())
    assert isinstance(model.s2.pathway0_res0.branch2, TOSATransform)
    assert not any(isinstance(m, (FusedD2plus1d, FusedTOSA)) for m in model.modules())
    with torch.no_grad():  # inference copies stay copyable and picklable
        assert torch.equal(copy.deepcopy(inf)([x]), inf([x]))
        buf = io.BytesIO()
        torch.save(inf, buf)
        buf.seek(0)
        assert torch.equal(torch.load(buf, weights_only=False)([x]), inf([x]))


def fused_tiny_vov3d():
    """Returns (cfg, a 2-clip input, the fused inference module) of a tiny VoV3D-M with random BNs."""
    cfg = tiny_cfg("Kinetics/VoV3D_M_16x5.yaml")
    torch.manual_seed(0)
    model = randomize_bn(build_model(cfg)).eval()
    x = to_model_format(torch.randn(2, 3, 4, 32, 32), cfg)
    return cfg, x, inference_copy(model, cfg, x)


def test_tosa_block_unit_by_unit_path_matches(kernel):
    """A block whose aggregation conv is not packed (its BN left) runs unit by unit, same outputs."""
    _, x, inf = fused_tiny_vov3d()
    blocks = [m for m in inf.modules() if isinstance(m, FusedTOSA)]
    with torch.no_grad():
        ref = inf([x])
        for b in blocks:
            b.packed = False
        assert (inf([x]) - ref).abs().max().item() <= TOL


def test_traced_inference_copy_records_stock_ops(kernel):
    cfg, x, inf = fused_tiny_vov3d()
    assert any(isinstance(m, FusedTOSA) for m in inf.modules())
    with torch.no_grad():
        traced = torch.jit.trace(inf, ([x],), check_trace=False)
        x2 = to_model_format(torch.randn(2, 3, 4, 32, 32), cfg)
        assert torch.allclose(traced([x2]), inf([x2]), atol=TOL)
