"""Prints a model's module tree, parameter count, GFLOPs, activations and per-stage table.

    vov3d-info --cfg configs/SSv1/VoV3D_M_16x1.yaml [--frames T] [--crop S] [KEY VALUE ...]

From a source checkout, `python tools/model_info.py` is the same program.
"""

import argparse
import sys

from vov3d.config import load_config
from vov3d.engine.launch import EXIT_USER_ERROR, USER_ERRORS, error_line
from vov3d.models import build_model
from vov3d.utils.model_stats import model_summary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cfg", required=True, help="YAML config file")
    parser.add_argument("--frames", type=int, default=None, help="clip length (default DATA.NUM_FRAMES)")
    parser.add_argument("--crop", type=int, default=None, help="spatial size (default DATA.TEST_CROP_SIZE)")
    parser.add_argument("--no-tree", action="store_true", help="do not print the module tree")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    args = parser.parse_args(argv)
    try:
        overrides = {"NUM_GPUS": 0}  # counting runs on the CPU
        # The clip size goes into the config, not only into the input: the head's pooling window
        # is built from it (a 7x7 window for 224 crops cannot pool the 4x4 maps of a 112 crop).
        if args.frames:
            overrides["DATA.NUM_FRAMES"] = args.frames
        if args.crop:
            overrides.update({"DATA.TRAIN_CROP_SIZE": args.crop, "DATA.TEST_CROP_SIZE": args.crop})
        cfg = load_config(args.cfg, args.opts, overrides=overrides)
        model = build_model(cfg)
        s = model_summary(model, cfg, args.frames, args.crop)
    except USER_ERRORS as e:
        print(error_line(e), file=sys.stderr)
        return EXIT_USER_ERROR
    if not args.no_tree:
        print(model)
    print()
    print(f"Model: {cfg.MODEL.MODEL_NAME} ({args.cfg}), {cfg.MODEL.NUM_CLASSES} classes")
    print(f"Input: {'x'.join(map(str, s['input_shape']))} (N x C x T x H x W, one clip at the test crop)")
    print(f"Params: {s['params']:,} ({s['params'] / 1e6:.2f} M)")
    print(f"GFLOPs: {s['gflops']:.3f} (fvcore conv + linear multiply-adds, the papers' convention; BN not counted)")
    print(f"Activations: {s['activations_m']:.2f} M")
    print()
    print(f"{'stage':<8}{'params':>12}{'GFLOPs':>10}  output")
    for name, params, gf, shape in s["stages"]:
        print(f"{name:<8}{params:>12,}{gf:>10.3f}  {'x'.join(map(str, shape)) if shape else '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
