"""Checks the data a run reads before it starts: labels, missing, undecodable and too-short videos, frame counts.

    vov3d-check-dataset --cfg configs/SSv2/VoV3D_M_16x1.yaml [--split train|val|test] [KEY VALUE ...]

Without --split, every split the run would read (train, val, test as TRAIN.ENABLE, TRAIN.EVAL_PERIOD and
TEST.ENABLE say), each annotation file once.

Exit code 0 when no problem was found, 1 otherwise. See vov3d/datasets/check.py.

From a source checkout, `python tools/check_dataset.py` is the same program.
"""

import argparse
import json
import logging
import sys

from vov3d.config import load_config
from vov3d.datasets.check import check_dataset, format_report, splits_read_by_run
from vov3d.engine.launch import EXIT_USER_ERROR, USER_ERRORS, error_line


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cfg", dest="cfg_file", required=True, help="YAML config file")
    parser.add_argument("--split", choices=("train", "val", "test"), action="append",
                        help="split to check (repeatable; default: every split the run reads, each file once)")
    parser.add_argument("--workers", type=int, default=None, help="decoding processes (default DATA_LOADER.NUM_WORKERS)")
    parser.add_argument("--quick", action="store_true", help="frame folders: decode the first and last JPEG only")
    parser.add_argument("--limit", type=int, default=0, help="check only the first N videos of each split")
    parser.add_argument("--output", default="", help="also write the full report as JSON here")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides as KEY VALUE pairs")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(levelname)s %(name)s] %(message)s")

    try:
        cfg = load_config(args.cfg_file, args.opts)
    except USER_ERRORS as e:
        print(error_line(e), file=sys.stderr)
        return EXIT_USER_ERROR
    reports, seen, failed = [], set(), False
    for split in args.split or splits_read_by_run(cfg):
        try:
            # Without --split, test reading the validation file (the default) is not decoded twice.
            report = check_dataset(cfg, split, args.workers, args.quick, args.limit, () if args.split else seen)
        except (FileNotFoundError, RuntimeError, ValueError, KeyError) as e:
            print(f"{split}: cannot build the dataset: {e}")  # e.g. the label error a run would stop with
            failed = True
            continue
        if report is None:
            continue
        seen.add(report["annotation"])
        reports.append(report)
        print(format_report(report))
        failed |= bool(report["problems"])
    if args.output:
        with open(args.output, "w") as f:
            json.dump(reports, f, indent=1)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
