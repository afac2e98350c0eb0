"""The training loop: ``train(cfg)`` = :func:`setup` -> :func:`resume` -> :func:`run_epochs`.

Per epoch: train_epoch, then the ordered epoch-end steps of :data:`EPOCH_END_STEPS` (precise BN, validation,
checkpoint, best checkpoint, manifest), each a function of (cfg, run, cur_epoch) as detectron2's hooks.
Validation keeps the RNG state, so it never changes what training draws.

A run restarted with the same command resumes from the newest checkpoint that verifies. A stop signal
(vov3d.engine.signals) ends the current optimizer step, saves a mid-epoch checkpoint of exactly that
iteration and stops; the restart skips the iterations that epoch already did (same sampler order). With
augmentation drawn per sample from (seed, epoch, index) (vov3d.datasets.sampling.sample_rng), a killed and
resumed run reproduces an uninterrupted one bit for bit on CPU, for any DATA_LOADER.NUM_WORKERS.
"""

import contextlib
import dataclasses
import logging
import os
from typing import Any, Dict, Optional

import torch
import torch.nn as nn

from vov3d.datasets import multigrid
from vov3d.datasets.mixup import batch_rng, build_mixup
from vov3d.engine import evaluate, run_dir, signals
from vov3d.engine import solver as optim
from vov3d.engine.batch import amp_dtype, autocast_context, count_bad_samples, inputs_to_device
from vov3d.engine.ema import ModelEMA
from vov3d.engine.losses import build_loss
from vov3d.engine.meters import LossExplosionError, TrainMeter  # noqa: F401 (re-exported)
from vov3d import runtime
from vov3d.utils import checkpoint as cu
from vov3d.utils import distributed as du
from vov3d.utils import env
from vov3d.utils import logging as vlog

logger = logging.getLogger(__name__)

BEST_CHECKPOINT_NAME = "checkpoint_best.pyth"


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


def is_eval_epoch(cfg, cur_epoch, multigrid_schedule=None):
    """Returns True when validation runs after 0-based `cur_epoch` (every EVAL_PERIOD, and the last; with a
    long-cycle schedule MULTIGRID.EVAL_FREQ times per phase, as PySlowFast)."""
    if cfg.TRAIN.EVAL_PERIOD <= 0:
        return False
    if multigrid_schedule is not None and cur_epoch + 1 != cfg.SOLVER.MAX_EPOCH:
        return multigrid.is_multigrid_eval_epoch(multigrid_schedule, cur_epoch, cfg.MULTIGRID.EVAL_FREQ)
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


class StopAtIteration(Exception):
    """A stop signal was honoured after `iters_done` iterations of the current epoch."""

    def __init__(self, iters_done):
        super().__init__(iters_done)
        self.iters_done = iters_done


