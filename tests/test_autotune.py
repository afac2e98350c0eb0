"""`auto` means measured (vov3d/runtime/autotune.py): the decision logic with a fake timer, the disk
cache (hit, miss, key), explicit values that are never measured, and one comparison of the chosen
path with stock ops on the machine at hand (a generous noise margin: the machine may be shared)."""

import json
import logging
import os
import subprocess
import sys
import time

import pytest
import torch

from tests.conftest import randomize_bn
from vov3d.config.defaults import get_cfg
from vov3d.models import build_model
from vov3d.runtime import autotune, heap, prepare

pytestmark = pytest.mark.usefixtures("one_thread")  # a shared machine: spinning threads crawl


class FakeClock:
    """A timer whose time advances only by what the candidate steps say they cost."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def fake_steps(clock, costs, outputs=None):
    """Returns run(name) for autotune.decide: each step advances the clock by its cost (a list is
    consumed in turn, for noisy candidates) and returns its output."""
    counters = {n: 0 for n in costs}

    def run(name):
        def step():
            c = costs[name]
            if isinstance(c, list):
                c = c[counters[name] % len(c)]
            counters[name] += 1
            clock.now += c
            return (outputs or {}).get(name, torch.ones(2))
        return step

    return run, counters


def key_for(tmp_path, monkeypatch, candidates, shape=(2, 3, 4, 8, 8)):
    monkeypatch.setenv("VOV3D_TUNE_CACHE", str(tmp_path))
    model = torch.nn.Conv3d(3, 3, 1)
    return autotune.decision_key("inference", "cpu", model, shape, candidates)


def test_fastest_candidate_wins_and_is_cached(tmp_path, monkeypatch, caplog):
    clock = FakeClock()
    names = ["stock", "cl3d", "cl3d+fused"]
    key = key_for(tmp_path, monkeypatch, names)
    run, counters = fake_steps(clock, {"stock": 1.0, "cl3d": 0.6, "cl3d+fused": 0.3})
    with caplog.at_level(logging.INFO, logger="vov3d.runtime.autotune"):
        assert autotune.decide("inference", key, names, run, timer=clock) == "cl3d+fused"
    assert len([r for r in caplog.records if "Speed levers" in r.getMessage()]) == 1  # one log line
    assert counters["stock"] == counters["cl3d"] == counters["cl3d+fused"] > 1  # all timed alike
    # Cache hit: nothing runs again.
    run2, counters2 = fake_steps(clock, {"stock": 1.0, "cl3d": 0.6, "cl3d+fused": 0.3})
    assert autotune.decide("inference", key, names, run2, timer=clock) == "cl3d+fused"
    assert sum(counters2.values()) == 0
    (path,) = [p for p in os.listdir(tmp_path) if p.endswith(".json")]
    entry = json.loads((tmp_path / path).read_text())
    assert entry["choice"] == "cl3d+fused" and entry["key"] == key
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".tune-")]  # no temporaries left


def test_stock_is_kept_unless_a_candidate_wins_by_the_margin(tmp_path, monkeypatch):
    clock = FakeClock()
    names = ["stock", "cl3d"]
    run, _ = fake_steps(clock, {"stock": 1.0, "cl3d": 0.97})  # 3% faster: within the 5% margin
    key = key_for(tmp_path, monkeypatch, names)
    assert autotune.decide("train", key, names, run, timer=clock, margin=0.05) == "stock"
    # Noise: one slow outlier of stock does not move the median.
    assert autotune.pick_fastest({"stock": [1.0, 1.0, 5.0], "cl3d": [0.99, 0.98, 0.99]}, "stock") == "stock"
    assert autotune.pick_fastest({"stock": [1.0, 1.0, 1.0], "cl3d": [0.5, 9.0, 0.5]}, "stock") == "cl3d"


def test_a_candidate_with_other_outputs_or_an_error_is_dropped(tmp_path, monkeypatch):
    clock = FakeClock()
    names = ["stock", "wrong", "broken", "ok"]
    outputs = {"stock": torch.ones(2), "wrong": torch.tensor([1.0, 1.5]), "ok": torch.ones(2) + 1e-7}
    run, counters = fake_steps(clock, {"stock": 1.0, "wrong": 0.1, "broken": 0.1, "ok": 0.8}, outputs)

    def run_or_fail(name):
        if name == "broken":
            raise RuntimeError("no kernel here")
        return run(name)

    key = key_for(tmp_path, monkeypatch, names)
    assert autotune.decide("inference", key, names, run_or_fail, timer=clock) == "ok"


def test_cache_key_separates_machines_shapes_models_and_threads(tmp_path, monkeypatch):
    names = ["stock", "cl3d"]
    key = key_for(tmp_path, monkeypatch, names)
    autotune.save_decision(key, "cl3d", {"stock": 1.0, "cl3d": 0.5})
    assert autotune.load_decision(key)["choice"] == "cl3d"
    other_shape = key_for(tmp_path, monkeypatch, names, shape=(2, 3, 8, 8, 8))
    assert autotune.load_decision(other_shape) is None
    for field, value in (("machine", "Another CPU"), ("torch", "0.0"), ("threads", key["threads"] + 1),
                         ("model", "0" * 16)):
        assert autotune.load_decision(dict(key, **{field: value})) is None, field
    other_model = autotune.decision_key("inference", "cpu", torch.nn.Conv3d(3, 4, 1), (2, 3, 4, 8, 8), names)
    assert other_model["model"] != key["model"]
    # A damaged file is a miss, not an error.
    (path,) = [p for p in os.listdir(tmp_path) if p.endswith(".json")]
    (tmp_path / path).write_text("{not json")
    assert autotune.load_decision(key) is None


def test_time_budget_bounds_the_measurement():
    clock = FakeClock()
    run, counters = fake_steps(clock, {"a": 10.0, "b": 10.0})
    times = autotune.time_candidates({"a": run("a"), "b": run("b")}, reps=2, rounds=5, budget_s=15.0, timer=clock)
    assert len(times["a"]) == len(times["b"]) == 2  # one round, then over budget


def tiny_cfg(**model_keys):
    cfg = get_cfg()
    cfg.merge_from_file(os.path.join(os.path.dirname(os.path.dirname(__file__)), "configs", "Kinetics",
                                     "VoV3D_M_16x5.yaml"))
    cfg.merge_from_list(["NUM_GPUS", 0, "DATA.NUM_FRAMES", 4, "DATA.TRAIN_CROP_SIZE", 32,
                         "DATA.TEST_CROP_SIZE", 32, "MODEL.NUM_CLASSES", 7, "TRAIN.BATCH_SIZE", 2])
    for k, v in model_keys.items():
        cfg.MODEL[k] = v
    return cfg


def test_explicit_values_are_never_measured(monkeypatch):
    def no_measuring(*a, **k):
        raise AssertionError("measured although every lever is explicit")

    monkeypatch.setattr(autotune, "decide", no_measuring)
    monkeypatch.setattr(heap, "faults_per_step", no_measuring)
    cfg = tiny_cfg(MEMORY_FORMAT="channels_last_3d", DEPTHWISE_IMPL="conv2d", CPU_FUSED_UNITS="off",
                   POINTWISE_IMPL="matmul", BATCHNORM_IMPL="kernel", CPU_KEEP_HEAP="off")
    model = build_model(cfg)
    prepare.prepare_for_training(model, cfg)
    assert model.runtime_route == "cl3d+dw_conv2d+pw_matmul+bn_kernel"
    inf = prepare.prepare_for_inference(model, cfg)
    x = torch.randn(1, 3, 4, 32, 32)
    assert inf.route_for([x]).name == "cl3d+dw_conv2d+pw_matmul"
    with torch.no_grad():
        inf([x])


def test_auto_measures_once_per_shape_and_leaves_the_model_as_it_was(monkeypatch):
    calls = []
    real = autotune.decide

    def counting(stage, key, candidates, run, **kw):
        calls.append((stage, tuple(key["shape"]), tuple(candidates)))
        return real(stage, key, candidates, run, **kw)

    timed = []
    real_timing = autotune.time_candidates

    def recording(steps, **kw):
        timed.append(sorted(steps))
        return real_timing(steps, **kw)

    monkeypatch.setattr(autotune, "decide", counting)
    monkeypatch.setattr(autotune, "time_candidates", recording)
    cfg = tiny_cfg(CPU_FUSED_UNITS="off")
    assert cfg.MODEL.DROPOUT_RATE > 0  # dropout draws the same masks for every candidate
    torch.manual_seed(0)
    model = randomize_bn(build_model(cfg))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    prepare.prepare_for_training(model, cfg)
    assert calls[0] == ("train", (2, 3, 4, 32, 32), (
        "stock", "dw_conv2d", "cl3d", "cl3d+bn_kernel", "cl3d+pw_matmul", "cl3d+pw_matmul+bn_kernel", "cl3d+dw_conv2d",
        "cl3d+dw_conv2d+bn_kernel", "cl3d+dw_conv2d+pw_matmul", "cl3d+dw_conv2d+pw_matmul+bn_kernel", "cl3d+dw_kernel",
        "cl3d+dw_kernel+bn_kernel", "cl3d+dw_kernel+pw_matmul", "cl3d+dw_kernel+pw_matmul+bn_kernel"))
    assert timed[0] == sorted(calls[0][2])  # every candidate agreed with stock and was timed
    assert torch.equal(torch.get_rng_state(), rng)  # dropout streams unchanged by the measurement
    for k, v in model.state_dict().items():  # BN running statistics restored, weights untouched
        assert torch.equal(v, state[k]), k
    assert all(p.grad is None for p in model.parameters())
    inf = prepare.prepare_for_inference(model, cfg)
    x = torch.randn(3, 3, 4, 32, 32)
    with torch.no_grad():
        y = inf([x])
        inf([x[:1]])  # another batch size of the same clip shape: no new measurement
        assert torch.allclose(y, model.eval()([x]), atol=1e-5)
    assert [c[0] for c in calls] == ["train", "inference"]


def test_chosen_path_is_not_slower_than_stock_ops_here():
    """The path `auto` picks on this machine against the plain model, eval forward, interleaved
    medians; a 1.5x margin absorbs a shared machine's noise (the benchmark measures real figures)."""
    cfg = tiny_cfg()
    torch.manual_seed(0)
    model = randomize_bn(build_model(cfg)).eval()
    x = torch.randn(2, 3, 4, 32, 32)
    inf = prepare.prepare_for_inference(model, cfg)
    with torch.no_grad():
        inf([x])  # measures and picks
        steps = {"stock": lambda: model([x]), "chosen": lambda: inf([x])}
        times = autotune.time_candidates(steps, reps=3, rounds=3, budget_s=30.0, timer=time.perf_counter)
    med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    assert med["chosen"] <= 1.5 * med["stock"], med


