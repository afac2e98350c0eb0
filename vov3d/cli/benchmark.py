"""Benchmarks: vov3d-benchmark --cfg CONFIG.yaml --mode data|model|demo|act-checkpoint|multigrid [KEY VALUE ...]

--mode data: clips/s of the train and test loaders and the raw decode rate of the same clips
(see vov3d/bench/data.py). --synthetic kinetics|ssv2|ssv1 benchmarks a generated realistic
dataset instead of the config's data.

--mode demo: runs the demo recipe for every --seeds x --workers combination, each in its own process and
output folder, and prints each run's test top-1, wall time and load average, then min / median / max
against the recipe's documented figures (see vov3d/bench/demo.py):

    vov3d-benchmark --mode demo --seeds 0 1 2 --workers 1 2

--mode model: train-step (forward, backward, SGD step) and eval-forward time, clips/s and peak memory of
each speed lever (vov3d/runtime) against stock ops in NCTHW layout, interleaved in one run, with the
machine named (see vov3d/bench/model.py). --cfg may be given several times. The issue's measurement:

    vov3d-benchmark --mode model --cfg configs/Kinetics/VoV3D_M_16x5.yaml \
        --cfg configs/Kinetics/X3D_M_16x5.yaml --batch 2 --frames 16 --crop 112 --threads 2

--mode act-checkpoint: peak memory (CPU: RSS of a fresh process per variant; CUDA: max_memory_allocated) and
time of a train step with MODEL.ACT_CHECKPOINT off and on, same run (see vov3d/bench/recipes.py):

    vov3d-benchmark --mode act-checkpoint --cfg configs/SSv1/VoV3D_L_32x1.yaml --batch 1 --iters 1

--mode multigrid: wall time of --num-samples clips of training (an epoch-equivalent) in each long-cycle phase of
the MULTIGRID.* schedule (short cycles included) against the plain shape, same run, and the whole schedule's
estimated time over the plain one's (see vov3d/bench/recipes.py):

    vov3d-benchmark --mode multigrid --cfg configs/SSv1/VoV3D_M_16x1.yaml --batch 2 \
        MULTIGRID.LONG_CYCLE True MULTIGRID.SHORT_CYCLE True SOLVER.LR_POLICY steps_with_relative_lrs \
        SOLVER.STEPS "[0, 60, 80]" SOLVER.LRS "[1, 0.1, 0.01]" SOLVER.MAX_EPOCH 100

From a source checkout, `python tools/benchmark.py` is the same program.
"""

import argparse
import json
import logging
import sys

from vov3d.config import load_config
from vov3d.engine.launch import EXIT_USER_ERROR, USER_ERRORS, error_line


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cfg", dest="cfg_files", action="append", default=[],
                        help="YAML config file (--mode model: may be repeated)")
    parser.add_argument("--mode", choices=("data", "model", "demo", "act-checkpoint", "multigrid"), default="data",
                        help="what to benchmark")
    parser.add_argument("--num-iters", dest="num_iters", type=int, default=0,
                        help="timed batches per run (0: BENCHMARK.NUM_EPOCHS epochs)")
    parser.add_argument("--synthetic", default="", choices=("", "kinetics", "ssv2", "ssv1"),
                        help="benchmark a generated realistic dataset of this layout")
    parser.add_argument("--synthetic-dir", dest="synthetic_dir", default="", help="where to write it (default: temp)")
    parser.add_argument("--output", default="", help="also write the figures as JSON here")
    parser.add_argument("--num-samples", dest="num_samples", type=int, default=0,
                        help="--mode multigrid: clips per epoch-equivalent (default: two short cycles)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides as KEY VALUE pairs")
    from vov3d.bench.demo import add_demo_args
    from vov3d.bench.model import add_model_args

    add_model_args(parser)
    add_demo_args(parser)
    args = parser.parse_args(argv)
    args.cfg_file = args.cfg_files[0] if args.cfg_files else None
    if args.mode == "model":
        return _model_mode(args)
    if args.mode == "demo":
        return _demo_mode(args)
    if args.mode in ("act-checkpoint", "multigrid"):
        return _recipe_mode(args)
    logging.basicConfig(level=logging.INFO, format="[%(levelname)s %(name)s] %(message)s")
    try:
        cfg = load_config(args.cfg_file, args.opts)
    except USER_ERRORS as e:
        print(error_line(e), file=sys.stderr)
        return EXIT_USER_ERROR
    from vov3d.bench.data import run_data_benchmark

    result = run_data_benchmark(cfg, args)
    print(json.dumps(result, indent=1))
    _write_json(result, args.output)
    return 0


def _demo_mode(args):
    from vov3d.bench.demo import DEFAULT_CONFIG, format_demo_table, run_demo_benchmark, take_int_lists

    logging.basicConfig(level=logging.WARNING, format="[%(levelname)s %(name)s] %(message)s")
    try:
        take_int_lists(args)
        result = run_demo_benchmark(args.cfg_file or DEFAULT_CONFIG, args.opts, args.seeds, args.workers, args.out,
                                    progress=lambda row: print(row, flush=True))
    except USER_ERRORS + (FileExistsError,) as e:
        print(error_line(e), file=sys.stderr)
        return EXIT_USER_ERROR
    print(format_demo_table(result))
    _write_json(result, args.output)
    return 0 if all(r["returncode"] == 0 for r in result["runs"]) else 1


def _model_mode(args):
    from vov3d.bench.model import format_table, run_model_benchmark

    logging.basicConfig(level=logging.INFO, format="[%(levelname)s %(name)s] %(message)s")
    try:
        result = run_model_benchmark(args.cfg_files, args.opts, args)
    except USER_ERRORS as e:
        print(error_line(e), file=sys.stderr)
        return EXIT_USER_ERROR
    table = format_table(result)
    if args.json:
        print(table, file=sys.stderr)
        print(json.dumps(result, indent=1))
    else:
        print(table)
    _write_json(result, args.output)
    return 0


def _recipe_mode(args):
    from vov3d.bench import recipes

    logging.basicConfig(level=logging.INFO, format="[%(levelname)s %(name)s] %(message)s")
    run, fmt = {"act-checkpoint": (recipes.run_act_checkpoint_benchmark, recipes.format_act_checkpoint),
                "multigrid": (recipes.run_multigrid_benchmark, recipes.format_multigrid)}[args.mode]
    try:
        result = run(args.cfg_files, args.opts, args)
    except USER_ERRORS as e:
        print(error_line(e), file=sys.stderr)
        return EXIT_USER_ERROR
    print(fmt(result))
    _write_json(result, args.output)
    return 0


def _write_json(result, path):
    """Writes the figures as JSON to `path` (--output); returns nothing. No path, no file."""
    if path:
        with open(path, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
