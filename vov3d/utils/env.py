"""Seeding, RNG state capture / restore (checkpoint-safe types) and library versions for the manifest."""

import contextlib
import importlib
import os
import platform
import random
import socket
import subprocess
import sys

import numpy as np
import torch


def set_seed(seed):
    """Seeds python, numpy and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def get_rng_state():
    """Returns the python, numpy, torch and CUDA RNG states as tensors / lists / ints, which
    ``torch.load(weights_only=True)`` accepts."""
    py = random.getstate()
    npst = np.random.get_state()
    state = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [
            npst[0],
            torch.from_numpy(np.asarray(npst[1], dtype=np.int64)),
            int(npst[2]),
            int(npst[3]),
            float(npst[4]),
        ],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state):
    """Restores states produced by get_rng_state."""
    py = state["python"]
    random.setstate((int(py[0]), tuple(int(x) for x in py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((str(n[0]), np.asarray(n[1].numpy() if torch.is_tensor(n[1]) else n[1], dtype=np.uint32),
                         int(n[2]), int(n[3]), float(n[4])))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"].cpu())


@contextlib.contextmanager
def rng_preserved():
    """Runs the block and then puts every RNG back, so the block (e.g. validation) does not change
    what training draws next."""
    state = get_rng_state()
    try:
        yield
    finally:
        set_rng_state(state)


def _version(mod):
    try:
        m = importlib.import_module(mod)
        return str(getattr(m, "__version__", "installed"))
    except Exception:
        return None


def git_commit(path=None):
    """Returns the git commit of the source tree (with '+dirty' when modified), or None."""
    path = path or os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=path,
                               capture_output=True, text=True, timeout=10)
        return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def collect_env_info():
    """Returns a dict of library versions, devices and host facts for the run manifest."""
    info = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "torch": torch.__version__,
        "cuda_available": torch.cuda.is_available(),
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "git_commit": git_commit(),
    }
    for mod in ("torchvision", "numpy", "av", "torchcodec", "fvcore", "iopath", "yacs", "submitit"):
        info[mod] = _version(mod)
    if torch.cuda.is_available():
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        try:
            info["nccl"] = ".".join(map(str, torch.cuda.nccl.version()))
        except Exception:
            info["nccl"] = None
    return info
