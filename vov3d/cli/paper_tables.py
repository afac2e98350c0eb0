"""Prints the VoV3D paper's Tables 1-8 with every column that needs no training computed next to the paper's.

    vov3d-paper-tables                     # all tables; Table 8 times batch 16 (slow on a CPU)
    vov3d-paper-tables --tables 5,7 --json
    vov3d-paper-tables --tables 8 --batch 2 --skip-timing
    vov3d-paper-tables --tables 1 --C 64 --T 8 --H 56 --W 56 --t 3 --k 3 --s 2

From a source checkout, `python tools/paper_tables.py` is the same program. Exit status 0 also when a
figure is flagged: a flag is a finding, explained in the table's notes. See vov3d/bench/paper_tables.py
for the counting conventions.
"""

import argparse
import json
import sys

from vov3d.engine.launch import EXIT_USER_ERROR, USER_ERRORS, error_line


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tables", default="1,2,3,4,5,6,7,8", help="comma-separated table numbers")
    parser.add_argument("--json", action="store_true", help="print the tables as JSON")
    parser.add_argument("--skip-timing", action="store_true", help="Table 8 without inference time and memory")
    parser.add_argument("--batch", type=int, default=16, help="Table 8 batch (the paper: 16)")
    parser.add_argument("--iters", type=int, default=1, help="Table 8 timed forwards per model (after a warm-up)")
    parser.add_argument("--device", default="cpu", help="Table 8 device (cpu | cuda)")
    for name, default, what in (("C", 160, "channels"), ("T", 16, "frames"), ("H", 14, "height"), ("W", 14, "width"),
                                ("t", 3, "temporal kernel"), ("k", 3, "spatial kernel"), ("s", 1, "spatial stride")):
        parser.add_argument(f"--{name}", type=int, default=default, help=f"Table 1 {what} (default {default})")
    args = parser.parse_args(argv)
    try:
        tables = [int(t) for t in args.tables.split(",") if t.strip()]
    except ValueError:
        parser.error(f"--tables must be comma-separated numbers, got {args.tables!r}")
    from vov3d.bench.paper_tables import compute_tables, format_tables

    try:
        result = compute_tables(tables, {k: getattr(args, k) for k in "CTHWtks"}, batch=args.batch,
                                timing=not args.skip_timing, device=args.device, iters=args.iters)
    except USER_ERRORS as e:
        print(error_line(e), file=sys.stderr)
        return EXIT_USER_ERROR
    print(json.dumps(result, indent=1) if args.json else format_tables(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
