"""Train and then test a video model: vov3d-train --cfg CONFIG.yaml [KEY VALUE ...]

(from a checkout: python tools/run_net.py, the same program). vov3d-test tests only: TRAIN.ENABLE False,
TEST.ENABLE True, weights from TEST.CHECKPOINT_FILE_PATH (a path, URL or weights name).

Launch on one machine (NUM_GPUS GPUs, or NUM_GPUS 0 for CPU), with torchrun, under SLURM (srun), or
on several machines with PySlowFast's --init_method tcp://HOST:PORT --num_shards N --shard_id I.
"""

import sys

from vov3d.engine.launch import EXIT_USER_ERROR, USER_ERRORS, error_line, launch_job, train_then_test
from vov3d.engine.run_dir import append_stop_line
from vov3d.utils.parser import config_from_args, parse_args


def main(argv=None):
    """Returns the process exit code."""
    args = parse_args(argv)
    if not args.cfg_file and not args.opts:
        print("vov3d: error: give a config: --cfg configs/SSv1/VoV3D_L_32x1.yaml [KEY VALUE ...]", file=sys.stderr)
        return EXIT_USER_ERROR
    try:
        cfg = config_from_args(args)
    except USER_ERRORS as e:
        print(error_line(e), file=sys.stderr)
        append_stop_line(getattr(e, "output_dir", None), error_line(e))  # only into an existing run folder
        return EXIT_USER_ERROR
    return launch_job(cfg, args.init_method, train_then_test)


def test_main(argv=None):
    """Returns the exit code of testing only (vov3d-test): main with TRAIN.ENABLE False, TEST.ENABLE True."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return main(argv + ["TRAIN.ENABLE", "False", "TEST.ENABLE", "True"])


if __name__ == "__main__":
    sys.exit(main())
