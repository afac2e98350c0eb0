"""The training loop: `train(cfg)` trains, validates, keeps checkpoints and resumes.

Per epoch: train_epoch -> precise BN (when an evaluation follows) -> single-view validation (RNG
preserved, so it never changes what training draws) -> checkpoint with every process's RNG state.
A run restarted with the same command resumes from the newest checkpoint and, on CPU with
DATA_LOADER.NUM_WORKERS 0, reproduces the uninterrupted run bit for bit.
"""

import contextlib
import json
import logging
import os
import sys
import time

import torch
import torch.nn as nn

from vov3d.engine import evaluate
from vov3d.engine.batch import amp_dtype, autocast_context, count_bad_samples, inputs_to_device
from vov3d.engine.ema import ModelEMA
from vov3d.engine.meters import LossExplosionError, TrainMeter  # noqa: F401 (re-exported)
from vov3d.models import losses
from vov3d.models import optimizer as optim
from vov3d import runtime
from vov3d.utils import checkpoint as cu
from vov3d.utils import distributed as du
from vov3d.utils import env
from vov3d.utils import logging as vlog

logger = logging.getLogger(__name__)

BEST_CHECKPOINT_NAME = "checkpoint_best.pyth"


# ----------------------------------------------------------------------------------------------- #
# Run artefacts: TensorBoard, manifest
# ----------------------------------------------------------------------------------------------- #


def make_tb_writer(cfg):
    """Returns a TensorBoard SummaryWriter on the master when TENSORBOARD.ENABLE, else None."""
    if not cfg.TENSORBOARD.ENABLE or not du.is_master_proc():
        return None
    from torch.utils.tensorboard import SummaryWriter

    log_dir = cfg.TENSORBOARD.LOG_DIR or f"runs-{cfg.TRAIN.DATASET}"
    if not os.path.isabs(log_dir):
        log_dir = os.path.join(cfg.OUTPUT_DIR, log_dir)
    return SummaryWriter(log_dir=log_dir)


def manifest_path(cfg):
    """Returns OUTPUT_DIR/manifest.json."""
    return os.path.join(cfg.OUTPUT_DIR, "manifest.json")


def update_manifest(cfg, updates):
    """Merges `updates` into OUTPUT_DIR/manifest.json (master only; written atomically)."""
    if not du.is_master_proc():
        return
    path = manifest_path(cfg)
    data = {}
    if os.path.isfile(path):
        try:
            with open(path) as f:
                data = json.load(f)
        except (OSError, json.JSONDecodeError):
            data = {}
    for k, v in updates.items():
        if isinstance(v, dict) and isinstance(data.get(k), dict):
            data[k].update(v)
        else:
            data[k] = v
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True, default=str)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_run_manifest(cfg, datasets, resumed_from):
    """Writes the run manifest: config, versions, world size, effective batch and LR, dataset sizes."""
    if not du.is_master_proc():
        return
    world = du.get_world_size()
    with open(os.path.join(cfg.OUTPUT_DIR, "config.yaml"), "w") as f:
        f.write(cfg.dump())
    accum = cfg.TRAIN.GRAD_ACCUM_STEPS
    update_manifest(cfg, {
        "command": " ".join(sys.argv),
        "config": cfg.dump(),
        "env": env.collect_env_info(),
        "world_size": world,
        "num_shards": cfg.NUM_SHARDS,
        "num_gpus_per_shard": cfg.NUM_GPUS,
        "batch_size_per_process": cfg.TRAIN.BATCH_SIZE // world,
        "grad_accum_steps": accum,
        "effective_batch_size": cfg.TRAIN.BATCH_SIZE * accum,
        "base_lr": cfg.SOLVER.BASE_LR,
        "base_lr_scaled_by_num_shards": bool(cfg.SOLVER.BASE_LR_SCALE_NUM_SHARDS),
        "lr_policy": cfg.SOLVER.LR_POLICY,
        "dataset_sizes": datasets,
        "resumed_from": resumed_from,
        "start_time": time.strftime("%Y-%m-%d %H:%M:%S"),
    })


