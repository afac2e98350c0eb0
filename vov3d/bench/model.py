"""Model speed benchmark: train step and eval forward of each speed lever, side by side in one run.

Used by `tools/benchmark.py --mode model` (see its --help). For every config and every variant (a
combination of MODEL.* lever values, applied by vov3d.runtime) the model is built with the same seed,
prepared, warmed up and timed; the variants are interleaved (round robin, rotating order) `repeats`
times, so load from the shared machine hits them alike, and the median step is reported. Ratios are
against `stock`: the plain module build_model returns (NCTHW, stock ops, fp32, nothing folded).
`defaults` is what the config's keys give (`auto` levers measured by the runtime in this run, unless
--keep-tune-cache), `api` what plain `model.eval()` gives an API user (its no-grad forwards run the prepared copy of
vov3d/runtime/eval_path.py). The
machine (CPU model, ISA flags, threads, GPU) is printed with the figures. On CUDA the same variants run
(plus cuDNN autotuner / fp16 / bf16 ones).

Peak memory on CPU is the resident-set high-water mark (ru_maxrss) of a fresh subprocess per
variant that runs eval forwards first, then train steps; on CUDA it is max_memory_allocated around
one step. Both are also given as the step's increase over the memory held before the step.
"""

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@dataclass
class Variant:
    """One lever combination, given as MODEL.* key values ("auto" = measured by the runtime).
    `plain`: the module build_model returns, no runtime at all (stock ops, NCTHW). `api`: plain
    `model.eval()` on the built model, no-grad forwards (what an API user does; vov3d/runtime/eval_path.py)."""

    name: str
    memory_format: str = "contiguous"
    depthwise: str = "conv3d"
    pointwise: str = "conv"
    batchnorm: str = "stock"
    fold_bn: bool = False
    fused_units: str = "off"
    compile: bool = False
    cudnn_benchmark: bool = False
    train_amp: str = "off"
    inference_amp: str = "off"
    plain: bool = False
    api: bool = False
    fused_update: bool = True  # SOLVER.FUSED_UPDATE: one fused optimizer step (stock: torch's default loop)


def default_variants(device_type, with_compile=False, cfg=None):
    """Returns the variants measured by default on `device_type`: stock, the levers forced on, and
    `defaults` (the config's keys, `auto` measured on this machine) and `api` (plain model.eval())."""
    cl, dw = "channels_last_3d", "conv2d"
    v = [
        Variant("stock", plain=True, fused_update=False),
        Variant("channels_last_3d", memory_format=cl),
        Variant("dw_conv2d", depthwise=dw),
        Variant("cl3d+dw_conv2d", memory_format=cl, depthwise=dw),
        Variant("cl3d+dw_conv2d+pw_matmul", memory_format=cl, depthwise=dw, pointwise="matmul"),
        Variant("cl3d+dw_conv2d+fold_bn", memory_format=cl, depthwise=dw, fold_bn=True),
    ]
    if device_type == "cuda":
        v += [
            Variant("cudnn_benchmark", cudnn_benchmark=True),
            Variant("cl3d+cudnn_benchmark", memory_format=cl, cudnn_benchmark=True),
            Variant("cl3d+dw_conv2d+cudnn_benchmark", memory_format=cl, depthwise=dw, cudnn_benchmark=True),
            Variant("cl3d+cudnn_benchmark+fp16", memory_format=cl, cudnn_benchmark=True,
                    train_amp="float16", inference_amp="float16"),
            Variant("cl3d+cudnn_benchmark+bf16", memory_format=cl, cudnn_benchmark=True,
                    train_amp="bfloat16", inference_amp="bfloat16"),
        ]
    else:
        v.append(Variant("cl3d+dw_conv2d+bn_kernel", memory_format=cl, depthwise=dw, batchnorm="kernel"))
        v.append(Variant("cl3d+dw_kernel+bn_kernel", memory_format=cl, depthwise="kernel", batchnorm="kernel"))
        v.append(Variant("cl3d+dw_conv2d+fold_bn+fused", memory_format=cl, depthwise=dw, fold_bn=True,
                         fused_units="on"))
        v.append(Variant("cl3d+dw_conv2d+bf16", memory_format=cl, depthwise=dw,
                         train_amp="bfloat16", inference_amp="bfloat16"))
    if with_compile:
        v.append(Variant("cl3d+dw_conv2d+compile", memory_format=cl, depthwise=dw, compile=True))
    if cfg is not None:
        v.append(defaults_variant(cfg, device_type))
    v.append(Variant("api", api=True))
    return v


