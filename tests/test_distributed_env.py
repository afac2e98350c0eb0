"""Launch-environment detection (torchrun, SLURM), config inference from it, collectives with one
process, and tools/submit.py's dry run."""

import os
import subprocess
import sys

import torch

from vov3d.config.defaults import get_cfg
from vov3d.utils import distributed as du
from vov3d.utils.parser import build_parser, config_from_args

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_KEYS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "NODE_RANK", "MASTER_ADDR",
         "MASTER_PORT", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "SLURM_JOB_NUM_NODES", "SLURM_NODEID",
         "SLURM_JOB_NODELIST", "SLURM_JOB_ID")


def _clean(monkeypatch):
    for k in _KEYS:
        monkeypatch.delenv(k, raising=False)


def test_no_launcher(monkeypatch):
    _clean(monkeypatch)
    assert du.detect_launch_env(0) is None


def test_torchrun_env_sets_shards(monkeypatch):
    _clean(monkeypatch)
    for k, v in dict(RANK="5", WORLD_SIZE="8", LOCAL_RANK="1", LOCAL_WORLD_SIZE="4", GROUP_RANK="1",
                     MASTER_ADDR="h0", MASTER_PORT="29500").items():
        monkeypatch.setenv(k, v)
    env = du.detect_launch_env(4)
    assert (env["rank"], env["world_size"], env["local_rank"], env["node_rank"]) == (5, 8, 1, 1)
    cfg = get_cfg()
    cfg.NUM_GPUS = 8
    changes = du.apply_launch_env(cfg, env)
    assert (cfg.NUM_GPUS, cfg.NUM_SHARDS, cfg.SHARD_ID) == (4, 2, 1) and "NUM_GPUS" in changes
    cpu = get_cfg()
    cpu.NUM_GPUS = 0
    du.apply_launch_env(cpu, env)  # CPU: every process is a shard
    assert (cpu.NUM_SHARDS, cpu.SHARD_ID) == (8, 5)


def test_torchrun_cpu_load_config_scales_lr_by_processes(monkeypatch):
    _clean(monkeypatch)
    for k, v in dict(RANK="1", WORLD_SIZE="2", LOCAL_RANK="1", LOCAL_WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                     MASTER_PORT="29500").items():
        monkeypatch.setenv(k, v)
    args = build_parser().parse_args(["NUM_GPUS", "0", "SOLVER.BASE_LR_SCALE_NUM_SHARDS", "True",
                                      "SOLVER.BASE_LR", "0.1", "TRAIN.BATCH_SIZE", "4", "TEST.BATCH_SIZE", "2"])
    cfg = config_from_args(args)
    assert (cfg.NUM_SHARDS, cfg.SHARD_ID) == (2, 1) and abs(cfg.SOLVER.BASE_LR - 0.2) < 1e-12


def test_slurm_env(monkeypatch):
    _clean(monkeypatch)
    for k, v in dict(SLURM_PROCID="9", SLURM_NTASKS="16", SLURM_LOCALID="1", SLURM_JOB_NUM_NODES="2",
                     SLURM_NODEID="1", SLURM_JOB_NODELIST="gpu[003-004]", SLURM_JOB_ID="1234").items():
        monkeypatch.setenv(k, v)
    env = du.detect_launch_env(8)
    assert (env["rank"], env["world_size"], env["local_rank"], env["local_world_size"]) == (9, 16, 1, 8)
    assert env["init_method"] == f"tcp://gpu003:{15000 + 1234}"
    assert du._first_slurm_host("node7,node8") == "node7"
    monkeypatch.setenv("SLURM_NTASKS", "1")
    assert du.detect_launch_env(8) is None  # one task: the launcher spawns the GPU processes itself


def test_collectives_single_process():
    t = [torch.tensor([1.0, 2.0])]
    assert du.all_reduce(t)[0].tolist() == [1.0, 2.0]
    assert du.all_gather([torch.arange(3)])[0].tolist() == [0, 1, 2]
    assert du.all_gather_object({"a": 1}) == [{"a": 1}]
    assert du.all_reduce_scalars([3, 4]) == [3.0, 4.0]
    du.synchronize()


def test_submit_dry_run_needs_no_gpu_nor_submitit():
    r = subprocess.run([sys.executable, os.path.join(REPO, "tools/submit.py"), "--cfg",
                        "configs/SSv1/VoV3D_L_32x1.yaml", "--nodes", "2", "--gpus", "8", "--dry_run",
                        "OUTPUT_DIR", "/tmp/vov3d_submit_dry"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "tasks_per_node: 8" in r.stdout and "gpus_per_node: 8" in r.stdout and "nodes: 2" in r.stdout
