"""Top-5 labels of a video file, with the same test views as evaluation.

    vov3d-demo --cfg configs/demo/VoV3D_M_demo.yaml --video clip.webm \
        [TEST.CHECKPOINT_FILE_PATH path.pyth] [KEY VALUE ...]

Weights: TEST.CHECKPOINT_FILE_PATH, else the newest checkpoint in OUTPUT_DIR. Class names: the
checkpoint's, else DEMO.LABEL_FILE_PATH (JSON {name: index}), else the TEST.DATASET's.

From a source checkout, `python tools/demo_net.py` is the same program.
"""

import argparse
import json
import sys

from vov3d.engine.demo import predict_video
from vov3d.engine.launch import EXIT_USER_ERROR, USER_ERRORS, error_line
from vov3d.utils.parser import single_process_config


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cfg", dest="cfg_file", required=True, help="YAML config the model was trained with")
    parser.add_argument("--video", required=True, help="video file (mp4, webm, avi, ...)")
    parser.add_argument("--top", type=int, default=5, help="how many labels to print")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    args = parser.parse_args(argv)
    try:
        cfg = single_process_config(args)
        result = predict_video(cfg, args.video, top=args.top)
    except USER_ERRORS as e:
        print(error_line(e), file=sys.stderr)
        return EXIT_USER_ERROR
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{args.video}: {result['views']} views ({result['clips']} clips x {result['crops']} crops), "
          f"weights {result['checkpoint'] or 'random (no checkpoint found)'}")
    for rank, (name, score) in enumerate(result["top"], 1):
        print(f"{rank}. {score:6.2%}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
