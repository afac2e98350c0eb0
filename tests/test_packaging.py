"""The package as users install it: pyproject.toml's package list, a non-editable install whose console
scripts find the shipped configs from any folder, and the console scripts' own behaviour."""

import contextlib
import io
import os
import shutil
import subprocess
import sys
import sysconfig

import pytest
from conftest import REPO


def test_pyproject_lists_every_package_and_the_version_is_the_package_s():
    tomllib = pytest.importorskip("tomllib")
    import vov3d

    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    listed = set(project["tool"]["setuptools"]["packages"])
    # Every folder of vov3d/ with Python files, with or without __init__.py (vov3d.bench has none).
    found = {os.path.relpath(d, REPO).replace(os.sep, ".") for d, _, files in os.walk(REPO / "vov3d")
             if any(f.endswith(".py") for f in files)}
    assert listed == found | {"vov3d.configs"}
    assert project["tool"]["setuptools"]["package-dir"]["vov3d.configs"] == "configs"
    assert vov3d.__version__.count(".") == 2


def test_non_editable_install_gives_console_scripts_that_find_shipped_configs(tmp_path):
    """pip install (not editable) of a copy of the checkout into a fresh venv that borrows this
    environment's dependencies; the scripts then run from a folder without configs/."""
    src = _mkdir(tmp_path / "src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for name in ("vov3d", "configs"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    # Dependencies (and pip, setuptools) from this environment; its own vov3d is not visible, because
    # .pth files in a folder named by a .pth line are not read (the editable install is such a file).
    with open(os.path.join(site, "borrowed.pth"), "w") as f:
        f.write(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                    str(src)], check=True, cwd=tmp_path, capture_output=True)
    shutil.rmtree(src)  # the installed copy must not need the source
    work = _mkdir(tmp_path / "elsewhere")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH="")
    where = subprocess.run([str(python), "-c", "import vov3d.config as c; print(c.find_config('configs/demo/VoV3D_M_demo.yaml'))"],
                           cwd=work, env=env, check=True, capture_output=True, text=True).stdout.strip()
    assert where.startswith(site) and where.endswith(os.path.join("vov3d", "configs", "demo", "VoV3D_M_demo.yaml"))
    # The config loads (a missing one would be the error), then the checkpoint check stops the run.
    run = subprocess.run([str(venv / "bin" / "vov3d-test"), "--cfg", "configs/demo/VoV3D_M_demo.yaml", "NUM_GPUS", "0",
                          "TEST.CHECKPOINT_FILE_PATH", "no_such_weights"], cwd=work, env=env, capture_output=True, text=True)
    assert run.returncode == 2 and "TEST.CHECKPOINT_FILE_PATH no_such_weights does not exist" in run.stderr, run.stderr


def _mkdir(path):
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_vov3d_test_tests_only_so_its_checkpoint_must_exist():
    from vov3d.cli.run_net import test_main

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = test_main(["--cfg", "configs/demo/VoV3D_M_demo.yaml", "NUM_GPUS", "0", "TRAIN.ENABLE", "True",
                          "TEST.CHECKPOINT_FILE_PATH", "/no/such.pyth"])
    assert code == 2 and "TEST.CHECKPOINT_FILE_PATH /no/such.pyth does not exist" in err.getvalue()