def test_batches_follow_the_layout_the_runtime_picked(monkeypatch):
    from vov3d.runtime import layout

    monkeypatch.setattr(layout, "_decided", {})
    cfg = tiny_cfg()
    assert layout.clip_memory_format(cfg) == torch.channels_last_3d  # before any decision
    layout.record_decision("contiguous")
    assert layout.clip_memory_format(cfg) == torch.contiguous_format
    cfg.MODEL.MEMORY_FORMAT = "channels_last_3d"  # an explicit value wins
    assert layout.clip_memory_format(cfg) == torch.channels_last_3d


def test_cuda_candidates_and_keys_without_a_gpu(monkeypatch):
    """The CUDA plumbing, checked on CPU: what auto measures there, what the key names, the bench's variants."""
    from vov3d.bench.model import Runner, default_variants, pick_device

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "Fake GPU 80GB")
    cfg = tiny_cfg()
    model = build_model(cfg)
    routes = prepare.candidate_routes(cfg, model, "cuda", inference=True)
    assert {r.amp for r in routes} == {None, torch.float16, torch.bfloat16}
    assert not any(r.fused for r in routes)  # the fused kernel is a CPU lever
    assert routes[0].name == "stock"
    assert {r.depthwise for r in routes} == {"conv3d", "conv2d"}  # measured on CUDA too
    assert autotune.machine_name(torch.device("cuda", 0)) == "Fake GPU 80GB"
    names = [r.name for r in routes]
    key = autotune.decision_key("inference", torch.device("cuda", 0), model, (2, 3, 4, 32, 32), names)
    assert key["machine"] == "Fake GPU 80GB" and key["device"] == "cuda"
    cuda_variants = {v.name: v for v in default_variants("cuda", cfg=cfg)}
    assert {"stock", "defaults", "api", "cl3d+cudnn_benchmark+fp16"} <= set(cuda_variants)
    for v in cuda_variants.values():  # every variant is a valid set of MODEL.* values for the runtime
        r = Runner(cfg, v, 2, torch.device("cpu"))  # batch 2: the train decision cached above
        assert r.eval_forward().shape == (2, 7)
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            pick_device("cuda")


