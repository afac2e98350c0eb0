"""Grad-CAM of a trained model on videos: PNG frame strips and animated GIF overlays.

    python tools/visualize_cam.py --cfg configs/demo/VoV3D_M_demo.yaml --checkpoint ckpt.pyth \
        --video clip.webm [--video val ...] --output out/cam [--layer s4] [--target 3] [KEY VALUE ...]

--video: a video file, a split name of TEST.DATASET (train, val, test) or an annotation file; repeat
for several. Per video: <output>/<id>_cam.png (frames above overlays) and <id>_cam.gif. With
TENSORBOARD.ENABLE True the overlays also go to TensorBoard (under OUTPUT_DIR, as for training).
The default layer is the last feature map (s5 for X3D / VoV3D, layer4 for ResNets, Mixed_5c for S3D).
"""

import argparse
import os
import sys

from vov3d.engine.launch import EXIT_USER_ERROR, USER_ERRORS, error_line
from vov3d.utils.parser import single_process_config


def main(argv=None):
    """Returns the process exit code."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cfg", dest="cfg_file", required=True, help="YAML config the model was trained with")
    parser.add_argument("--checkpoint", default=None,
                        help="weights (default: TEST.CHECKPOINT_FILE_PATH, else the newest in OUTPUT_DIR)")
    parser.add_argument("--video", action="append", required=True,
                        help="video file, split name or annotation file; repeat for several")
    parser.add_argument("--output", required=True, help="folder for the PNG strips and GIFs")
    parser.add_argument("--layer", default=None, help="module name (default: the model's last feature map)")
    parser.add_argument("--target", type=int, default=None, help="class index (default: the predicted class)")
    parser.add_argument("--view", type=int, default=None, help="test view index (default: first clip, centre crop)")
    parser.add_argument("--max-videos", type=int, default=None, help="stop after this many videos")
    parser.add_argument("--fps", type=float, default=4.0, help="GIF frame rate")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    args = parser.parse_args(argv)
    try:
        from vov3d.apps.cam import visualize

        cfg = single_process_config(args)
        done = visualize(cfg, args.video, args.output, args.checkpoint, args.layer, args.target, args.view,
                         args.max_videos, args.fps)
    except USER_ERRORS as e:
        print(error_line(e), file=sys.stderr)
        return EXIT_USER_ERROR
    for item in done:
        print(f"{item['video']}: predicted {item['predicted']}; CAM of {item['target']}: {item['gif']}, {item['png']}")
    if not done:
        print("vov3d: error: no video could be visualised", file=sys.stderr)
        return EXIT_USER_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
