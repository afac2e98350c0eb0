"""Process groups and collectives: world size, rank, init (torchrun / SLURM / PySlowFast tcp flags),
all_gather / all_reduce helpers that work with gloo on CPU and NCCL on CUDA.

Every helper is safe without torch.distributed: with one process they return their input.
"""

import datetime
import logging
import os
import re
import subprocess

import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)


def is_dist_avail_and_initialized():
    """Returns True when a default process group exists."""
    return dist.is_available() and dist.is_initialized()


def get_world_size():
    """Returns the number of processes (1 when not distributed)."""
    return dist.get_world_size() if is_dist_avail_and_initialized() else 1


def get_rank():
    """Returns the global rank of this process (0 when not distributed)."""
    return dist.get_rank() if is_dist_avail_and_initialized() else 0


def is_master_proc(num_gpus=8):
    """Returns True on the process that writes files and logs (global rank 0).

    `num_gpus` is accepted for PySlowFast compatibility; the rank decides.
    """
    return get_rank() == 0


_LOCAL_RANK = 0


def get_local_rank():
    """Returns the rank of this process on its machine (its GPU index when NUM_GPUS > 0)."""
    return _LOCAL_RANK


def synchronize():
    """Waits for every process (a barrier); a no-op with one process."""
    if get_world_size() > 1:
        if dist.get_backend() == "nccl" and torch.cuda.is_available():
            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()


def _comm_device():
    """Returns the device tensors must be on for the default group's backend."""
    if is_dist_avail_and_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce(tensors, average=True):
    """Returns `tensors` (a list, reduced in place) summed, or averaged when `average`, over processes.

    Tensors may live on any device: they are moved to the backend's device and back.
    """
    world = get_world_size()
    if world == 1:
        return tensors
    dev = _comm_device()
    for i, t in enumerate(tensors):
        buf = t.to(dev)
        dist.all_reduce(buf, op=dist.ReduceOp.SUM)
        if average:
            buf = buf / world if buf.is_floating_point() else buf // world
        if buf is not t:
            t.copy_(buf.to(t.device))
    return tensors


def all_reduce_scalars(values, average=False):
    """Returns python floats `values` summed (or averaged) over processes (one collective)."""
    if get_world_size() == 1:
        return [float(v) for v in values]
    t = torch.tensor([float(v) for v in values], dtype=torch.float64)
    all_reduce([t], average=average)
    return t.tolist()


def all_gather(tensors):
    """Returns, for each tensor of the list `tensors`, its concatenation (dim 0) over processes.

    First dimensions may differ between processes (padded internally).
    """
    world = get_world_size()
    if world == 1:
        return list(tensors)
    out = []
    dev = _comm_device()
    for t in tensors:
        src_dev = t.device
        t = t.contiguous().to(dev)
        n = torch.tensor([t.shape[0]], device=dev, dtype=torch.long)
        sizes = [torch.zeros_like(n) for _ in range(world)]
        dist.all_gather(sizes, n)
        sizes = [int(s.item()) for s in sizes]
        mx = max(sizes)
        if t.shape[0] < mx:
            pad = torch.zeros((mx - t.shape[0],) + tuple(t.shape[1:]), dtype=t.dtype, device=dev)
            t = torch.cat([t, pad], dim=0)
        bufs = [torch.empty_like(t) for _ in range(world)]
        dist.all_gather(bufs, t)
        out.append(torch.cat([b[:s] for b, s in zip(bufs, sizes)], dim=0).to(src_dev))
    return out


def all_gather_object(obj):
    """Returns the list of every process's picklable `obj`, in rank order."""
    world = get_world_size()
    if world == 1:
        return [obj]
    out = [None] * world
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj, src=0):
    """Returns `obj` of process `src` on every process."""
    if get_world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


# ----------------------------------------------------------------------------------------------- #
# Launch environments
# ----------------------------------------------------------------------------------------------- #