def test_evaluation_keeps_the_training_batch_layout(monkeypatch):
    """A run's first evaluation must not switch its training batches to the inference route's layout
    (a resumed run would then see other batches than the uninterrupted one)."""
    from vov3d.runtime import layout

    monkeypatch.setattr(layout, "_decided", {})
    monkeypatch.setattr(autotune, "decide", lambda stage, key, names, run, **kw: "cl3d" if stage == "inference"
                        else "stock")
    cfg = tiny_cfg(CPU_FUSED_UNITS="off")
    model = build_model(cfg)
    prepare.prepare_for_training(model, cfg)
    assert layout.clip_memory_format(cfg) == torch.contiguous_format
    inf = prepare.prepare_for_inference(model, cfg)
    with torch.no_grad():
        inf([torch.randn(1, 3, 4, 32, 32)])
    assert inf.route_for([torch.randn(1, 3, 4, 32, 32)]).name == "cl3d"
    assert layout.clip_memory_format(cfg) == torch.contiguous_format


def test_measuring_leaves_the_stock_route_plain(monkeypatch, tmp_path):
    """When stock ops win, the model runs plain nn.Conv3d forwards as if nothing had been measured
    (a retyped conv left behind took oneDNN's route for 1x1 maps, so a measured run and a cached run
    trained differently)."""
    import torch.nn as nn

    monkeypatch.setenv("VOV3D_TUNE_CACHE", str(tmp_path))  # measured here, not read from the session's cache
    monkeypatch.setattr(autotune, "pick_fastest", lambda times, baseline, margin=0.05: baseline)
    cfg = tiny_cfg(CPU_FUSED_UNITS="off")
    model = build_model(cfg)
    prepare.prepare_for_training(model, cfg)
    assert model.runtime_route == "stock"
    convs = [m for m in model.modules() if isinstance(m, nn.Conv3d)]
    assert convs and all(type(m) is nn.Conv3d for m in convs)


