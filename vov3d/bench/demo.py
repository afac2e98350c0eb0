"""vov3d-benchmark (tools/benchmark.py) --mode demo: re-checks the demo's documented accuracy and time on this machine.

Runs the demo recipe (``run_net --cfg configs/demo/VoV3D_M_demo.yaml``, as ``make demo`` does)
once per (RNG_SEED, DATA_LOADER.NUM_WORKERS) combination, each in its own process and its own output
folder, one after the other (so each run has the machine to itself), and reports each run's multi-view
test top-1 and wall time with the load average around it, then min / median / max over the runs against
the recipe's DOCUMENTED figures. The demo data is generated (or found cached) first and timed apart:
the documented time is that of a warm cache.
"""

import json
import os
import re
import statistics
import subprocess
import sys
import time

# The folder holding the vov3d package: put on the runs' PYTHONPATH, so they run this very vov3d
# (a source checkout or an installed copy).
_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_LEVERS = re.compile(r"Speed levers \(train\): (\S+?),? (measured|\(cached)")


def run_dir_name(seed, workers):
    """Returns the output folder name of one combination."""
    return f"seed{seed}_workers{workers}"


def read_test_top1(output_dir):
    """Returns the multi-view test top-1 (%) recorded in output_dir/metrics.jsonl, or None."""
    top1 = None
    try:
        with open(os.path.join(output_dir, "metrics.jsonl")) as f:
            for line in f:
                row = json.loads(line)
                if row.get("_type") == "test_final":
                    top1 = float(row["top1_acc"])
    except (OSError, ValueError):
        return None
    return top1


def train_levers(log_text):
    """Returns "<route> (measured|cached)" of the train-step speed levers a run's log names, or "-"."""
    m = _LEVERS.search(log_text)
    if not m:
        return "-"
    return f"{m.group(1)} ({'measured' if m.group(2) == 'measured' else 'cached'})"


def run_one(cfg_file, seed, workers, output_dir, opts=(), env=None):
    """Runs the recipe once in a fresh process; returns {seed, workers, top1, wall_s, load_before,
    load_after, returncode, levers, output_dir, log}."""
    os.makedirs(output_dir, exist_ok=True)
    log = os.path.join(output_dir, "benchmark_run.log")
    cmd = [sys.executable, "-m", "vov3d.cli.run_net", "--cfg", cfg_file, *map(str, opts), "RNG_SEED", str(seed),
           "DATA_LOADER.NUM_WORKERS", str(workers), "OUTPUT_DIR", output_dir]
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_PARENT, env.get("PYTHONPATH", "")) if p)
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    with open(log, "w") as f:
        rc = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
    wall = time.monotonic() - started
    with open(log, errors="replace") as f:
        text = f.read()
    return {"seed": seed, "workers": workers, "top1": read_test_top1(output_dir), "wall_s": wall,
            "load_before": load_before, "load_after": os.getloadavg()[0], "returncode": rc,
            "levers": train_levers(text), "output_dir": output_dir, "log": log}


def spread(values):
    """Returns {min, median, max} of the values that are not None (None for each when there are none)."""
    xs = [v for v in values if v is not None]
    if not xs:
        return {"min": None, "median": None, "max": None}
    return {"min": min(xs), "median": statistics.median(xs), "max": max(xs)}


def prepare_data(cfg):
    """Generates the demo data when it is not cached; returns the seconds spent (0.0 when cached)."""
    from vov3d.datasets import demo

    before = demo.generation_seconds()
    demo.ensure_demo_data(cfg, progress=False)
    return demo.generation_seconds() - before


def run_demo_benchmark(cfg_file, opts, seeds, workers, out_root, progress=print):
    """Runs every (seed, workers) combination of the recipe; returns the result dict (runs, spreads,
    documented figures, machine, data generation time)."""
    from vov3d.bench.model import machine_info
    from vov3d.config import load_config
    from vov3d.config.paths import find_config

    import torch

    cfg_file = os.path.abspath(find_config(cfg_file))
    cfg = load_config(cfg_file, list(opts))
    generation_s = prepare_data(cfg) if cfg.TRAIN.DATASET == "demo" or cfg.TEST.DATASET == "demo" else 0.0
    out_root = out_root or os.path.join("output", "benchmark_demo", time.strftime("%Y%m%d-%H%M%S"))
    root = os.path.abspath(out_root)
    plan = [(seed, w, os.path.join(root, run_dir_name(seed, w))) for seed in seeds for w in workers]
    for _, _, out in plan:
        if os.path.exists(os.path.join(out, "checkpoints")):
            raise FileExistsError(f"{out}: holds an earlier run (it would resume); choose another --out")
    runs = []
    for seed, w, out in plan:
        r = run_one(cfg_file, seed, w, out, opts)
        runs.append(r)
        if progress:
            progress(format_run(r))
    doc = cfg.DOCUMENTED
    return {
        "mode": "demo", "config": cfg_file, "opts": list(map(str, opts)), "out": os.path.abspath(out_root),
        "machine": machine_info(torch.device("cpu")), "data_generation_s": generation_s,
        "runs": runs, "top1": spread(r["top1"] for r in runs), "wall_s": spread(r["wall_s"] for r in runs),
        "documented": {"top1_acc": doc.TOP1_ACC, "wall_minutes": doc.WALL_MINUTES, "machine": doc.MACHINE},
    }


