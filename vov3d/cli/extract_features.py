"""Features and logits of every video of a list, with the multi-view test's views, one file per list.

    python tools/extract_features.py --cfg configs/demo/VoV3D_M_demo.yaml --checkpoint ckpt.pyth \
        --list val --list train --output out/features [--format pt|npz] [KEY VALUE ...]

--list: split names of TEST.DATASET (train, val, test) or annotation files in its format. Writes
<output>/<list>.pt (or .npz): video_ids, labels, features (N, views, D), logits (N, views, K), bad
videos. Launch as run_net.py (NUM_GPUS GPUs, torchrun, SLURM, --init_method ...) to share the videos
between processes; an interrupted run continues where it stopped when run again.
"""

import functools
import os
import sys

from vov3d.engine.launch import EXIT_USER_ERROR, USER_ERRORS, error_line, launch_job
from vov3d.utils.parser import build_parser, config_from_args


def run(cfg, lists, output, checkpoint, fmt, save_every, overwrite):
    """Extracts `lists` in this process (one rank of the job); returns None."""
    from vov3d.apps.features import extract

    extract(cfg, lists, output, checkpoint, fmt, save_every, overwrite)


def main(argv=None):
    """Returns the process exit code."""
    parser = build_parser(__doc__)
    parser.add_argument("--checkpoint", default=None,
                        help="weights (default: TEST.CHECKPOINT_FILE_PATH, else the newest in OUTPUT_DIR)")
    parser.add_argument("--list", action="append", required=True,
                        help="a split name (train, val, test) or an annotation file; repeat for several")
    parser.add_argument("--output", required=True, help="folder for <list>.pt / .npz (and the logs)")
    parser.add_argument("--format", default="pt", choices=("pt", "npz"), help="torch (.pt) or numpy (.npz)")
    parser.add_argument("--save-every", type=int, default=64, help="videos between two partial saves")
    parser.add_argument("--overwrite", action="store_true", help="redo lists whose output file exists")
    args = parser.parse_args(argv)
    try:
        from vov3d.apps.common import resolve_checkpoint

        cfg = config_from_args(args)
        checkpoint = resolve_checkpoint(cfg, args.checkpoint)
        if not checkpoint:
            raise ValueError("no checkpoint: give --checkpoint PATH (or TEST.CHECKPOINT_FILE_PATH)")
        if not os.path.isfile(checkpoint):
            raise FileNotFoundError(f"--checkpoint {checkpoint} does not exist")
        cfg.OUTPUT_DIR = args.output  # logs go beside the features, not into the training run
    except USER_ERRORS as e:
        print(error_line(e), file=sys.stderr)
        return EXIT_USER_ERROR
    os.makedirs(args.output, exist_ok=True)
    job = functools.partial(run, lists=args.list, output=args.output, checkpoint=checkpoint, fmt=args.format,
                            save_every=args.save_every, overwrite=args.overwrite)
    return launch_job(cfg, args.init_method, job)


if __name__ == "__main__":
    sys.exit(main())