def test_heap_lever_keeps_the_heap_when_a_train_step_faults(monkeypatch, caplog, tmp_path):
    if heap.glibc() is None:
        pytest.skip("the C library is not glibc: the lever has nothing to set")
    monkeypatch.setenv("VOV3D_TUNE_CACHE", str(tmp_path))  # no decision from an earlier test
    kept = []
    monkeypatch.setattr(heap, "_kept", False)
    monkeypatch.setattr(heap, "keep_freed_memory", lambda: kept.append(True) or True)  # not this process's heap
    cfg = tiny_cfg(MEMORY_FORMAT="contiguous", DEPTHWISE_IMPL="conv3d", CPU_FUSED_UNITS="off",
                   POINTWISE_IMPL="conv", BATCHNORM_IMPL="stock")
    model = randomize_bn(build_model(cfg))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    monkeypatch.setattr(heap, "FAULTS_PER_STEP", 10**9)  # a step that faults less: left to glibc, cached
    with caplog.at_level(logging.INFO, logger="vov3d.runtime.prepare"):
        prepare.prepare_for_training(model, cfg)
        prepare.prepare_for_training(model, cfg)
    assert not kept
    assert "left to glibc, measured on" in caplog.text and "Freed heap between train steps: off (cached" in caplog.text
    for k, v in model.state_dict().items():  # the measured steps left no trace
        assert torch.equal(v, state[k]), k
    monkeypatch.setattr(heap, "FAULTS_PER_STEP", -1)  # another shape: measured anew, kept
    prepare.prepare_for_training(model, cfg, input_shape=(1, 3, 4, 32, 32))
    assert kept
    for value, expected in (("on", 1), ("off", 0)):
        kept.clear()
        prepare.prepare_for_training(model, tiny_cfg(MEMORY_FORMAT="contiguous", CPU_KEEP_HEAP=value))
        assert len(kept) == expected, value
    with pytest.raises(ValueError, match="MODEL.CPU_KEEP_HEAP"):
        prepare.prepare_for_training(model, tiny_cfg(CPU_KEEP_HEAP="yes"))


def test_kept_heap_stops_steps_from_faulting_their_memory_in_again(tmp_path):
    """In a fresh interpreter (the setting is process-wide): a step that allocates 64 MiB in 8 MiB
    blocks and frees them faults its pages in again while glibc trims its heap on free (set here to
    glibc's initial trim threshold, 128 KiB: the dynamic default depends on the process's history), and
    none once kept."""
    if heap.glibc() is None:
        pytest.skip("the C library is not glibc")
    script = (
        "import torch\n"
        "from vov3d.runtime import heap\n"
        "libc = heap.glibc()\n"
        "assert libc.mallopt(-1, 128 << 10) == 1 and libc.mallopt(-3, 32 << 20) == 1\n"
        "def step():\n"
        "    blocks = [torch.ones(2 << 20) for _ in range(8)]\n"
        "    return sum(float(b[-1]) for b in blocks)\n"
        "before = max(heap.faults_per_step(step, steps=3) for _ in range(4))\n"
        "assert heap.keep_freed_memory()\n"
        "after = heap.faults_per_step(step, steps=3)\n"
        "print(before, after)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(__file__)))
    before, after = map(float, out.stdout.split())
    # Of the 16k pages, how many come back to the top of the heap to be trimmed depends on where the
    # interpreter's own small allocations land (6k to 16k here, now and then a few hundred when one
    # pins the top of the heap: the most of four measurements): at least 1024 (FAULTS_PER_STEP).
    assert before > heap.FAULTS_PER_STEP, out.stdout
    assert after < before / 20, out.stdout