def defaults_variant(cfg, device_type):
    """Returns the variant the config's keys select (what training / testing run; `auto` is measured)."""
    train_amp = "off"
    if cfg.TRAIN.MIXED_PRECISION:
        train_amp = "float16" if cfg.TRAIN.MIXED_PRECISION_DTYPE in ("float16", "fp16", "half") else "bfloat16"
    m = cfg.MODEL
    return Variant(
        "defaults", memory_format=m.MEMORY_FORMAT, depthwise=m.DEPTHWISE_IMPL, pointwise=m.POINTWISE_IMPL,
        batchnorm=m.BATCHNORM_IMPL,
        fold_bn=bool(m.FOLD_BN), fused_units=m.CPU_FUSED_UNITS, compile=bool(m.COMPILE),
        cudnn_benchmark=device_type == "cuda" and bool(m.CUDNN_BENCHMARK),
        train_amp=train_amp, inference_amp=m.INFERENCE_AMP, fused_update=bool(cfg.SOLVER.FUSED_UPDATE),
    )


# ----------------------------------------------------------------------------------------------- #
# Building and running one variant
# ----------------------------------------------------------------------------------------------- #


def benchmark_cfg(cfg_file, opts, device_type, frames=None, crop=None):
    """Returns the config of `cfg_file` + `opts`, set up for the benchmark device and clip size."""
    from vov3d.config import load_config

    overrides = {"NUM_GPUS": 1 if device_type == "cuda" else 0}
    if frames:
        overrides["DATA.NUM_FRAMES"] = frames
    if crop:
        overrides.update({"DATA.TRAIN_CROP_SIZE": crop, "DATA.TEST_CROP_SIZE": crop})
    return load_config(cfg_file, opts, overrides)


def _autocast(device_type, name):
    from vov3d.runtime.levers import autocast

    return autocast(device_type, {"off": None, "bfloat16": torch.bfloat16, "float16": torch.float16}[name])


