#!/usr/bin/env python3
"""Benchmarks: python tools/benchmark.py --cfg CONFIG.yaml --mode data [KEY VALUE ...]

--mode data: clips/s of the train and test loaders and the raw decode rate of the same clips
(see vov3d/datasets/benchmark.py). --synthetic kinetics|ssv2|ssv1 benchmarks a generated realistic
dataset instead of the config's data.
"""

import argparse
import json
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from vov3d.config.defaults import get_cfg  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cfg", dest="cfg_file", default=None, help="YAML config file")
    parser.add_argument("--mode", choices=("data",), default="data", help="what to benchmark")
    parser.add_argument("--num-iters", dest="num_iters", type=int, default=0,
                        help="timed batches per run (0: BENCHMARK.NUM_EPOCHS epochs)")
    parser.add_argument("--synthetic", default="", choices=("", "kinetics", "ssv2", "ssv1"),
                        help="benchmark a generated realistic dataset of this layout")
    parser.add_argument("--synthetic-dir", dest="synthetic_dir", default="", help="where to write it (default: temp)")
    parser.add_argument("--output", default="", help="also write the figures as JSON here")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides as KEY VALUE pairs")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(levelname)s %(name)s] %(message)s")
    cfg = get_cfg()
    if args.cfg_file:
        cfg.merge_from_file(args.cfg_file)
    cfg.merge_from_list(args.opts or [])
    if args.mode == "data":
        from vov3d.datasets.benchmark import run_data_benchmark

        result = run_data_benchmark(cfg, args)
    print(json.dumps(result, indent=1))
    if args.output:
        with open(args.output, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
