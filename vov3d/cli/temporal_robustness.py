"""Temporal robustness (VoV3D paper, Figure 5): test checkpoints at several sampling rates, plot the drop.

    vov3d-robustness --model VoV3D-M configs/Kinetics/VoV3D_M_16x5.yaml vov3d_m.pyth \
        --model X3D-M configs/Kinetics/X3D_M_16x5.yaml x3d_m.pyth --rates 5 8 10 12 14 16 \
        --output output/robustness [KEY VALUE ...]

KEY VALUE overrides apply to every model (e.g. DATA.PATH_TO_DATA_DIR, NUM_GPUS). Writes
robustness.json and robustness.png (accuracy drop per model) into --output.

From a source checkout, `python tools/temporal_robustness.py` is the same program.
"""

import argparse
import os
import sys

from vov3d.engine import robustness
from vov3d.engine.launch import EXIT_USER_ERROR, USER_ERRORS, error_line
from vov3d.utils.parser import config_from_args


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", nargs=3, action="append", required=True, metavar=("LABEL", "CFG", "CHECKPOINT"),
                        help="a model to test: its label, config and checkpoint (repeat for several)")
    parser.add_argument("--rates", type=int, nargs="+", default=[5, 8, 10, 12, 14, 16], help="sampling rates")
    parser.add_argument("--output", default="output/temporal_robustness", help="folder for the JSON and PNG")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides for every model")
    args = parser.parse_args(argv)
    try:
        models = []
        for label, cfg_file, ckpt in args.model:
            ns = argparse.Namespace(cfg_file=cfg_file, opts=list(args.opts) + ["TEST.CHECKPOINT_FILE_PATH", ckpt],
                                    init_method=None, num_shards=None, shard_id=None)
            models.append((label, config_from_args(ns)))
        summary = robustness.run(models, args.rates, args.output)
    except USER_ERRORS as e:
        print(error_line(e), file=sys.stderr)
        return EXIT_USER_ERROR
    print(f"{'rate':>6}" + "".join(f"{label:>16}" for label in summary))
    for rate in args.rates:
        row = "".join(f"{s['accuracy'][rate]:>9.2f} ({s['drop'][rate]:+.1f})" for s in summary.values())
        print(f"{rate:>6}{row}")
    print(f"Plot: {os.path.join(args.output, 'robustness.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
