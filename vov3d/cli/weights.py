"""Published weights by name: list them, download one into the cache, or export weights as safetensors.

    vov3d-weights list
    vov3d-weights download NAME|URL [...]
    vov3d-weights export CHECKPOINT OUT.safetensors

NAME is a row of `vov3d-weights list` (official VoV3D / X3D releases, PySlowFast, PyTorchVideo and
torchvision video weights); the same names work as TRAIN/TEST.CHECKPOINT_FILE_PATH. CHECKPOINT is a
path, URL or name. From a source checkout, `python tools/weights.py` is the same program.
"""

import argparse
import sys

from vov3d.engine.launch import EXIT_USER_ERROR, USER_ERRORS, error_line
from vov3d.utils.checkpoint import read_checkpoint
from vov3d.utils.weights import KNOWN_WEIGHTS, download, export_safetensors, is_url, lookup


def _list():
    for w in KNOWN_WEIGHTS.values():
        digest = w.sha256 or "(none published: first download recorded)"
        opts = " " + " ".join(map(str, w.opts)) if w.opts else ""
        print(f"{w.name:<26} {w.source:<14} configs/{w.config}{opts}\n{'':<26} {w.url}  sha256 {digest}")


def _download(specs):
    for spec in specs:
        if is_url(spec):
            path = download(spec)
        else:
            w = lookup(spec)
            path = download(w.url, w.sha256)
        print(path)


def _export(src, dst):
    ckpt = read_checkpoint(src)
    state = ckpt["model_state"]
    metadata = {"source": src}
    if isinstance(ckpt.get("cfg"), str):
        metadata["cfg"] = ckpt["cfg"]
    export_safetensors(state, dst, metadata)
    print(f"{dst}: {len(state)} tensors from {src}")


def main(argv=None):
    """Returns the exit code of `vov3d-weights list|download|export`."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the known weights, their config and source")
    p = sub.add_parser("download", help="download weights into the cache (printing the cached path)")
    p.add_argument("names", nargs="+", metavar="NAME|URL")
    p = sub.add_parser("export", help="write a checkpoint's model weights as .safetensors")
    p.add_argument("checkpoint", help="path, URL or weights name")
    p.add_argument("output", help="the .safetensors file to write")
    args = parser.parse_args(argv)
    try:
        if args.command == "list":
            _list()
        elif args.command == "download":
            _download(args.names)
        else:
            _export(args.checkpoint, args.output)
    except USER_ERRORS as e:
        print(error_line(e), file=sys.stderr)
        return EXIT_USER_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