class Runner:
    """One variant of one config: its model (train and eval forms), optimizer, inputs, step functions."""

    def __init__(self, cfg, variant, batch, device):
        from vov3d import runtime
        from vov3d.engine.solver import fused_update_kwargs
        from vov3d.models import build_model

        self.variant, self.device = variant, device
        cfg = cfg.clone()
        cfg.defrost()
        if not variant.api:
            cfg.MODEL.MEMORY_FORMAT = variant.memory_format
            cfg.MODEL.DEPTHWISE_IMPL = variant.depthwise
            cfg.MODEL.POINTWISE_IMPL = variant.pointwise
            cfg.MODEL.BATCHNORM_IMPL = variant.batchnorm
            cfg.MODEL.FOLD_BN = variant.fold_bn
            cfg.MODEL.CPU_FUSED_UNITS = variant.fused_units
            cfg.MODEL.COMPILE = variant.compile
            cfg.MODEL.CUDNN_BENCHMARK = variant.cudnn_benchmark
            cfg.MODEL.INFERENCE_AMP = variant.inference_amp
        self.cfg = cfg
        torch.manual_seed(cfg.RNG_SEED)
        self.model = build_model(cfg)
        # stock: the model's own modules in eval too; api: plain model.eval(), whose no-grad forwards
        # run the prepared copy of vov3d/runtime/eval_path.py (what an API user gets).
        self.model.accelerated_eval = variant.api
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-5,
                                         **fused_update_kwargs(variant.fused_update, self.model.parameters()))
        self.scaler = torch.amp.GradScaler(device.type, enabled=variant.train_amp == "float16")
        g = torch.Generator().manual_seed(0)
        crop, frames = cfg.DATA.TRAIN_CROP_SIZE, cfg.DATA.NUM_FRAMES
        self.clip = torch.randn(batch, cfg.DATA.INPUT_CHANNEL_NUM[0], frames, crop, crop, generator=g).to(device)
        self.labels = torch.randint(0, cfg.MODEL.NUM_CLASSES, (batch,), generator=g).to(device)
        t = time.perf_counter()
        if variant.plain or variant.api:
            self.train_model = self.model  # api: training is the engine's (the `defaults` row)
        else:
            self.train_model = runtime.prepare_for_training(self.model, cfg, input_shape=tuple(self.clip.shape))
        self.tune_s = time.perf_counter() - t
        self.inputs = [runtime.to_model_format(self.clip, cfg)] if not (variant.plain or variant.api) else [self.clip]
        self._eval_model = None

    @property
    def eval_model(self):
        if self._eval_model is None:
            from vov3d import runtime

            # The eval form is built from the weights as they are now (an inference copy).
            if self.variant.plain:
                self._eval_model = self.model
            elif self.variant.api:
                self._eval_model = self.model
            else:
                self._eval_model = runtime.prepare_for_inference(self.model, self.cfg)
            t = time.perf_counter()
            with torch.inference_mode():
                self._eval_model.eval()(self.inputs)  # first call: the route is picked (measured or cached)
            self.tune_s += time.perf_counter() - t
        return self._eval_model

    def set_global_flags(self):
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = self.variant.cudnn_benchmark

    def sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def train_mode(self):
        self.model.train()

    def eval_mode(self):
        self.eval_model.eval()

    def train_step(self):
        if not self.model.training:
            self.train_mode()
        self.optimizer.zero_grad(set_to_none=True)
        with _autocast(self.device.type, self.variant.train_amp):
            out = self.train_model(self.inputs)
        loss = F.cross_entropy(out.float(), self.labels)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss

    @torch.inference_mode()
    def eval_forward(self):
        m = self.eval_model
        if m.training:
            self.eval_mode()
        return m(self.inputs)  # prepared models apply their own autocast

    def timed(self, fn, iters):
        """Returns the wall seconds of each of `iters` calls of fn."""
        out = []
        for _ in range(iters):
            self.sync()
            t = time.perf_counter()
            fn()
            self.sync()
            out.append(time.perf_counter() - t)
        return out

    @torch.inference_mode()
    def logits(self, model):
        """Returns the classifier outputs (pre-softmax) of `model` in eval mode on the inputs, fp32."""
        captured, handles = [], []
        name = getattr(self.model, "CLASSIFIER", None)
        if name:  # the classifier of the model and of every route an inference copy built
            # api: the hooks go on the prepared copy (a hook on the model itself would send its
            # forwards to its own modules, vov3d/runtime/eval_path.py)
            hooked = _prepared_copy(model) if self.variant.api else model
            for m in hooked.modules():
                if hasattr(m, "CLASSIFIER"):
                    target = m.get_submodule(name)
                    handles.append(target.register_forward_hook(lambda mod, i, o: captured.append(o)))
        model.eval()
        try:
            out = model(self.inputs)
        finally:
            for h in handles:
                h.remove()
        return (captured[-1] if captured else out).float().cpu()


# ----------------------------------------------------------------------------------------------- #
# Peak memory: one fresh process per variant (CPU), or the CUDA allocator's counters
# ----------------------------------------------------------------------------------------------- #


def _maxrss_mb():
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / (1024.0 * 1024.0) if sys.platform == "darwin" else r / 1024.0