# ----------------------------------------------------------------------------------------------- #
# Pieces of the loop
# ----------------------------------------------------------------------------------------------- #


def maybe_convert_sync_bn(cfg, model):
    """Returns `model` with SyncBatchNorm when BN.NORM_TYPE is sync_batchnorm and there are several
    processes on GPUs (torch's SyncBatchNorm has no CPU kernel: plain BN is kept there, with a warning)."""
    if cfg.BN.NORM_TYPE != "sync_batchnorm" or du.get_world_size() == 1:
        return model
    if cfg.NUM_GPUS == 0:
        logger.warning("BN.NORM_TYPE sync_batchnorm needs GPUs (torch has no CPU SyncBatchNorm); "
                       "each CPU process keeps its own batch statistics.")
        return model
    logger.info("Converting BatchNorm to SyncBatchNorm over %d processes", du.get_world_size())
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)


def wrap_ddp(cfg, model):
    """Returns `model` wrapped in DistributedDataParallel when there are several processes."""
    if du.get_world_size() == 1:
        return model
    if cfg.NUM_GPUS > 0:
        dev = torch.cuda.current_device()
        return nn.parallel.DistributedDataParallel(model, device_ids=[dev], output_device=dev)
    return nn.parallel.DistributedDataParallel(model)


def _gen_inputs(loader, cfg, device):
    for inputs, *_ in loader:
        yield inputs_to_device(inputs, cfg, device)


def calculate_and_update_precise_bn(loader, model, num_iters, cfg, device):
    """Recomputes the BN running statistics of `model` (bare module) over `num_iters` training batches
    (fvcore's update_bn_stats), then averages them over processes so every rank evaluates alike."""
    from fvcore.nn.precise_bn import get_bn_modules, update_bn_stats

    was_training = model.training
    model.train()
    num_iters = min(num_iters, len(loader))
    update_bn_stats(model, _gen_inputs(loader, cfg, device), num_iters)
    if du.get_world_size() > 1:
        bufs = []
        for bn in get_bn_modules(model):
            bufs += [bn.running_mean, bn.running_var]
        du.all_reduce(bufs, average=True)
    model.train(was_training)


def gather_rng_states():
    """Returns the RNG states of every process (rank order), for the checkpoint."""
    return du.all_gather_object(env.get_rng_state())


def restore_rng_states(states, cfg, epoch):
    """Restores this process's RNG state from a checkpoint's list (or reseeds when the world size changed)."""
    rank, world = du.get_rank(), du.get_world_size()
    if isinstance(states, (list, tuple)) and len(states) == world:
        env.set_rng_state(states[rank])
        return True
    logger.warning("Checkpoint RNG states are for %s process(es), this run has %d: reseeding from RNG_SEED "
                   "and the epoch (the run stays deterministic, but differs from an uninterrupted one).",
                   len(states) if isinstance(states, (list, tuple)) else "no", world)
    env.set_seed(cfg.RNG_SEED + 1000003 * (epoch + 1) + rank)
    return False


def train_epoch(train_loader, model, optimizer, scaler, loss_fun, cur_epoch, cfg, meter, device, ema=None,
                last_checkpoint=None):
    """Trains `model` for one epoch (LR set every iteration from the fractional epoch); returns the
    epoch stats. Raises LossExplosionError on a NaN / infinite loss."""
    model.train()
    data_size = len(train_loader)
    accum = max(cfg.TRAIN.GRAD_ACCUM_STEPS, 1)
    is_ddp = isinstance(model, nn.parallel.DistributedDataParallel)
    meter.reset()
    optimizer.zero_grad(set_to_none=True)
    meter.iter_tic()
    for cur_iter, (inputs, labels, index, meta) in enumerate(train_loader):
        inputs = inputs_to_device(inputs, cfg, device)
        labels = labels.to(device, non_blocking=True)
        meter.data_toc()
        # With accumulation, a step uses the LR of its first micro-batch (= PySlowFast's for the same
        # effective batch); with GRAD_ACCUM_STEPS 1 this is exactly PySlowFast's per-iteration LR.
        lr = optim.get_epoch_lr(cur_epoch + float(cur_iter - cur_iter % accum) / data_size, cfg)
        optim.set_lr(optimizer, lr)
        step_now = (cur_iter + 1) % accum == 0 or cur_iter + 1 == data_size
        sync = contextlib.nullcontext() if (step_now or not is_ddp) else model.no_sync()
        with sync:
            with autocast_context(cfg, device):
                preds = model(inputs)
                loss = loss_fun(preds, labels)
            scaler.scale(loss / accum if accum > 1 else loss).backward()
        if step_now:
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            if ema is not None:
                ema.update(model)
        bad, examples = count_bad_samples(meta, labels.size(0))
        if bad:
            meter.add_bad_samples(bad, examples)
        meter.update(preds, labels, loss, lr, cur_iter)
        meter.check_and_log(cur_epoch, cur_iter, last_checkpoint, force=cur_iter + 1 == data_size)
        meter.iter_tic()
    return meter.log_epoch(cur_epoch)


