"""Export a trained model to ONNX or a torch.export program (.pt2), checked against PyTorch.

    python tools/export_net.py --cfg configs/demo/VoV3D_M_demo.yaml --checkpoint ckpt.pyth \
        --format onnx --output vov3d_m.onnx [--output-kind probs|logits|features] [KEY VALUE ...]

The stock PyTorch path is exported with its BatchNorms folded (the runtime's fused CPU kernel is a
speed lever of this process and is never exported); the batch dimension is dynamic, the clip is
DATA.NUM_FRAMES x TEST_CROP_SIZE^2. The written file is run back (onnxruntime for ONNX) on another
batch size and its largest absolute difference from PyTorch is printed.
"""

import argparse
import os
import sys

from vov3d.engine.launch import EXIT_USER_ERROR, USER_ERRORS, error_line
from vov3d.utils.parser import config_from_args


def main(argv=None):
    """Returns the process exit code."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cfg", dest="cfg_file", required=True, help="YAML config the model was trained with")
    parser.add_argument("--checkpoint", default=None,
                        help="weights (default: TEST.CHECKPOINT_FILE_PATH, else the newest in OUTPUT_DIR)")
    parser.add_argument("--format", choices=("onnx", "export"), required=True, help="onnx | export (.pt2)")
    parser.add_argument("--output", required=True, help="file to write (.onnx, or .pt2 for --format export)")
    parser.add_argument("--output-kind", default="probs", choices=("probs", "logits", "features"),
                        help="what the exported model returns (default: the eval output, probabilities)")
    parser.add_argument("--max-batch", type=int, default=1024, help="largest batch the program accepts")
    parser.add_argument("--tolerance", type=float, default=1e-4, help="fail when the check differs by more")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    args = parser.parse_args(argv)
    try:
        from vov3d.apps.common import load_trained_model, test_clip_shape
        from vov3d.apps.export import export_model

        cfg = config_from_args(args, check_devices=False)
        cfg.NUM_GPUS = 0  # exported on the CPU; the file runs anywhere
        model, path = load_trained_model(cfg, args.checkpoint)
        result = export_model(model, test_clip_shape(cfg, 2), args.output, args.format, args.output_kind,
                              args.max_batch)
    except USER_ERRORS as e:
        print(error_line(e), file=sys.stderr)
        return EXIT_USER_ERROR
    diff = result["max_abs_diff"]
    runner = "onnxruntime" if args.format == "onnx" else "torch.export.load"
    print(f"Wrote {result['path']} ({args.format}, output {args.output_kind}, weights {path}, dynamic batch, "
          f"clip {cfg.DATA.NUM_FRAMES}x{cfg.DATA.TEST_CROP_SIZE}^2)")
    if diff is None:
        print("Not checked: onnxruntime is not installed (pip install onnxruntime)")
        return 0
    print(f"Check ({runner} vs PyTorch eager, batch 3): max abs difference {diff:.3g}")
    if diff > args.tolerance:
        print(f"vov3d: error: the exported model differs from PyTorch by {diff:.3g} > {args.tolerance:g}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