def train_epoch(train_loader, model, optimizer, scaler, loss_fun, cur_epoch, cfg, meter, device, ema=None,
                last_checkpoint=None, start_iter=0, epoch_iters=None, check_stop=False, mixup=None):
    """Trains `model` for one epoch (LR set every iteration from the fractional epoch), from iteration
    `start_iter` when resuming mid-epoch; returns the epoch stats. Raises LossExplosionError on a NaN /
    infinite loss, and StopAtIteration after an optimizer step when `check_stop` and a stop was requested.

    `mixup` (vov3d.datasets.mixup.MixUp) mixes each batch with draws seeded by (seed, epoch, iteration,
    rank); the meter still scores top-k against the original labels."""
    model.train()
    data_size = epoch_iters or len(train_loader)
    accum = max(cfg.TRAIN.GRAD_ACCUM_STEPS, 1)
    is_ddp = isinstance(model, nn.parallel.DistributedDataParallel)
    meter.reset()
    optimizer.zero_grad(set_to_none=True)
    meter.iter_tic()
    for cur_iter, (inputs, labels, index, meta) in enumerate(train_loader, start=start_iter):
        du.heartbeat(cur_epoch * data_size + cur_iter)  # "has its batch": names a rank that freezes before
        inputs = inputs_to_device(inputs, cfg, device)
        labels = labels.to(device, non_blocking=True)
        meter.data_toc()
        targets = labels
        if mixup is not None:
            rng = batch_rng(cfg.RNG_SEED, cur_epoch, cur_iter, du.get_rank())
            inputs[0], targets = mixup(inputs[0], labels, rng)
        # With accumulation, a step uses the LR of its first micro-batch (= PySlowFast's for the same
        # effective batch); with GRAD_ACCUM_STEPS 1 this is exactly PySlowFast's per-iteration LR.
        lr = optim.get_epoch_lr(cur_epoch + float(cur_iter - cur_iter % accum) / data_size, cfg)
        optim.set_lr(optimizer, lr)
        step_now = (cur_iter + 1) % accum == 0 or cur_iter + 1 == data_size
        sync = contextlib.nullcontext() if (step_now or not is_ddp) else model.no_sync()
        with sync:
            with autocast_context(cfg, device):
                preds = model(inputs)
                loss = loss_fun(preds, targets)
            scaler.scale(loss / accum if accum > 1 else loss).backward()
        if step_now:
            optim.clip_gradients(cfg, optimizer, scaler)
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
        # Only between optimizer steps (no half-accumulated gradient to lose), and not after the last
        # iteration: the epoch-end steps run first and the stop is honoured after them.
        if check_stop and step_now and cur_iter + 1 < data_size and signals.stop_requested():
            raise StopAtIteration(cur_iter + 1)
        meter.iter_tic()
    return meter.log_epoch(cur_epoch)


# ----------------------------------------------------------------------------------------------- #
# The state of a run, setup and resume
# ----------------------------------------------------------------------------------------------- #


@dataclasses.dataclass
class Run:
    """Everything the loop and the epoch-end steps share."""

    model: nn.Module  # the bare model: optimizer, EMA and checkpoints see this one
    train_model: nn.Module  # DDP / compiled wrapper of `model` that the loop calls
    optimizer: torch.optim.Optimizer
    scaler: Any
    use_fp16: bool
    ema: Optional[ModelEMA]
    loss_fun: Any
    device: torch.device
    train_loader: Any
    val_loader: Any
    epoch_iters: int
    dataset_sizes: Dict[str, Optional[int]]
    writer: Any = None
    meter: Any = None
    start_epoch: int = 0
    start_iter: int = 0
    resumed_from: Optional[str] = None
    resume_state: Dict[str, Any] = dataclasses.field(default_factory=dict)
    last_ckpt: Optional[str] = None
    best: Dict[str, Any] = dataclasses.field(default_factory=lambda: {"top1_err": None, "epoch": None})
    bad_total: Dict[str, Any] = dataclasses.field(default_factory=dict)
    train_stats: Optional[dict] = None
    val_stats: Optional[dict] = None
    # Per epoch, set by the steps: is an evaluation / a checkpoint due, did validation improve.
    eval_now: bool = False
    ckpt_now: bool = False
    improved: bool = False
    saved_this_epoch: bool = False
    ema_eval: bool = False  # TRAIN.EMA.EVAL
    mixup: Any = None  # MIXUP.ENABLE: vov3d.datasets.mixup.MixUp
    multigrid_schedule: Any = None  # MULTIGRID.LONG_CYCLE: [(step, [batch factor, T, S], end epoch), ...]

    @property
    def eval_model(self):
        """Returns the model validation and precise BN act on (the EMA copy with TRAIN.EMA.EVAL)."""
        return self.ema.module if (self.ema is not None and self.ema_eval) else self.model