def _f(x, spec):
    return "-" if x is None else format(x, spec)


def _generation(seconds):
    return f"generated in {seconds:.0f} s" if seconds else "cached"


def format_run(r):
    """Returns one table row for a run."""
    status = "" if r["returncode"] == 0 else f"  FAILED (exit {r['returncode']}, see {r['log']})"
    return (f"{r['seed']:>4}  {r['workers']:>7}  {_f(r['top1'], '6.2f'):>7}  {_f(r['wall_s'], '7.1f'):>7}"
            f"  {r['load_before']:5.2f} -> {r['load_after']:5.2f}  {r['levers']}{status}")


def format_demo_table(result):
    """Returns the printed report: machine, data generation, one row per run, min/median/max, verdict."""
    from vov3d.bench.model import format_machine

    lines = [f"Demo benchmark: {result['config']} {' '.join(result['opts'])}".rstrip(),
             f"Machine: {format_machine(result['machine'])}",
             f"Demo data: {_generation(result['data_generation_s'])} (not counted in the wall times)",
             "seed  workers   top-1%   wall s  load (1 min avg) before -> after  train speed levers"]
    lines += [format_run(r) for r in result["runs"]]
    for name, key, spec in (("top-1 %", "top1", ".2f"), ("wall s", "wall_s", ".1f")):
        s = result[key]
        lines.append(f"{name:8}  min {_f(s['min'], spec)}  median {_f(s['median'], spec)}  max {_f(s['max'], spec)}")
    doc = result["documented"]
    if doc["top1_acc"] or doc["wall_minutes"]:
        worst_top1, worst_wall = result["top1"]["min"], result["wall_s"]["max"]
        checks = []
        if doc["top1_acc"]:
            ok = worst_top1 is not None and worst_top1 >= doc["top1_acc"]
            checks.append(f"top-1 >= {doc['top1_acc']:.1f}%: {'met' if ok else 'NOT met'} by the worst run")
        if doc["wall_minutes"]:
            ok = worst_wall is not None and worst_wall <= doc["wall_minutes"] * 60
            checks.append(f"<= {doc['wall_minutes']:.1f} min: {'met' if ok else 'NOT met'} by the slowest run")
        where = f" (documented on {doc['machine']})" if doc["machine"] else ""
        lines.append("Documented" + where + ": " + "; ".join(checks))
    return "\n".join(lines)


DEFAULT_CONFIG = "configs/demo/VoV3D_M_demo.yaml"  # found in the checkout or the installed package


def add_demo_args(parser):
    """Adds the --mode demo options to the tool's parser."""
    g = parser.add_argument_group("--mode demo (--cfg defaults to configs/demo/VoV3D_M_demo.yaml)")
    # Strings: the values that follow the numbers are the KEY VALUE overrides (see take_int_lists).
    g.add_argument("--seeds", nargs="+", default=["0", "1", "2"], help="RNG_SEED values (default 0 1 2)")
    g.add_argument("--workers", nargs="+", default=["1", "2"], help="DATA_LOADER.NUM_WORKERS values (default 1 2)")
    g.add_argument("--out", default="",
                   help="folder of the runs, one sub-folder per seed and worker count (must not hold earlier runs; "
                        "default output/benchmark_demo/<date-time>)")
    return parser


def take_int_lists(args):
    """Turns args.seeds and args.workers into int lists; returns args. Words after the numbers of either
    list (``--workers 1 2 SOLVER.MAX_EPOCH 5``) are config overrides, moved to the front of args.opts."""
    moved = []
    for name in ("seeds", "workers"):
        values, rest = [], []
        for word in getattr(args, name):
            if not rest and word.lstrip("-").isdigit():
                values.append(int(word))
            else:
                rest.append(word)
        if not values:
            raise ValueError(f"--{name} needs at least one integer, got {' '.join(getattr(args, name))}")
        setattr(args, name, values)
        moved += rest
    args.opts = moved + list(args.opts)
    return args
