"""`auto` means measured: time the candidate paths of a model on the machine at hand, keep the fastest.

Like `cudnn.benchmark`, but for the levers whose best value depends on the machine (memory format,
depthwise route, 1x1x1 convs as matrix products, training BatchNorm kernel, fused kernel, inference
autocast dtype): at first
use every candidate runs on the model's real input shape, its output is checked against the stock candidate's (a candidate that
disagrees is dropped), and the steps are timed interleaved (round robin, rotating order) so load on
a shared machine hits them alike. The median decides; a candidate replaces stock ops only when it
wins by `margin` (default 5%), so noise never makes the default slower than stock. A time budget
bounds the measurement.

Decisions are cached on disk, one small JSON file per key: the machine (CPU model or GPU name),
torch version, model signature (module types and parameter shapes), input shape, threads and the
candidate set. The directory is `$VOV3D_TUNE_CACHE`, else `~/.cache/vov3d/tune`; files are written
to a temporary name and renamed (concurrent processes never read half a file). One log line per
decision says what was picked, measured or cached.
"""

import hashlib
import json
import logging
import os
import platform
import statistics
import time

import torch

from vov3d.utils.files import write_atomically

logger = logging.getLogger(__name__)

CACHE_VERSION = 1


# ----------------------------------------------------------------------------------------------- #
# Keys
# ----------------------------------------------------------------------------------------------- #


def cpu_model():
    """Returns the CPU model name ("AMD EPYC 7B13", ...) from /proc/cpuinfo, else platform's guess."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_name(device):
    """Returns what identifies the device's hardware: the GPU name on CUDA, the CPU model otherwise."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_model()


def model_signature(model):
    """Returns a short hash of `model`'s structure: class, module types and parameter shapes (not values)."""
    h = hashlib.sha256(type(model).__name__.encode())
    for name, m in model.named_modules():
        h.update(f"{name}:{type(m).__name__};".encode())
    for name, p in model.named_parameters():
        h.update(f"{name}:{tuple(p.shape)};".encode())
    return h.hexdigest()[:16]


def decision_key(stage, device, model, shape, candidates, threads=None):
    """Returns the dict that names one decision (what the cache is keyed by)."""
    device = torch.device(device)
    return {
        "version": CACHE_VERSION, "stage": stage, "machine": machine_name(device), "device": device.type,
        "torch": torch.__version__, "model": model_signature(model), "shape": [int(n) for n in shape],
        "threads": int(threads if threads is not None else torch.get_num_threads()),
        "candidates": list(candidates),
    }


# ----------------------------------------------------------------------------------------------- #
# The cache
# ----------------------------------------------------------------------------------------------- #


def cache_dir():
    """Returns the directory decisions are cached in ($VOV3D_TUNE_CACHE, else ~/.cache/vov3d/tune)."""
    root = os.environ.get("VOV3D_TUNE_CACHE")
    if root:
        return root
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "vov3d", "tune")


def _path(key):
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    return os.path.join(cache_dir(), f"{key['stage']}-{digest}.json")


def load_decision(key):
    """Returns the cached decision (a dict with "choice") for `key`, or None (absent, unreadable, stale)."""
    try:
        with open(_path(key)) as f:
            entry = json.load(f)
    except (OSError, ValueError):
        return None
    if entry.get("key") != key or entry.get("choice") not in key["candidates"]:
        return None
    return entry


def save_decision(key, choice, medians):
    """Writes the decision for `key` atomically; returns its path (None when the directory is not writable)."""
    entry = {"key": key, "choice": choice, "medians_s": medians, "when": time.strftime("%Y-%m-%dT%H:%M:%S")}
    path = _path(key)
    try:
        write_atomically(path, lambda f: f.write(json.dumps(entry, indent=1).encode("utf-8")))
    except OSError as e:
        logger.warning("Could not cache the speed decision in %s: %s", cache_dir(), e)
        return None
    return path


# ----------------------------------------------------------------------------------------------- #
# Measuring
# ----------------------------------------------------------------------------------------------- #