def setup(cfg, multigrid_schedule=None):
    """Returns a Run: logging, loaders, model, optimizer, scaler, EMA and loss, initial weights from
    TRAIN.CHECKPOINT_FILE_PATH (fine-tuning) unless auto-resume finds a checkpoint of this run.
    `multigrid_schedule`: from vov3d.datasets.multigrid.prepare_config (which also gave `cfg`)."""
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
    train_loader = data_loader.construct_loader(cfg, "train", multigrid_schedule=multigrid_schedule)
    val_loader = data_loader.construct_loader(cfg, "val") if cfg.TRAIN.EVAL_PERIOD > 0 else None
    sizes = {"train": _dataset_size(train_loader), "val": _dataset_size(val_loader) if val_loader else None}
    epoch_iters = len(train_loader)
    if epoch_iters == 0:
        raise ValueError(
            f"The training loader is empty: {sizes['train']} videos for a per-process batch of "
            f"{cfg.TRAIN.BATCH_SIZE // du.get_world_size()}; lower TRAIN.BATCH_SIZE or check DATA.PATH_TO_DATA_DIR"
        )

    env.set_seed(cfg.RNG_SEED)  # same initial weights on every process
    model = build_model(cfg)
    device = model_device(cfg)
    if cfg.LOG_MODEL_INFO and du.is_master_proc():
        log_model_info(model, cfg)
    model = maybe_convert_sync_bn(cfg, model)
    use_fp16 = cfg.TRAIN.MIXED_PRECISION and amp_dtype(cfg) == torch.float16
    run = Run(model=model, train_model=None, optimizer=optim.construct_optimizer(cfg, model),
              scaler=torch.amp.GradScaler(device.type, enabled=use_fp16), use_fp16=use_fp16,
              ema=ModelEMA(model, cfg.TRAIN.EMA.DECAY) if cfg.TRAIN.EMA.ENABLE else None,
              loss_fun=build_loss(cfg), device=device, train_loader=train_loader, val_loader=val_loader,
              epoch_iters=epoch_iters, dataset_sizes=sizes, ema_eval=bool(cfg.TRAIN.EMA.EVAL),
              mixup=build_mixup(cfg), multigrid_schedule=multigrid_schedule)
    load_weights(cfg, run)
    # Measured layout / conv routes, cuDNN autotuning, torch.compile (MODEL.*); the optimizer, EMA and
    # checkpoints keep the bare model.
    run.train_model = runtime.prepare_for_training(model, cfg, wrap=lambda m: wrap_ddp(cfg, m))
    return run


def load_weights(cfg, run):
    """Loads the run's own newest verified checkpoint (TRAIN.AUTO_RESUME; it must fit the model exactly)
    or else TRAIN.CHECKPOINT_FILE_PATH (fine-tuning: another classifier is re-initialised); returns None."""
    scaler = run.scaler if run.use_fp16 else None
    path, ckpt = None, None
    if cfg.TRAIN.AUTO_RESUME:
        if du.is_master_proc():
            for tmp in cu.remove_orphan_temp_files(cfg.OUTPUT_DIR) + run_dir.remove_orphan_temp_files(cfg.OUTPUT_DIR):
                logger.info("Removed %s, left by an interrupted write", tmp)
        du.synchronize()
        path, ckpt = cu.find_resume_checkpoint(cfg.OUTPUT_DIR)
        if path is None and cu.list_checkpoints(cfg.OUTPUT_DIR):
            raise ValueError(f"none of the checkpoints in {cu.get_checkpoint_dir(cfg.OUTPUT_DIR)} is readable "
                             "(see the warnings above); move them away to start afresh")
    if path:
        logger.info("Resuming from %s", path)
        try:
            epoch = cu.load_checkpoint(path, run.model, optimizer=run.optimizer, scaler=scaler, exact=True, ckpt=ckpt)
        except ValueError as e:
            msg = str(e)
            raise ValueError(msg if msg.startswith("cannot resume") else f"cannot resume: {msg}") from None
        iters_done = int(ckpt.get("iter_in_epoch", 0))
        run.epoch_iters = multigrid.iterations_per_epoch(run.train_loader, epoch + 1)  # multigrid: per phase
        if iters_done and ckpt.get("epoch_iters") not in (None, run.epoch_iters):
            raise ValueError(f"cannot resume from {path}: it stopped mid-epoch with {ckpt['epoch_iters']} "
                             f"iterations per epoch, this run has {run.epoch_iters} (dataset, batch size or "
                             "number of processes changed)")
        run.start_epoch, run.start_iter = epoch + 1, iters_done
        run.resumed_from, run.resume_state = path, ckpt
        if run.ema is not None:
            if "ema_state" in ckpt:
                run.ema.load_state_dict(ckpt["ema_state"])
            else:
                run.ema = ModelEMA(run.model, cfg.TRAIN.EMA.DECAY)
        if ckpt.get("best_top1_err") is not None:
            run.best = {"top1_err": float(ckpt["best_top1_err"]), "epoch": int(ckpt["best_epoch"])}
        run.bad_total = dict(ckpt.get("bad_samples_per_epoch") or {})
    elif cfg.TRAIN.CHECKPOINT_FILE_PATH:
        logger.info("Loading initial weights from %s", cfg.TRAIN.CHECKPOINT_FILE_PATH)
        epoch = cu.load_checkpoint(
            cfg.TRAIN.CHECKPOINT_FILE_PATH,
            run.model,
            optimizer=run.optimizer,
            scaler=scaler,
            epoch_reset=cfg.TRAIN.CHECKPOINT_EPOCH_RESET,
            clear_name_pattern=tuple(cfg.TRAIN.CHECKPOINT_CLEAR_NAME_PATTERN),
        )
        run.start_epoch = epoch + 1
        if run.ema is not None:
            run.ema = ModelEMA(run.model, cfg.TRAIN.EMA.DECAY)
    run.last_ckpt = run.resumed_from or (cfg.TRAIN.CHECKPOINT_FILE_PATH or None)