def _status_mb(field):
    """Returns VmRSS / VmHWM of this process from /proc/self/status in MB, or None off Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def _reset_peak_rss():
    """Resets the kernel's peak-RSS mark (VmHWM) to the current RSS; False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _release_freed_memory():
    """Collects garbage and hands freed heap pages back to the OS (glibc), so RSS shows live memory."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def child_memory(spec):
    """In a fresh process: build the variant, then run eval forwards, then train steps; returns the
    peak RSS of each phase (the kernel's VmHWM, reset to the current RSS before the phase; on systems
    without /proc/self/clear_refs, the process's ru_maxrss high-water mark), and the RSS before it."""
    torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    cfg = benchmark_cfg(spec["cfg_file"], spec["opts"], device.type, spec["frames"], spec["crop"])
    runner = Runner(cfg, Variant(**spec["variant"]), spec["batch"], device)
    out = {}
    phases = [(p, fn) for p, fn in (("eval", runner.eval_forward), ("train", runner.train_step))
              if p in spec.get("phases", ("eval", "train"))]
    for phase, fn in phases:
        if phase == "train":
            # Training never holds the test-time inference copy (the engine builds one per
            # evaluation and drops it): release it so the train peak is the train step's.
            runner._eval_model = None
            _release_freed_memory()
        fn()  # first call: lazy allocations (folded copy, optimizer state)
        _release_freed_memory()  # what the first call freed but the heap kept would hide the step's peak
        before = _status_mb("VmRSS")
        reset = _reset_peak_rss()
        t = time.perf_counter()
        for _ in range(spec["iters"]):
            fn()
        out[f"{phase}_step_s"] = (time.perf_counter() - t) / spec["iters"]
        peak = _status_mb("VmHWM") if reset else _maxrss_mb()
        out[f"rss_before_{phase}_mb"] = before
        out[f"peak_rss_{phase}_mb"] = peak
        out[f"step_rss_{phase}_mb"] = peak - before if before is not None and peak is not None else None
        out["peak_rss_method"] = "VmHWM reset per phase" if reset else "ru_maxrss (process high-water mark)"
    return out


def measure_memory_subprocess(cfg_file, opts, variant, args, device, phases=("eval", "train"), iters=2):
    """Runs child_memory in a fresh interpreter; returns its dict (or {"error": ...})."""
    spec = {"cfg_file": cfg_file, "opts": list(opts or []), "variant": asdict(variant), "threads": args.threads,
            "device": str(device), "frames": args.frames, "crop": args.crop, "batch": args.batch_resolved,
            "iters": iters, "phases": list(phases)}
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO_ROOT + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(
        [sys.executable, "-m", "vov3d.bench.model", "--child", json.dumps(spec)],
        capture_output=True, text=True, env=env, cwd=REPO_ROOT,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"error": (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]}
    return json.loads(lines[-1])


def measure_memory_cuda(runner):
    """Returns the CUDA allocator's peak around one eval forward and one train step."""
    dev = runner.device
    out = {}
    for phase, fn in (("eval", runner.eval_forward), ("train", runner.train_step)):
        torch.cuda.synchronize(dev)
        before = torch.cuda.memory_allocated(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        fn()
        torch.cuda.synchronize(dev)
        peak = torch.cuda.max_memory_allocated(dev)
        out[f"peak_alloc_{phase}_mb"] = peak / 2**20
        out[f"step_alloc_{phase}_mb"] = (peak - before) / 2**20
    return out


# ----------------------------------------------------------------------------------------------- #
# The benchmark
# ----------------------------------------------------------------------------------------------- #


def _median(xs):
    return statistics.median(xs) if xs else None


def pick_device(name):
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda asked for, but CUDA is not available")
    return device


def select_variants(device, args, cfg):
    variants = default_variants(device.type, with_compile=args.compile, cfg=cfg)
    if args.levers:
        wanted = [s.strip() for s in args.levers.split(",") if s.strip()]
        known = {v.name: v for v in variants}
        if "stock" not in wanted:
            wanted.insert(0, "stock")
        missing = [w for w in wanted if w not in known]
        if missing:
            raise ValueError(f"unknown --levers {missing}; known: {sorted(known)}")
        variants = [known[w] for w in wanted]
    return variants


def benchmark_config(cfg_file, opts, args, device):
    """Returns the figures of every variant of one config (see module doc)."""
    cfg = benchmark_cfg(cfg_file, opts, device.type, args.frames, args.crop)
    batch = args.batch or max(1, cfg.TRAIN.BATCH_SIZE // max(1, cfg.NUM_GPUS))
    args.batch_resolved = batch
    variants = select_variants(device, args, cfg)
    runners, rows = [], []
    for v in variants:
        t = time.perf_counter()
        r = Runner(cfg, v, batch, device)
        r.set_global_flags()
        for _ in range(args.warmup if not v.api else 0):
            r.train_step()
        for _ in range(args.warmup):
            r.eval_forward()
        warm = time.perf_counter() - t
        runners.append(r)
        rows.append({"variant": v.name, "levers": asdict(v), "warmup_s": warm, "tune_s": r.tune_s,
                     "train": [], "eval": []})
        logger.info("%s / %s: built and warmed up in %.1f s", os.path.basename(cfg_file or "defaults"), v.name, warm)
    # Equality with stock (fp32 logits in eval mode, same seed so same weights before training).
    ref = None
    for r, row in zip(runners, rows):
        torch.manual_seed(cfg.RNG_SEED)
        fresh = Runner(cfg, r.variant, batch, device)
        lg = fresh.logits(fresh.eval_model)
        if ref is None:
            ref = lg
        row["max_abs_logit_diff_vs_stock"] = float((lg - ref).abs().max())
        del fresh
    # Interleaved timing: round robin over variants, rotating the order every repeat.
    n = len(runners)
    for rep in range(args.repeats):
        for k in range(n):
            i = (k + rep) % n
            r, row = runners[i], rows[i]
            r.set_global_flags()
            # Modes are switched untimed: the engine does it once per epoch, not per batch, and the
            # switch walks every module (~3 ms for VoV3D-M, a third of the fastest forward).
            if not r.variant.api:  # api: eval only (its training is the engine's, `defaults`)
                r.train_mode()
                row["train"] += r.timed(r.train_step, args.iters)
            r.eval_mode()
            row["eval"] += r.timed(r.eval_forward, args.iters)
    for r, row in zip(runners, rows):
        tr, ev = _median(row.pop("train")), _median(row.pop("eval"))
        row.update({
            "train_step_s": tr, "eval_forward_s": ev, "eval_per_clip_s": ev / batch,
            "train_clips_per_s": batch / tr if tr else None, "eval_clips_per_s": batch / ev,
            "route": _route_of(r),
        })
        if device.type == "cuda":
            r.set_global_flags()
            row.update(measure_memory_cuda(r))
    stock = rows[0]
    for row in rows:
        row["train_ratio"] = row["train_step_s"] / stock["train_step_s"] if row["train_step_s"] else None
        row["eval_ratio"] = row["eval_forward_s"] / stock["eval_forward_s"]
    del runners
    if device.type == "cpu" and not args.no_memory:
        for v, row in zip(variants, rows):
            if v.api:
                continue
            row.update(measure_memory_subprocess(cfg_file, opts, v, args, device))
    return {
        "cfg": cfg_file, "model": cfg.MODEL.MODEL_NAME, "batch": batch, "frames": cfg.DATA.NUM_FRAMES,
        "crop": cfg.DATA.TRAIN_CROP_SIZE, "variants": rows,
    }


def _prepared_copy(model):
    """Returns the InferenceModel that `model`'s no-grad eval forwards run (eval_path.py), or `model`."""
    from vov3d.runtime.eval_path import prepared_copy

    return prepared_copy(model) or model


def _route_of(runner):
    """Returns "train route / inference route" as the runtime picked them for a runner."""
    train = getattr(runner.model, "runtime_route", "stock")
    chosen = getattr(_prepared_copy(runner.eval_model), "_chosen", None)
    infer = ",".join(sorted({r.name for r in chosen.values()})) if chosen else "stock"
    return f"{train} / {infer}"


GOALS = {"infer": 0.30, "train": 0.40, "api": 0.50, "vov3d_vs_x3d": 0.90}


def check_goals(results, goals=GOALS):
    """Returns the issue's goals: `defaults` eval (inference path) and train step, `api` eval, each
    against `stock` of the same config, and VoV3D's `defaults` eval per clip against X3D's."""
    out, per_clip = {}, {}
    for res in results:
        rows = {r["variant"]: r for r in res["variants"]}
        d, api = rows.get("defaults"), rows.get("api")
        g = {}
        if d is not None:
            g.update({"infer_ratio": d["eval_ratio"], "infer_ok": d["eval_ratio"] <= goals["infer"]})
            if d["train_ratio"] is not None:
                g.update({"train_ratio": d["train_ratio"], "train_ok": d["train_ratio"] <= goals["train"]})
            per_clip.setdefault(res["model"], d["eval_per_clip_s"])
        if api is not None:
            g.update({"api_eval_ratio": api["eval_ratio"], "api_eval_ok": api["eval_ratio"] <= goals["api"]})
        if g:
            out[res["model"] + ":" + os.path.basename(res["cfg"] or "")] = g
    if "VoV3D" in per_clip and "X3D" in per_clip:
        ratio = per_clip["VoV3D"] / per_clip["X3D"]
        out["vov3d_eval_per_clip_vs_x3d"] = {"ratio": ratio, "ok": ratio <= goals["vov3d_vs_x3d"]}
    return out


def machine_info(device):
    """Returns what the figures were measured on: CPU model, ISA flags, threads, GPU name."""
    from vov3d.runtime import heap
    from vov3d.runtime.autotune import cpu_model

    flags = set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    isa = [f for f in ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_bf16", "amx_tile", "asimd") if f in flags]
    info = {"cpu": cpu_model(), "isa": isa, "threads": torch.get_num_threads(), "logical_cpus": os.cpu_count(),
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(), "torch": torch.__version__,
            "heap_kept": heap.is_kept()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def format_machine(info):
    """Returns the one-line description of machine_info's dict printed with every figure."""
    line = (f"{info['cpu']} (ISA: {' '.join(info['isa']) or 'unknown'}; torch uses {info['torch_cpu_capability']}), "
            f"{info['threads']} threads of {info['logical_cpus']} CPUs, torch {info['torch']}")
    if info.get("heap_kept"):  # process-wide: every variant of the run alike (MODEL.CPU_KEEP_HEAP)
        line += ", freed heap kept between steps"
    return line + (f", GPU {info['gpu']}" if info.get("gpu") else "")


def run_model_benchmark(cfg_files, opts, args):
    """Benchmarks every config in `cfg_files`; returns the result dict (printed by the tool)."""
    device = pick_device(args.device)
    torch.set_num_threads(args.threads)
    if not getattr(args, "keep_tune_cache", False):
        # `defaults` measures its levers in this run, as a first run on this machine would.
        os.environ["VOV3D_TUNE_CACHE"] = tempfile.mkdtemp(prefix="vov3d-tune-")
    results = [benchmark_config(f, opts, args, device) for f in (cfg_files or [None])]
    return {
        "mode": "model", "device": str(device), "machine": machine_info(device), "threads": torch.get_num_threads(),
        "torch": torch.__version__, "iters": args.iters, "repeats": args.repeats, "warmup": args.warmup,
        "configs": results, "goals": check_goals(results),
    }


def _fmt(x, spec, none="-"):
    return none if x is None else format(x, spec)


def format_table(result):
    """Returns the human-readable table of a run_model_benchmark result (the machine named on top)."""
    lines = [f"Machine: {format_machine(result['machine'])}"]
    mem_cpu = result["device"].startswith("cpu")
    for res in result["configs"]:
        lines.append(
            f"\n{os.path.basename(res['cfg'] or 'defaults')} ({res['model']}): batch {res['batch']}, "
            f"{res['frames']}x{res['crop']}^2, {result['device']}, {result['threads']} threads, "
            f"median of {result['iters']}x{result['repeats']} interleaved steps")
        head = (f"{'variant':30s} {'train s':>8s} {'ratio':>6s} | {'eval s':>8s} {'s/clip':>7s} "
                f"{'ratio':>6s} | {'peak train MB':>13s} | {'max|dlogit|':>11s} | {'tune s':>6s} | route (train / eval)")
        lines += [head, "-" * len(head)]
        for r in res["variants"]:
            mt = r.get("peak_rss_train_mb") if mem_cpu else r.get("peak_alloc_train_mb")
            lines.append(
                f"{r['variant']:30s} {_fmt(r['train_step_s'], '8.3f'):>8s} {_fmt(r['train_ratio'], '5.2f'):>5s}x | "
                f"{r['eval_forward_s']:8.3f} {r['eval_per_clip_s']:7.3f} {r['eval_ratio']:5.2f}x | "
                f"{_fmt(mt, '13.0f'):>13s} | {r['max_abs_logit_diff_vs_stock']:11.1e} | {r['tune_s']:6.1f} | {r['route']}")
    if result["goals"]:
        lines.append(f"\nGoals vs `stock` (machine: {format_machine(result['machine'])}): defaults eval <= "
                     f"{GOALS['infer']}x, train <= {GOALS['train']}x; api eval <= {GOALS['api']}x; "
                     f"VoV3D eval per clip <= {GOALS['vov3d_vs_x3d']}x X3D")
        for k, g in result["goals"].items():
            lines.append(f"  {k}: " + ", ".join(f"{a}={_fmt(b, '.3f') if isinstance(b, float) else b}"
                                                 for a, b in g.items()))
    return "\n".join(lines)


def add_model_args(parser):
    """Adds the --mode model options to the tool's parser."""
    g = parser.add_argument_group("--mode model")
    g.add_argument("--batch", type=int, default=0, help="clips per step (default: TRAIN.BATCH_SIZE per GPU)")
    g.add_argument("--frames", type=int, default=0, help="frames per clip (default: DATA.NUM_FRAMES)")
    g.add_argument("--crop", type=int, default=0, help="crop size (default: DATA.TRAIN_CROP_SIZE)")
    g.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    g.add_argument("--iters", type=int, default=3, help="timed steps per variant per repeat")
    g.add_argument("--repeats", type=int, default=3, help="interleaved rounds over all variants")
    g.add_argument("--warmup", type=int, default=2, help="untimed steps per variant before timing")
    g.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    g.add_argument("--compile", action="store_true", help="also measure torch.compile (slow to compile)")
    g.add_argument("--levers", default="", help="comma-separated variant names to run (stock is always run)")
    g.add_argument("--no-memory", dest="no_memory", action="store_true", help="skip the peak-memory subprocesses")
    g.add_argument("--json", action="store_true", help="print the result as JSON only (table to stderr)")
    g.add_argument("--keep-tune-cache", dest="keep_tune_cache", action="store_true",
                   help="let `defaults` use decisions cached by earlier runs (default: measure afresh)")
    return parser


def _child_main(argv):
    p = argparse.ArgumentParser()
    p.add_argument("--child", required=True)
    a = p.parse_args(argv)
    print(json.dumps(child_memory(json.loads(a.child))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
