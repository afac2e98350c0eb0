"""Benchmarks of the training recipes (tools/benchmark.py --mode act-checkpoint | multigrid).

act-checkpoint: peak memory of one training step (forward, backward, SGD step) of the stock model with
MODEL.ACT_CHECKPOINT False and True, same config, batch and clip, in the same run. On CPU each variant runs in
a fresh process (peaks do not mix) and the figure is the resident-set high-water mark of the train steps
(VmHWM, reset before them); on CUDA it is torch.cuda.max_memory_allocated around one step. The step time of
both is reported too (checkpointing recomputes each block's forward).
"""

import logging
import os

import torch

from vov3d.bench.model import Runner, Variant, benchmark_cfg, machine_info, measure_memory_cuda
from vov3d.bench.model import measure_memory_subprocess, pick_device

logger = logging.getLogger(__name__)


def run_act_checkpoint_benchmark(cfg_files, opts, args):
    """Returns {machine, configs: [{cfg, model, batch, frames, crop, off, on, ratio}]} of the train-step peak
    memory with activation checkpointing off and on."""
    device = pick_device(args.device)
    torch.set_num_threads(args.threads)
    results = []
    for cfg_file in cfg_files or [None]:
        cfg = benchmark_cfg(cfg_file, opts, device.type, args.frames, args.crop)
        args.batch_resolved = args.batch or max(1, cfg.TRAIN.BATCH_SIZE // max(1, cfg.NUM_GPUS))
        row = {"cfg": cfg_file, "model": cfg.MODEL.MODEL_NAME, "batch": args.batch_resolved,
               "frames": cfg.DATA.NUM_FRAMES, "crop": cfg.DATA.TRAIN_CROP_SIZE}
        for name, flag in (("off", "False"), ("on", "True")):
            variant_opts = list(opts or []) + ["MODEL.ACT_CHECKPOINT", flag]
            if device.type == "cpu":
                m = measure_memory_subprocess(cfg_file, variant_opts, Variant("plain", plain=True), args, device,
                                              phases=("train",), iters=args.iters)
                row[name] = {"peak_mb": m.get("peak_rss_train_mb"), "step_mb": m.get("step_rss_train_mb"),
                             "rss_before_mb": m.get("rss_before_train_mb"), "step_s": m.get("train_step_s"),
                             "method": m.get("peak_rss_method"), **({"error": m["error"]} if "error" in m else {})}
            else:
                vcfg = benchmark_cfg(cfg_file, variant_opts, device.type, args.frames, args.crop)
                runner = Runner(vcfg, Variant("plain", plain=True), args.batch_resolved, device)
                runner.train_step()
                m = measure_memory_cuda(runner)
                t = runner.timed(runner.train_step, args.iters)
                row[name] = {"peak_mb": m["peak_alloc_train_mb"], "step_mb": m["step_alloc_train_mb"],
                             "step_s": sorted(t)[len(t) // 2], "method": "torch.cuda.max_memory_allocated"}
                del runner
                torch.cuda.empty_cache()
            logger.info("%s, ACT_CHECKPOINT %s: %s", os.path.basename(cfg_file or "defaults"), flag, row[name])
        off, on = row["off"].get("peak_mb"), row["on"].get("peak_mb")
        row["peak_ratio"] = on / off if off and on else None
        s_off, s_on = row["off"].get("step_mb"), row["on"].get("step_mb")
        row["step_ratio"] = s_on / s_off if s_off and s_on else None
        results.append(row)
    return {"mode": "act-checkpoint", "device": str(device), "machine": machine_info(device), "configs": results}


def format_act_checkpoint(result):
    """Returns the printed table of run_act_checkpoint_benchmark's result."""
    from vov3d.bench.model import format_machine

    lines = [f"Machine: {format_machine(result['machine'])}", ""]
    head = f"{'config':32s} {'clip':>14s} | {'peak MB off':>11s} {'on':>9s} {'ratio':>6s} | " \
           f"{'step MB off':>11s} {'on':>9s} {'ratio':>6s} | {'step s off':>10s} {'on':>8s}"
    lines += [head, "-" * len(head)]
    for r in result["configs"]:
        def f(x, spec):
            return "-" if x is None else format(x, spec)

        lines.append(
            f"{os.path.basename(r['cfg'] or 'defaults'):32s} {r['batch']}x{r['frames']}x{r['crop']}^2".ljust(47)
            + f" | {f(r['off'].get('peak_mb'), '11.0f')} {f(r['on'].get('peak_mb'), '9.0f')} "
            f"{f(r['peak_ratio'], '6.2f')} | {f(r['off'].get('step_mb'), '11.0f')} {f(r['on'].get('step_mb'), '9.0f')} "
            f"{f(r['step_ratio'], '6.2f')} | {f(r['off'].get('step_s'), '10.2f')} {f(r['on'].get('step_s'), '8.2f')}")
        for name in ("off", "on"):
            if r[name].get("error"):
                lines.append(f"  {name}: {r[name]['error']}")
    lines.append("\npeak: the process's peak during the train steps (model, optimizer and inputs included); "
                 "step: the peak minus the memory held before the step (activations and gradients).")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ #
# Multigrid
# ------------------------------------------------------------------------------------------------ #


class _OrderOf:
    """A stand-in TrainSampler of `n` indices for MultigridBatchSampler (the benchmark reads no data)."""

    def __init__(self, n):
        self.n = n

    def set_epoch(self, epoch):
        pass

    def __iter__(self):
        from vov3d.datasets.sampling import SampleIndex

        return iter(SampleIndex(i, 0, 0) for i in range(self.n))

    def __len__(self):
        return self.n


def _time_batches(model, optimizer, shapes, device, num_classes):
    """Returns the wall seconds of one train step per (batch, frames, crop) in `shapes` (random clips)."""
    import time

    import torch.nn.functional as F

    g = torch.Generator().manual_seed(0)
    total = 0.0
    for b, t, s in shapes:
        x = torch.randn(b, 3, t, s, s, generator=g).to(device)
        y = torch.randint(0, num_classes, (b,), generator=g).to(device)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model([x]), y).backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        total += time.perf_counter() - t0
    return total


def run_multigrid_benchmark(cfg_files, opts, args):
    """Returns, per config, the wall time of about `num_samples` clips of training (an epoch-equivalent) in
    each multigrid long-cycle phase (its short cycles included) and in the plain shape, same run, and the
    whole schedule's estimated time (each phase's time per clip x its epochs) over the plain schedule's
    (MAX_EPOCH x the plain time per clip); an epoch has the same clips in both."""
    from vov3d.datasets.multigrid import MultigridBatchSampler, prepare_config
    from vov3d.models import build_model

    device = pick_device(args.device)
    torch.set_num_threads(args.threads)
    results = []
    for cfg_file in cfg_files or [None]:
        cfg = benchmark_cfg(cfg_file, opts, device.type, args.frames, args.crop)
        cfg.defrost()
        batch = args.batch or max(1, cfg.TRAIN.BATCH_SIZE // max(1, cfg.NUM_GPUS))
        mg_cfg, schedule = prepare_config(cfg)
        if schedule is None:
            raise ValueError("--mode multigrid: set MULTIGRID.LONG_CYCLE True (and SHORT_CYCLE) with SOLVER.LR_POLICY "
                             "steps_with_relative_lrs, SOLVER.STEPS and SOLVER.LRS")
        sampler = MultigridBatchSampler(_OrderOf(0), batch, mg_cfg, schedule)
        cycle = 0  # the most clips one short cycle of any phase takes
        for entry in schedule:
            sampler.set_epoch(entry[-1] - 1)
            cycle = max(cycle, sum(b for b, _, _ in sampler.shapes()))
        n = args.num_samples or 2 * cycle
        if n < cycle:
            raise ValueError(f"--num-samples {n}: a short cycle of this schedule takes {cycle} clips; give at least that")
        sampler.sampler = _OrderOf(n)
        torch.manual_seed(cfg.RNG_SEED)
        model = build_model(cfg).train()
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
        phases, start = [], 0
        for step_index, shape, end in schedule:
            sampler.set_epoch(start)
            phases.append({"shape": list(shape), "epochs": end - start,
                           "batches": [[len(b), b[0].frames, b[0].crop] for b in sampler]})
            start = end
        plain = [[batch, cfg.DATA.NUM_FRAMES, cfg.DATA.TRAIN_CROP_SIZE]] * (n // batch)
        distinct = {tuple(map(tuple, p["batches"])) for p in phases}
        _time_batches(model, optimizer, plain[:1], device, cfg.MODEL.NUM_CLASSES)  # warm-up
        times = {"plain": []}
        for k in range(args.repeats):  # interleaved: machine load hits both alike
            times["plain"].append(_time_batches(model, optimizer, plain, device, cfg.MODEL.NUM_CLASSES))
            for d in distinct:
                times.setdefault(d, []).append(_time_batches(model, optimizer, d, device, cfg.MODEL.NUM_CLASSES))
        med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
        plain_per_clip = med["plain"] / (len(plain) * batch)
        for p in phases:
            p["seconds"] = med[tuple(map(tuple, p["batches"]))]
            p["samples"] = sum(b[0] for b in p["batches"])  # a partial last batch is dropped, as in training
            p["iterations"] = len(p["batches"])
            p["ratio_vs_plain"] = p["seconds"] / p["samples"] / plain_per_clip  # per clip: epochs have equal clips
        plain_total = cfg.SOLVER.MAX_EPOCH * plain_per_clip
        mg_total = sum(p["epochs"] * p["seconds"] / p["samples"] for p in phases)
        results.append({
            "cfg": cfg_file, "model": cfg.MODEL.MODEL_NAME, "batch": batch, "frames": cfg.DATA.NUM_FRAMES,
            "crop": cfg.DATA.TRAIN_CROP_SIZE, "num_samples": n, "plain_seconds": med["plain"],
            "plain_iterations": len(plain), "plain_epochs": cfg.SOLVER.MAX_EPOCH, "multigrid_epochs": schedule[-1][-1],
            "phases": phases, "schedule_time_ratio": mg_total / plain_total,
        })
    return {"mode": "multigrid", "device": str(device), "machine": machine_info(device), "repeats": args.repeats,
            "configs": results}


def format_multigrid(result):
    """Returns the printed table of run_multigrid_benchmark's result."""
    from vov3d.bench.model import format_machine

    lines = [f"Machine: {format_machine(result['machine'])}"]
    for r in result["configs"]:
        lines.append(f"\n{os.path.basename(r['cfg'] or 'defaults')} ({r['model']}): {r['num_samples']} clips per "
                     f"epoch-equivalent, base batch {r['batch']}, {r['frames']}x{r['crop']}^2, {result['device']}, "
                     f"median of {result['repeats']} interleaved runs")
        lines.append(f"{'schedule':28s} {'epochs':>6s} {'iters':>6s} {'clips':>6s} {'seconds':>9s} {'per clip vs plain':>17s}")
        lines.append(f"{'plain':28s} {r['plain_epochs']:6d} {r['plain_iterations']:6d} {r['num_samples']:6d} "
                     f"{r['plain_seconds']:9.2f} {1.0:17.2f}")
        for p in r["phases"]:
            b, t, s = p["shape"]
            lines.append(f"{f'phase B x{b}, {t}x{s}^2 (+short)':28s} {p['epochs']:6d} {p['iterations']:6d} "
                         f"{p['samples']:6d} {p['seconds']:9.2f} {p['ratio_vs_plain']:17.2f}")
        lines.append(f"whole schedule ({r['multigrid_epochs']} multigrid epochs vs {r['plain_epochs']} plain): "
                     f"{r['schedule_time_ratio']:.2f}x the plain schedule's time")
    return "\n".join(lines)