def is_eval_epoch(cfg, cur_epoch):
    """Returns True when validation runs after 0-based `cur_epoch` (every EVAL_PERIOD, and the last)."""
    if cfg.TRAIN.EVAL_PERIOD <= 0:
        return False
    return (cur_epoch + 1) % cfg.TRAIN.EVAL_PERIOD == 0 or cur_epoch + 1 == cfg.SOLVER.MAX_EPOCH


def log_model_info(model, cfg):
    """Logs the parameter count and, from vov3d.utils.model_stats, GFLOPs and activations of one test
    clip (computed in eval mode with the RNG preserved, so logging never changes the run)."""
    n = sum(p.numel() for p in model.parameters())
    logger.info("Model %s: %.3fM parameters", cfg.MODEL.MODEL_NAME, n / 1e6)
    try:
        from vov3d.utils import model_stats  # optional, owned by the models

        was_training = model.training
        model.eval()
        try:
            with torch.no_grad(), env.rng_preserved():
                s = model_stats.model_summary(model, cfg)
        finally:
            model.train(was_training)
        logger.info("Model %s: %.4g GFLOPs, %.4gM activations for input %s", cfg.MODEL.MODEL_NAME, s["gflops"],
                    s["activations_m"], s["input_shape"])
    except Exception as e:  # FLOP counting must never stop training
        logger.info("FLOPs not computed: %s", e)


def _dataset_size(loader):
    try:
        return len(loader.dataset)
    except Exception:
        return None


# ----------------------------------------------------------------------------------------------- #
# train(cfg)
# ----------------------------------------------------------------------------------------------- #


