"""Export a trained model as a torch.export program (.pt2) or an ONNX file, checked against PyTorch.

What is exported is the stock PyTorch path with every BatchNorm folded into its conv
(vov3d.runtime.fold_batchnorm): never the runtime's fused CPU kernel (ctypes calls that neither
exporter can trace) nor its conv routes, which are speed levers of this process, not of the model.
The batch dimension is dynamic; clip length and crop are fixed at export (the X3D / VoV3D head pools
with a fixed kernel, and SmallBigNet is built for one clip length). After writing, the file is loaded
back and run on a batch of another size, and its largest difference from the eager (unfolded) model
is returned and printed.

Outputs (`output`): "probs" (the default eval output: softmax averaged over positions, what
checkpoint parity is defined on), "logits" (forward_head) or "features" (the pre-logit vector).
"""

import copy
import logging
import os
import tempfile

import torch
import torch.nn as nn

from vov3d.runtime.conv_routes import apply_conv_routes
from vov3d.runtime.fold_bn import fold_batchnorm

logger = logging.getLogger(__name__)

OUTPUTS = ("probs", "logits", "features")
FORMATS = ("onnx", "export")


class ClipOutput(nn.Module):
    """A model taking one (N, C, T, H, W) tensor and returning one of OUTPUTS, (N, K) or (N, D)."""

    def __init__(self, model, output="probs"):
        super().__init__()
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
        self.model = model
        self.output = output

    def forward(self, clip):
        if self.output == "probs":
            return self.model([clip])
        return self.model.forward_head(self.model.forward_features(clip), pre_logits=self.output == "features")


def stock_model(model):
    """Returns an eval-only CPU copy of `model` running stock PyTorch ops: an InferenceModel's source,
    DDP's module, conv routes undone, contiguous weights."""
    model = getattr(model, "source", getattr(model, "module", model))
    copied = copy.deepcopy(model).cpu().eval()
    copied.accelerated_eval = False  # the reference is the stock path itself (vov3d/runtime/eval_path.py)
    return apply_conv_routes(copied, torch.contiguous_format, "conv3d")


def exportable(model, clip, output="probs"):
    """Returns the ClipOutput to export: the stock path of `model` with its BatchNorms folded."""
    plain = stock_model(model)
    return ClipOutput(fold_batchnorm(plain, [clip]), output).eval()


def _write_via_temp(path, write):
    """Calls write(temporary path beside `path`), then renames it onto `path` (atomic); returns path."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    # The temporary name keeps the extension: torch.export.save / load insist on ".pt2".
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=os.path.splitext(path)[1], dir=folder)
    os.close(fd)
    mask = os.umask(0)
    os.umask(mask)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~mask)  # as open() would create it (mkstemp's files are private)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def _batch_dim(max_batch):
    return ({0: torch.export.Dim("batch", min=1, max=max_batch)},)


def trace(module, clip, max_batch=1024):
    """Returns the torch.export ExportedProgram of `module` on clips shaped as `clip`, batch dynamic."""
    with torch.no_grad():
        return torch.export.export(module, (clip,), dynamic_shapes=_batch_dim(max_batch))


def save_program(program, path):
    """Writes an ExportedProgram to `path` (.pt2); returns path."""
    return _write_via_temp(path, lambda tmp: torch.export.save(program, tmp))


def save_onnx(program, path, output_name="output", opset=18):
    """Writes an ExportedProgram as an ONNX model (input "clip", output `output_name`; the batch
    stays dynamic) to `path`; returns path. Converting the program saves a second trace."""
    def write(tmp):
        onnx_program = torch.onnx.export(program, dynamo=True, input_names=["clip"], output_names=[output_name],
                                         opset_version=opset, external_data=False)
        onnx_program.save(tmp)

    return _write_via_temp(path, write)


def run_exported(path, fmt, clip):
    """Returns the output of the exported file at `path` on `clip` (a CPU tensor): the program loaded
    back by torch.export, or the ONNX model run by onnxruntime (ImportError when it is not installed)."""
    if fmt == "export":
        program = torch.export.load(path)
        with torch.no_grad():
            return program.module()(clip)
    import onnxruntime

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return torch.from_numpy(session.run(None, {name: clip.numpy()})[0])


def export_model(model, clip_shape, path, fmt="onnx", output="probs", max_batch=1024, check_batch=3):
    """Exports `model` (the stock path, BN folded) for clips of `clip_shape` (N, C, T, H, W; N is
    dynamic) to `path` and checks it; returns {"path", "format", "output", "max_abs_diff", "checked"}
    where max_abs_diff compares the exported file with the eager, unfolded model on a batch of
    `check_batch` clips (None when onnxruntime is missing for an ONNX check)."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    if fmt == "export" and not path.endswith(".pt2"):
        raise ValueError(f"--output {path}: a torch.export program is saved as a .pt2 file (torch.export.load reads no other)")
    from vov3d.apps.common import example_clip

    clip = example_clip(clip_shape)
    program = trace(exportable(model, clip[:1], output), clip, max_batch)
    if fmt == "export":
        save_program(program, path)
    else:
        save_onnx(program, path, output)
    check = example_clip((check_batch,) + tuple(clip_shape[1:]), seed=1)
    with torch.no_grad():
        reference = ClipOutput(stock_model(model), output).eval()(check)
    try:
        got = run_exported(path, fmt, check)
    except ImportError:
        logger.warning("onnxruntime is not installed: %s was written but not checked (pip install onnxruntime)", path)
        return {"path": path, "format": fmt, "output": output, "max_abs_diff": None, "checked": False}
    if tuple(got.shape) != tuple(reference.shape):
        raise RuntimeError(f"{path}: exported output has shape {tuple(got.shape)}, PyTorch {tuple(reference.shape)}")
    diff = float((got.float() - reference.float()).abs().max())
    return {"path": path, "format": fmt, "output": output, "max_abs_diff": diff, "checked": True}