def resume(cfg, run):
    """Prepares the run directory for the first epoch to run: the manifest, metrics.jsonl cut back to the
    resume point, and every process's RNG state as the checkpoint left it; returns None."""
    run_dir.write_run_manifest(cfg, run.dataset_sizes, run.resumed_from)
    if run.resumed_from:
        dropped = run_dir.drop_metrics_after(cfg.OUTPUT_DIR, run.start_epoch + run.start_iter / run.epoch_iters)
        if dropped:
            logger.info("Dropped %d metrics.jsonl rows written after %s (they are written again)", dropped,
                        os.path.basename(run.resumed_from))
    logger.info(
        "Training %s on %s: %s train videos, %d iterations per epoch, %d process(es), batch %d per process "
        "(effective %d), base LR %g, epochs %d..%d%s",
        cfg.MODEL.MODEL_NAME, cfg.TRAIN.DATASET, run.dataset_sizes["train"], run.epoch_iters, du.get_world_size(),
        cfg.TRAIN.BATCH_SIZE // du.get_world_size(), cfg.TRAIN.BATCH_SIZE * cfg.TRAIN.GRAD_ACCUM_STEPS,
        cfg.SOLVER.BASE_LR, run.start_epoch + 1, cfg.SOLVER.MAX_EPOCH,
        f" (epoch {run.start_epoch + 1} from iteration {run.start_iter + 1})" if run.start_iter else "",
    )
    run.writer = run_dir.make_tb_writer(cfg)
    run.meter = TrainMeter(run.epoch_iters, cfg, run.device)
    run.meter.tb_writer = run.writer
    # Last: nothing may draw random numbers between this and the first iteration.
    if run.resumed_from:
        restore_rng_states(run.resume_state.get("rng_state"), cfg, run.start_epoch - 1)
    else:
        env.set_seed(cfg.RNG_SEED + du.get_rank())
    run.resume_state = {}


# ----------------------------------------------------------------------------------------------- #
# Epoch-end steps, in order
# ----------------------------------------------------------------------------------------------- #


def checkpoint_extra_state(run, train_loader):
    """Returns the keys a vov3d checkpoint adds to PySlowFast's (a collective: every process calls it)."""
    extra = {"rng_state": gather_rng_states(), "best_top1_err": run.best["top1_err"], "best_epoch": run.best["epoch"],
             "bad_samples_per_epoch": dict(run.bad_total), "epoch_iters": run.epoch_iters,
             # So tools (demo_net) can name predictions without the dataset at hand.
             "class_names": list(getattr(train_loader.dataset, "class_names", None) or [])}
    if run.ema is not None:
        extra["ema_state"] = run.ema.state_dict()
    return extra