def outputs_match(out, ref, rtol=1e-3, atol=1e-4):
    """True when `out` equals `ref` within tolerance (relative to ref's magnitude); tensors or lists."""
    if isinstance(ref, (list, tuple)):
        return len(out) == len(ref) and all(outputs_match(a, b, rtol, atol) for a, b in zip(out, ref))
    out, ref = out.detach().float(), ref.detach().float()
    if out.shape != ref.shape or not torch.isfinite(out).all():
        return False
    scale = float(ref.abs().max()) if ref.numel() else 0.0
    return bool(torch.allclose(out, ref, rtol=rtol, atol=atol * max(1.0, scale)))


def time_candidates(steps, reps=3, rounds=2, budget_s=60.0, timer=time.perf_counter, sync=None):
    """Returns {name: [seconds, ...]}: each step of `steps` ({name: callable}) timed `reps` times per
    round, over `rounds` interleaved rounds (rotating order); stops starting rounds once `budget_s`
    is spent (every candidate gets the same number of timings)."""
    names = list(steps)
    times = {n: [] for n in names}
    start = timer()
    for r in range(rounds):
        if r and timer() - start > budget_s:
            break
        for k in range(len(names)):
            name = names[(k + r) % len(names)]
            for _ in range(reps):
                if sync:
                    sync()
                t = timer()
                steps[name]()
                if sync:
                    sync()
                times[name].append(timer() - t)
    return times


def pick_fastest(times, baseline, margin=0.05):
    """Returns the name in `times` ({name: [seconds]}) with the lowest median, or `baseline` unless that
    candidate is faster than the baseline's median by more than `margin` (a fraction)."""
    medians = {n: statistics.median(ts) for n, ts in times.items() if ts}
    best = min(medians, key=medians.get)
    if best != baseline and baseline in medians and medians[best] > medians[baseline] * (1.0 - margin):
        return baseline
    return best


def decide(stage, key, candidates, run, check=None, baseline=None, warmup=1, reps=3, rounds=2,
           budget_s=60.0, margin=0.05, timer=time.perf_counter, sync=None, use_cache=True):
    """Returns the name of the fastest candidate for one decision.

    `candidates`: names, the stock one first (or `baseline`). `run(name)` returns a callable that runs
    one step of that candidate and returns its output. `check(out, ref, name)` compares candidate
    `name`'s output with the baseline's (default `outputs_match`); candidates that fail or raise are
    dropped. A cached
    decision for `key` is returned without measuring (`use_cache=False` measures anyway).
    """
    baseline = baseline or candidates[0]
    if len(candidates) == 1:
        return candidates[0]
    if use_cache:
        cached = load_decision(key)
        if cached is not None:
            logger.info("Speed levers (%s): %s (cached for %s, %s)", stage, cached["choice"], key["machine"],
                        "x".join(map(str, key["shape"])))
            return cached["choice"]
    check = check or (lambda out, ref, name: outputs_match(out, ref))
    steps, ref = {}, None
    for name in [baseline] + [c for c in candidates if c != baseline]:
        try:
            step = run(name)
            for _ in range(max(1, warmup)):
                out = step()
        except Exception as e:  # a candidate that cannot run here is simply not a candidate
            if name == baseline:
                raise
            logger.warning("Speed levers (%s): candidate %s failed (%s: %s); skipped", stage, name,
                           type(e).__name__, str(e).splitlines()[0] if str(e) else "")
            continue
        if name == baseline:
            ref = out
        elif not check(out, ref, name):
            logger.warning("Speed levers (%s): candidate %s gives other outputs than %s; skipped", stage, name,
                           baseline)
            continue
        steps[name] = step
    t0 = time.perf_counter()
    times = time_candidates(steps, reps=reps, rounds=rounds, budget_s=budget_s, timer=timer, sync=sync)
    choice = pick_fastest(times, baseline, margin)
    medians = {n: statistics.median(ts) for n, ts in times.items() if ts}
    save_decision(key, choice, medians)
    logger.info("Speed levers (%s): %s, measured on %s at %s in %.1f s (median s: %s)", stage, choice,
                key["machine"], "x".join(map(str, key["shape"])), time.perf_counter() - t0,
                ", ".join(f"{n} {m:.4f}" for n, m in medians.items()))
    return choice
