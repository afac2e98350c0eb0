"""Shared test helpers: where the read-only reference fixtures live, and how to require them."""

import os
from pathlib import Path

import pytest
import torch
import torch.nn as nn

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("VOV3D_SHARED", REPO.parent / "shared"))
REFERENCE = SHARED / "reference"


@pytest.fixture(autouse=True, scope="session")
def _tune_cache(tmp_path_factory):
    """Measured speed decisions of the test session go to a temporary cache, never the user's."""
    old = os.environ.get("VOV3D_TUNE_CACHE")
    os.environ["VOV3D_TUNE_CACHE"] = str(tmp_path_factory.mktemp("tune"))
    yield
    if old is None:
        os.environ.pop("VOV3D_TUNE_CACHE", None)
    else:
        os.environ["VOV3D_TUNE_CACHE"] = old


@pytest.fixture(autouse=True, scope="session")
def _plain_eval_forwards():
    """Eval forwards of built models run the models' own modules (the fast eval path of
    vov3d/runtime/eval_path.py would measure routes for every tiny test model and shape);
    tests/test_eval_path.py turns it on where it is the subject."""
    old = os.environ.get("VOV3D_ACCELERATED_EVAL")
    os.environ["VOV3D_ACCELERATED_EVAL"] = "0"
    yield
    if old is None:
        os.environ.pop("VOV3D_ACCELERATED_EVAL", None)
    else:
        os.environ["VOV3D_ACCELERATED_EVAL"] = old


def require_reference(*names):
    """Returns the paths of reference files; skips when absent, but fails when CI=true."""
    paths = [REFERENCE / n for n in names]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"reference fixture missing on CI: {missing}")
        pytest.skip(f"reference fixture missing: {missing}")
    return paths if len(paths) > 1 else paths[0]


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module: on a shared 2-core machine, spinning OpenMP threads make
    tiny models crawl."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def randomize_bn(model, seed=0):
    """Non-trivial BN statistics and affine parameters, so folding is really tested."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(0.5 * torch.rand(m.num_features, generator=g) + 0.4)
                m.bias.copy_(torch.rand(m.num_features, generator=g) - 0.5)
    return model
