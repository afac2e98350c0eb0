"""tools/run_net.py: config and path errors give one clear line and a non-zero exit code."""

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*args):
    return subprocess.run([sys.executable, os.path.join(REPO, "tools/run_net.py"), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args,needle", [
    (["--cfg", "configs/SSv1/nope.yaml"], "Config file not found"),
    (["--cfg", "configs/SSv1/VoV3D_M_16x1.yaml", "SOLVER.NOT_A_KEY", "1"], "SOLVER.NOT_A_KEY"),
    (["--cfg", "configs/SSv1/VoV3D_M_16x1.yaml", "NUM_GPUS", "0", "--num_shards"], None),
    (["--cfg", "configs/SSv1/VoV3D_M_16x1.yaml", "NUM_GPUS", "0", "NUM_SHARDS", "3", "TRAIN.BATCH_SIZE", "64"],
     "TRAIN.BATCH_SIZE 64 does not divide by the 3 processes"),
    (["--cfg", "configs/SSv1/VoV3D_M_16x1.yaml", "NUM_GPUS", "0", "TRAIN.CHECKPOINT_FILE_PATH", "/no/such.pyth"],
     "TRAIN.CHECKPOINT_FILE_PATH /no/such.pyth does not exist"),
    (["--cfg", "configs/SSv1/VoV3D_M_16x1.yaml", "NUM_GPUS", "0", "DATA.PATH_TO_DATA_DIR", "/no/such/dir",
      "OUTPUT_DIR", "__OUT__"], "/no/such/dir"),
])
def test_one_line_errors(args, needle, tmp_path):
    args = [a.replace("__OUT__", str(tmp_path)) for a in args]
    r = _run(*args)
    assert r.returncode != 0
    if needle is None:
        return
    err_lines = [l for l in r.stderr.strip().splitlines() if l.strip()]
    assert "Traceback" not in r.stderr, r.stderr
    assert any(needle in l for l in err_lines), r.stderr
    assert err_lines[-1].startswith("vov3d: error:"), r.stderr


def test_cpu_config_on_gpu_count_error():
    import torch

    if torch.cuda.is_available():
        pytest.skip("GPUs present")
    r = _run("--cfg", "configs/SSv1/VoV3D_M_16x1.yaml")  # NUM_GPUS 8 in the recipe
    assert r.returncode == 2 and "set NUM_GPUS 0" in r.stderr and "Traceback" not in r.stderr