def torchrun_env():
    """Returns {rank, world_size, local_rank, local_world_size, node_rank} from torchrun's variables,
    or None when this process was not started by torchrun (or a launcher that sets the same)."""
    keys = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
    if not all(k in os.environ for k in keys):
        return None
    world = int(os.environ["WORLD_SIZE"])
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    rank = int(os.environ["RANK"])
    return {
        "rank": rank,
        "world_size": world,
        "local_rank": int(os.environ["LOCAL_RANK"]),
        "local_world_size": local_world,
        "node_rank": int(os.environ.get("GROUP_RANK", os.environ.get("NODE_RANK", rank // max(local_world, 1)))),
        "init_method": "env://",
        "source": "torchrun",
    }


def _first_slurm_host(nodelist):
    """Returns the first host name of a SLURM node list ("gpu[03-05,07],cpu1" -> "gpu03")."""
    try:
        out = subprocess.run(
            ["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, timeout=20, check=True
        )
        first = out.stdout.split()
        if first:
            return first[0]
    except (OSError, subprocess.SubprocessError):
        pass
    m = re.match(r"^([^,\[]+)(?:\[([^\]]+)\])?", nodelist)
    if not m:
        return nodelist
    prefix, ranges = m.group(1), m.group(2)
    if not ranges:
        return prefix
    first = ranges.split(",")[0].split("-")[0]
    return prefix + first


def slurm_env(num_gpus):
    """Returns the launch description of a SLURM job with one task per process, or None.

    Used when SLURM_NTASKS > 1 (``srun`` started every process: one per GPU, or one per machine on
    CPU). MASTER_ADDR / MASTER_PORT are taken from the environment when set, else the first host of
    the job and a port derived from the job id.
    """
    if "SLURM_PROCID" not in os.environ or int(os.environ.get("SLURM_NTASKS", "1")) <= 1:
        return None
    world = int(os.environ["SLURM_NTASKS"])
    rank = int(os.environ["SLURM_PROCID"])
    local_rank = int(os.environ.get("SLURM_LOCALID", "0"))
    num_nodes = int(os.environ.get("SLURM_JOB_NUM_NODES", os.environ.get("SLURM_NNODES", "1")))
    local_world = world // max(num_nodes, 1)
    addr = os.environ.get("MASTER_ADDR") or _first_slurm_host(os.environ.get("SLURM_JOB_NODELIST", "127.0.0.1"))
    port = os.environ.get("MASTER_PORT") or str(15000 + int(os.environ.get("SLURM_JOB_ID", "0")) % 20000)
    return {
        "rank": rank,
        "world_size": world,
        "local_rank": local_rank,
        "local_world_size": local_world,
        "node_rank": int(os.environ.get("SLURM_NODEID", rank // max(local_world, 1))),
        "init_method": f"tcp://{addr}:{port}",
        "source": "slurm",
    }


def detect_launch_env(num_gpus):
    """Returns the environment-described launch (torchrun first, then SLURM), or None."""
    return torchrun_env() or slurm_env(num_gpus)


def apply_launch_env(cfg, env):
    """Sets NUM_SHARDS / SHARD_ID (and NUM_GPUS when on GPUs) from a detected launch; returns the changes."""
    changes = {}
    if env is None:
        return changes
    local_world = max(env["local_world_size"], 1)
    shards = max(env["world_size"] // local_world, 1)
    want = {"NUM_SHARDS": shards, "SHARD_ID": env["node_rank"]}
    if cfg.NUM_GPUS > 0:
        want["NUM_GPUS"] = local_world
    elif local_world > 1:
        # CPU processes: NUM_GPUS 0 means one process per shard, so every process is its own shard.
        want = {"NUM_SHARDS": env["world_size"], "SHARD_ID": env["rank"]}
    for k, v in want.items():
        if cfg[k] != v:
            changes[k] = (cfg[k], v)
            cfg[k] = v
    return changes


def procs_per_shard(cfg):
    """Returns the processes started on each machine: one per GPU, or one on CPU."""
    return max(cfg.NUM_GPUS, 1)


def expected_world_size(cfg):
    """Returns the world size the config describes (NUM_SHARDS x processes per shard)."""
    return cfg.NUM_SHARDS * procs_per_shard(cfg)


def init_process_group(cfg, rank, world_size, local_rank, init_method, timeout_minutes=None):
    """Creates the default process group (NCCL on GPUs, gloo on CPU) and selects this process's GPU; its
    collectives wait `timeout_minutes` (default DIST_STARTUP_TIMEOUT_MINUTES) for the other processes."""
    if timeout_minutes is None:
        timeout_minutes = cfg.DIST_STARTUP_TIMEOUT_MINUTES
    global _LOCAL_RANK
    _LOCAL_RANK = local_rank
    if cfg.NUM_GPUS > 0:
        if not torch.cuda.is_available():
            raise RuntimeError(f"NUM_GPUS is {cfg.NUM_GPUS} but CUDA is not available; set NUM_GPUS 0 to run on CPU")
        visible = torch.cuda.device_count()
        if local_rank < visible:
            gpu = local_rank
        elif visible == 1:  # the scheduler gave each process its own single GPU (e.g. SLURM --gpus-per-task 1)
            gpu = 0
        else:
            raise RuntimeError(f"local rank {local_rank} needs GPU {local_rank}, but only {visible} are visible")
        torch.cuda.set_device(gpu)
        local_rank = gpu
    if world_size <= 1:
        return
    backend = cfg.DIST_BACKEND if cfg.NUM_GPUS > 0 else "gloo"
    kwargs = {}
    if backend == "nccl":
        kwargs["device_id"] = torch.device("cuda", local_rank)
    dist.init_process_group(
        backend=backend,
        init_method=init_method,
        world_size=world_size,
        rank=rank,
        timeout=datetime.timedelta(minutes=timeout_minutes),
        **kwargs,
    )


def set_collective_timeout(minutes):
    """Sets how long a collective of the default group waits for the other processes (DIST_TIMEOUT_MINUTES
    after start-up; DIST_STARTUP_TIMEOUT_MINUTES before); returns None. A no-op with one process."""
    if not is_dist_avail_and_initialized():
        return
    timeout = datetime.timedelta(minutes=float(minutes))
    setter = getattr(dist, "set_timeout", None)  # torch >= 2.6; older releases have the private name
    if setter is None:
        from torch.distributed import distributed_c10d

        setter = getattr(distributed_c10d, "_set_pg_timeout", None)
    if setter is None:
        logger.warning("This PyTorch cannot change a process group's timeout: DIST_TIMEOUT_MINUTES is not applied")
        return
    setter(timeout)


_HEARTBEAT_KEY = "vov3d/last_step/{}"


def _default_store():
    try:
        return dist.distributed_c10d._get_default_store()
    except Exception:  # private API: absent or changed in this PyTorch
        return None


def heartbeat(step):
    """Records in the rendezvous store the last training step this rank reached (so a timed-out peer
    can name the rank that stopped answering); returns None. A no-op with one process."""
    if get_world_size() == 1:
        return
    store = _default_store()
    if store is not None:
        store.set(_HEARTBEAT_KEY.format(get_rank()), str(int(step)))


def ranks_behind(timeout_seconds=10.0):
    """Returns {rank: last step} of the ranks whose recorded step is behind the furthest rank's, or {}
    when nothing is recorded or the store does not answer (its host may be the frozen one)."""
    store = _default_store()
    if store is None or get_world_size() == 1:
        return {}
    try:
        store.set_timeout(datetime.timedelta(seconds=timeout_seconds))
        steps = {}
        for r in range(get_world_size()):
            key = _HEARTBEAT_KEY.format(r)
            steps[r] = int(store.get(key)) if store.check([key]) else -1
    except Exception:
        return {}
    furthest = max(steps.values())
    return {r: s for r, s in steps.items() if s < furthest}


def destroy_process_group():
    """Destroys the default process group when one exists."""
    if is_dist_avail_and_initialized():
        dist.destroy_process_group()


def init_distributed_training(cfg):
    """PySlowFast-compatible no-op: vov3d creates the group in vov3d.engine.launch."""
    return None