def save_run_checkpoint(cfg, run, cur_epoch, iters_done=0):
    """Saves the checkpoint after epoch `cur_epoch` (0-based), or `iters_done` iterations into it (a stop
    mid-epoch), and removes the mid-epoch checkpoints it supersedes; returns its path (master) or None."""
    extra = checkpoint_extra_state(run, run.train_loader)
    if iters_done:
        extra["iter_in_epoch"] = iters_done
        path = cu.get_path_to_mid_epoch_checkpoint(cfg.OUTPUT_DIR, cur_epoch, iters_done)
        epoch = cur_epoch - 1  # the last whole epoch, as PySlowFast counts
    else:
        path, epoch = cu.get_path_to_checkpoint(cfg.OUTPUT_DIR, cur_epoch + 1), cur_epoch
    p = cu.save_checkpoint(cfg.OUTPUT_DIR, run.model, run.optimizer, epoch, cfg,
                           scaler=run.scaler if run.use_fp16 else None, extra_state=extra, path=path)
    if p:
        logger.info("Saved checkpoint %s", p)
        cu.remove_superseded_mid_epoch_checkpoints(cfg.OUTPUT_DIR, p)
    run.last_ckpt = path
    return p


def step_precise_bn(cfg, run, cur_epoch):
    """Recomputes BN statistics before every evaluation and every checkpoint, as PySlowFast (the tested
    weights); returns None."""
    schedule = run.multigrid_schedule
    run.eval_now = is_eval_epoch(cfg, cur_epoch, schedule) and run.val_loader is not None
    run.ckpt_now = cu.is_checkpoint_epoch(cfg, cur_epoch) or (
        schedule is not None and multigrid.is_multigrid_eval_epoch(schedule, cur_epoch, cfg.MULTIGRID.EVAL_FREQ))
    if (run.eval_now or run.ckpt_now) and cfg.BN.USE_PRECISE_STATS and cfg.BN.NUM_BATCHES_PRECISE > 0:
        # Multigrid: the statistics of the current long-cycle shape, without short cycles (PySlowFast).
        with multigrid.without_short_cycles(run.train_loader):
            calculate_and_update_precise_bn(run.train_loader, run.eval_model, cfg.BN.NUM_BATCHES_PRECISE, cfg,
                                            run.device)


def step_validate(cfg, run, cur_epoch):
    """Runs single-view validation every EVAL_PERIOD epochs (RNG preserved), tracking the best top-1 error;
    returns None."""
    run.improved = False
    if not run.eval_now:
        return
    with env.rng_preserved():
        run.val_stats = evaluate.eval_epoch(run.val_loader, run.eval_model, cur_epoch, cfg, run.device, run.writer)
    if run.best["top1_err"] is None or run.val_stats["top1_err"] < run.best["top1_err"]:
        run.best = {"top1_err": run.val_stats["top1_err"], "epoch": cur_epoch + 1}
        run.improved = True
    run.val_stats["min_top1_err"] = run.best["top1_err"]
    vlog.log_json_stats(run.val_stats, cfg.OUTPUT_DIR)


def step_checkpoint(cfg, run, cur_epoch):
    """Saves the epoch checkpoint every CHECKPOINT_PERIOD epochs and after the last; returns None."""
    run.saved_this_epoch = False
    if run.ckpt_now:
        save_run_checkpoint(cfg, run, cur_epoch)
        run.saved_this_epoch = True


def step_best_checkpoint(cfg, run, cur_epoch):
    """Saves checkpoint_best.pyth when validation improved (TRAIN.BEST_CHECKPOINT); returns None."""
    if run.improved and cfg.TRAIN.BEST_CHECKPOINT:
        p = cu.save_checkpoint(cfg.OUTPUT_DIR, run.model, run.optimizer, cur_epoch, cfg,
                               scaler=run.scaler if run.use_fp16 else None,
                               extra_state=checkpoint_extra_state(run, run.train_loader),
                               path=os.path.join(cu.get_checkpoint_dir(cfg.OUTPUT_DIR), BEST_CHECKPOINT_NAME))
        if p:
            logger.info("New best validation top-1 error %.2f%% (epoch %d): %s", run.best["top1_err"],
                        cur_epoch + 1, p)
    du.synchronize()


def step_manifest(cfg, run, cur_epoch):
    """Records the epoch's bad samples and the best validation result in manifest.json; returns None."""
    run_dir.update_manifest(cfg, {"bad_samples_per_epoch": run.bad_total, "last_epoch": cur_epoch + 1,
                                  "best_val_top1_err": run.best["top1_err"], "best_val_epoch": run.best["epoch"]})


