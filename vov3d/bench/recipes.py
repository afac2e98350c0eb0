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