def train(cfg):
    """Trains the configured model (resuming when TRAIN.AUTO_RESUME finds a checkpoint); returns a dict
    with the last epoch's train / val stats and the best validation top-1 error."""
    from vov3d.config import validate
    from vov3d.datasets import loader as data_loader
    from vov3d.models import build_model
    from vov3d.models.build import model_device

    validate(cfg)  # the Python API path: tools have validated already, a hand-built cfg has not
    os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
    vlog.setup_logging(cfg.OUTPUT_DIR)
    env.set_seed(cfg.RNG_SEED)
    if du.is_master_proc():
        logger.info("Train with config:\n%s", cfg.dump())

    # Data first: a wrong path fails in a second, before any model work.
    train_loader = data_loader.construct_loader(cfg, "train")
    need_val = cfg.TRAIN.EVAL_PERIOD > 0
    val_loader = data_loader.construct_loader(cfg, "val") if need_val else None

    env.set_seed(cfg.RNG_SEED)  # same initial weights on every process
    model = build_model(cfg)
    device = model_device(cfg)
    if cfg.LOG_MODEL_INFO and du.is_master_proc():
        log_model_info(model, cfg)
    model = maybe_convert_sync_bn(cfg, model)
    optimizer = optim.construct_optimizer(cfg, model)
    use_fp16 = cfg.TRAIN.MIXED_PRECISION and amp_dtype(cfg) == torch.float16
    scaler = torch.amp.GradScaler(device.type, enabled=use_fp16)
    ema = ModelEMA(model, cfg.TRAIN.EMA.DECAY) if cfg.TRAIN.EMA.ENABLE else None
    loss_fun = losses.build_loss(cfg)

    # Resume or initialise.
    start_epoch, resumed_from, extra = 0, None, {}
    best = {"top1_err": None, "epoch": None}
    last = cu.get_last_checkpoint(cfg.OUTPUT_DIR) if cfg.TRAIN.AUTO_RESUME else None
    if last:
        logger.info("Resuming from %s", last)
        epoch = cu.load_checkpoint(last, model, optimizer=optimizer, scaler=scaler if use_fp16 else None)
        start_epoch = epoch + 1
        resumed_from = last
        extra = cu.read_checkpoint(last)
        if ema is not None:
            if "ema_state" in extra:
                ema.load_state_dict(extra["ema_state"])
            else:
                ema = ModelEMA(model, cfg.TRAIN.EMA.DECAY)
        if extra.get("best_top1_err") is not None:
            best = {"top1_err": float(extra["best_top1_err"]), "epoch": int(extra["best_epoch"])}
    elif cfg.TRAIN.CHECKPOINT_FILE_PATH:
        logger.info("Loading initial weights from %s", cfg.TRAIN.CHECKPOINT_FILE_PATH)
        epoch = cu.load_checkpoint(
            cfg.TRAIN.CHECKPOINT_FILE_PATH,
            model,
            optimizer=optimizer,
            scaler=scaler if use_fp16 else None,
            epoch_reset=cfg.TRAIN.CHECKPOINT_EPOCH_RESET,
            clear_name_pattern=tuple(cfg.TRAIN.CHECKPOINT_CLEAR_NAME_PATTERN),
        )
        start_epoch = epoch + 1
        if ema is not None:
            ema = ModelEMA(model, cfg.TRAIN.EMA.DECAY)

    # Measured layout / conv routes, cuDNN autotuning, torch.compile (MODEL.*); the optimizer, EMA and
    # checkpoints keep the bare model.
    train_model = runtime.prepare_for_training(model, cfg, wrap=lambda m: wrap_ddp(cfg, m))

    sizes = {"train": _dataset_size(train_loader), "val": _dataset_size(val_loader) if val_loader else None}
    write_run_manifest(cfg, sizes, resumed_from)
    epoch_iters = len(train_loader)
    if epoch_iters == 0:
        raise ValueError(
            f"The training loader is empty: {sizes['train']} videos for a per-process batch of "
            f"{cfg.TRAIN.BATCH_SIZE // du.get_world_size()}; lower TRAIN.BATCH_SIZE or check DATA.PATH_TO_DATA_DIR"
        )
    logger.info(
        "Training %s on %s: %s train videos, %d iterations per epoch, %d process(es), batch %d per process "
        "(effective %d), base LR %g, epochs %d..%d",
        cfg.MODEL.MODEL_NAME, cfg.TRAIN.DATASET, sizes["train"], epoch_iters, du.get_world_size(),
        cfg.TRAIN.BATCH_SIZE // du.get_world_size(), cfg.TRAIN.BATCH_SIZE * cfg.TRAIN.GRAD_ACCUM_STEPS,
        cfg.SOLVER.BASE_LR, start_epoch + 1, cfg.SOLVER.MAX_EPOCH,
    )
    if last and "rng_state" in extra:
        restore_rng_states(extra["rng_state"], cfg, start_epoch - 1)
    elif last:
        restore_rng_states(None, cfg, start_epoch - 1)
    else:
        env.set_seed(cfg.RNG_SEED + du.get_rank())

    writer = make_tb_writer(cfg)
    meter = TrainMeter(epoch_iters, cfg, device)
    meter.tb_writer = writer
    last_ckpt = resumed_from or (cfg.TRAIN.CHECKPOINT_FILE_PATH or None)
    train_stats, val_stats, bad_total = None, None, {}
    for cur_epoch in range(start_epoch, cfg.SOLVER.MAX_EPOCH):
        data_loader.shuffle_dataset(train_loader, cur_epoch)
        train_stats = train_epoch(train_loader, train_model, optimizer, scaler, loss_fun, cur_epoch, cfg, meter,
                                  device, ema=ema, last_checkpoint=last_ckpt)
        bad_total[str(cur_epoch + 1)] = train_stats["bad_samples"]
        eval_now = is_eval_epoch(cfg, cur_epoch) and val_loader is not None
        ckpt_now = cu.is_checkpoint_epoch(cfg, cur_epoch)
        eval_model = ema.module if (ema is not None and cfg.TRAIN.EMA.EVAL) else model
        # As PySlowFast: precise BN before every evaluation and every checkpoint (the tested weights).
        if (eval_now or ckpt_now) and cfg.BN.USE_PRECISE_STATS and cfg.BN.NUM_BATCHES_PRECISE > 0:
            calculate_and_update_precise_bn(train_loader, eval_model, cfg.BN.NUM_BATCHES_PRECISE, cfg, device)
        improved = False
        if eval_now:
            with env.rng_preserved():
                val_stats = evaluate.eval_epoch(val_loader, eval_model, cur_epoch, cfg, device, writer)
            if best["top1_err"] is None or val_stats["top1_err"] < best["top1_err"]:
                best = {"top1_err": val_stats["top1_err"], "epoch": cur_epoch + 1}
                improved = True
            val_stats["min_top1_err"] = best["top1_err"]
            vlog.log_json_stats(val_stats, cfg.OUTPUT_DIR)
        if ckpt_now or (improved and cfg.TRAIN.BEST_CHECKPOINT):
            extra_state = {"rng_state": gather_rng_states(), "best_top1_err": best["top1_err"],
                           "best_epoch": best["epoch"],
                           # So tools (demo_net) can name predictions without the dataset at hand.
                           "class_names": list(getattr(train_loader.dataset, "class_names", None) or [])}
            if ema is not None:
                extra_state["ema_state"] = ema.state_dict()
            if ckpt_now:
                p = cu.save_checkpoint(cfg.OUTPUT_DIR, model, optimizer, cur_epoch, cfg,
                                       scaler=scaler if use_fp16 else None, extra_state=extra_state)
                last_ckpt = cu.get_path_to_checkpoint(cfg.OUTPUT_DIR, cur_epoch + 1)
                if p:
                    logger.info("Saved checkpoint %s", p)
            if improved and cfg.TRAIN.BEST_CHECKPOINT:
                p = cu.save_checkpoint(cfg.OUTPUT_DIR, model, optimizer, cur_epoch, cfg,
                                       scaler=scaler if use_fp16 else None, extra_state=extra_state,
                                       path=os.path.join(cu.get_checkpoint_dir(cfg.OUTPUT_DIR),
                                                         BEST_CHECKPOINT_NAME))
                if p:
                    logger.info("New best validation top-1 error %.2f%% (epoch %d): %s", best["top1_err"],
                                cur_epoch + 1, p)
            du.synchronize()
        update_manifest(cfg, {"bad_samples_per_epoch": bad_total, "last_epoch": cur_epoch + 1,
                              "best_val_top1_err": best["top1_err"], "best_val_epoch": best["epoch"]})

    if du.is_master_proc():
        from vov3d.utils import plots

        try:
            p = plots.plot_training_curves(vlog.read_json_stats(cfg.OUTPUT_DIR),
                                           os.path.join(cfg.OUTPUT_DIR, "training_curves.png"))
            if p:
                logger.info("Training curves: %s", p)
        except Exception as e:  # a plot must never fail a finished run
            logger.warning("Could not draw the training curves: %s", e)
    if writer is not None:
        writer.close()
    if best["top1_err"] is not None:
        logger.info("Best validation top-1 error %.2f%% at epoch %d", best["top1_err"], best["epoch"])
    du.synchronize()
    return {"train": train_stats, "val": val_stats, "best_top1_err": best["top1_err"],
            "best_epoch": best["epoch"], "start_epoch": start_epoch}