EPOCH_END_STEPS = (step_precise_bn, step_validate, step_checkpoint, step_best_checkpoint, step_manifest)


# ----------------------------------------------------------------------------------------------- #
# run_epochs, train
# ----------------------------------------------------------------------------------------------- #


def run_epochs(cfg, run, steps=EPOCH_END_STEPS):
    """Trains from (run.start_epoch, run.start_iter) to SOLVER.MAX_EPOCH, running `steps` after each epoch;
    returns None. On a stop signal: saves a checkpoint of the iteration reached and raises Preempted."""
    from vov3d.datasets import loader as data_loader

    du.set_collective_timeout(cfg.DIST_TIMEOUT_MINUTES)  # start-up is over: a silent peer is now a fault
    with signals.deferred_stop():
        for cur_epoch in range(run.start_epoch, cfg.SOLVER.MAX_EPOCH):
            start_iter = run.start_iter if cur_epoch == run.start_epoch else 0
            data_loader.shuffle_dataset(run.train_loader, cur_epoch, skip_batches=start_iter)
            # Multigrid long cycles change the number of iterations from phase to phase.
            run.epoch_iters = run.meter.epoch_iters = multigrid.iterations_per_epoch(run.train_loader, cur_epoch)
            try:
                run.train_stats = train_epoch(run.train_loader, run.train_model, run.optimizer, run.scaler,
                                              run.loss_fun, cur_epoch, cfg, run.meter, run.device, ema=run.ema,
                                              last_checkpoint=run.last_ckpt, start_iter=start_iter,
                                              epoch_iters=run.epoch_iters, check_stop=True, mixup=run.mixup)
            except StopAtIteration as stop:
                save_run_checkpoint(cfg, run, cur_epoch, stop.iters_done)
                du.synchronize()
                _stop(cfg, f"epoch {cur_epoch + 1}, iteration {stop.iters_done}")
            key = str(cur_epoch + 1)
            run.bad_total[key] = run.bad_total.get(key, 0) + run.train_stats["bad_samples"]
            for step in steps:
                step(cfg, run, cur_epoch)
            if signals.stop_requested():
                if not run.saved_this_epoch:
                    save_run_checkpoint(cfg, run, cur_epoch)
                    du.synchronize()
                _stop(cfg, f"the end of epoch {cur_epoch + 1}")


def _stop(cfg, where):
    logger.warning("Stopped at %s on %s; the same command resumes from there.", where,
                   signals.requested_signal() or "another process's stop signal")
    raise signals.Preempted()


def finish(cfg, run):
    """Draws the training curves, closes the TensorBoard writer and logs the best result; returns None."""
    if du.is_master_proc():
        from vov3d.utils import plots

        try:
            p = plots.plot_training_curves(vlog.read_json_stats(cfg.OUTPUT_DIR),
                                           os.path.join(cfg.OUTPUT_DIR, "training_curves.png"))
            if p:
                logger.info("Training curves: %s", p)
        except Exception as e:  # a plot must never fail a finished run
            logger.warning("Could not draw the training curves: %s", e)
    if run.writer is not None:
        run.writer.close()
    if run.best["top1_err"] is not None:
        logger.info("Best validation top-1 error %.2f%% at epoch %d", run.best["top1_err"], run.best["epoch"])
    du.synchronize()


def train(cfg):
    """Trains the configured model (resuming when TRAIN.AUTO_RESUME finds a checkpoint); returns a dict
    with the last epoch's train / val stats and the best validation top-1 error."""
    cfg, schedule = multigrid.prepare_config(cfg)  # multigrid: SOLVER.STEPS / LRS / MAX_EPOCH of its schedule
    run = setup(cfg, schedule)
    resume(cfg, run)
    start_epoch = run.start_epoch
    run_epochs(cfg, run)
    finish(cfg, run)
    return {"train": run.train_stats, "val": run.val_stats, "best_top1_err": run.best["top1_err"],
            "best_epoch": run.best["epoch"], "start_epoch": start_epoch}
