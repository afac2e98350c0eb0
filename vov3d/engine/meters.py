"""Meters: training statistics accumulated on the device (no per-iteration host sync), timers,
and the json_stats / console lines PySlowFast users know."""

import datetime
import logging
import time

import torch

from vov3d.utils import distributed as du
from vov3d.utils import logging as vlog
from vov3d.utils import metrics

logger = logging.getLogger(__name__)


def gpu_mem_usage():
    """Returns the peak GPU memory of this process in GB (0 on CPU)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return torch.cuda.max_memory_allocated() / 1024**3
    return 0.0


def _eta(seconds):
    return str(datetime.timedelta(seconds=int(max(seconds, 0))))


class LossExplosionError(RuntimeError):
    """Raised when the training loss is NaN or infinite."""


class TrainMeter:
    """Accumulates loss and top-1/top-5 correct counts on the device; reduces over processes and
    logs every LOG_PERIOD iterations and at the end of the epoch."""

    def __init__(self, epoch_iters, cfg, device):
        self.cfg = cfg
        self.epoch_iters = epoch_iters
        self.max_iter = cfg.SOLVER.MAX_EPOCH * epoch_iters
        self.device = device
        self.tb_writer = None
        self.reset()

    def reset(self):
        """Clears the epoch and window accumulators."""
        # window: loss_sum, top1_correct, top5_correct, samples
        self.win = torch.zeros(4, dtype=torch.float64, device=self.device)
        self.tot = torch.zeros(4, dtype=torch.float64, device=self.device)
        self.first_bad_iter = torch.full((), -1, dtype=torch.long, device=self.device)
        self.bad_loss = torch.zeros((), dtype=torch.float64, device=self.device)
        self.win_data_time = self.win_net_time = 0.0
        self.tot_data_time = self.tot_net_time = 0.0
        self.win_iters = 0
        self.win_n = self.tot_n = 0  # samples (host-side counts)
        self.lr = None
        self.bad_samples = 0
        self.bad_examples = []
        self._tic = time.perf_counter()
        self._data_done = self._tic
        self.epoch_start = self._tic

    def iter_tic(self):
        """Marks the start of waiting for the next batch."""
        self._tic = time.perf_counter()

    def data_toc(self):
        """Marks the batch as loaded (and moved to the device)."""
        self._data_done = time.perf_counter()

    def update(self, preds, labels, loss, lr, cur_iter):
        """Accumulates one iteration (tensors stay on the device)."""
        now = time.perf_counter()
        data_t = self._data_done - self._tic
        net_t = now - self._data_done
        self.win_data_time += data_t
        self.win_net_time += net_t
        self.tot_data_time += data_t
        self.tot_net_time += net_t
        self.win_iters += 1
        self.lr = lr
        loss = loss.detach().float()
        n = labels.size(0)
        finite = torch.isfinite(loss)
        self.first_bad_iter = torch.where(
            (~finite) & (self.first_bad_iter < 0), torch.full_like(self.first_bad_iter, cur_iter), self.first_bad_iter
        )
        self.bad_loss = torch.where(finite, self.bad_loss, loss.double())
        if preds.dim() == 2 and labels.dim() == 1:
            c1, c5 = metrics.topks_correct(preds.detach(), labels, (1, 5))
        else:  # soft / multi-label targets: no top-k
            c1 = c5 = torch.zeros((), device=self.device)
        # Only device ops here: no host<->device copy, so no per-iteration synchronisation on CUDA.
        step = torch.stack([loss.double() * n, c1.double(), c5.double()])
        self.win[:3] += step
        self.tot[:3] += step
        self.win_n += n
        self.tot_n += n

    def add_bad_samples(self, count, examples):
        """Counts samples the data pipeline substituted in this epoch (this process)."""
        self.bad_samples += count
        for e in examples:
            if len(self.bad_examples) < 5:
                self.bad_examples.append(e)

    def _reduce(self, vec, n):
        """Returns (summed [loss_sum, top1, top5, samples] over processes, first bad iteration, bad loss
        value) with one collective."""
        vec = vec.clone()
        vec[3] = float(n)
        packed = torch.cat([vec, self.first_bad_iter.double().view(1) + 1, self.bad_loss.view(1)])
        flag_idx = vec.numel()
        if du.get_world_size() > 1:
            # max-reduce the bad-iteration flag: encode via sum of (iter+1) is wrong across ranks, so gather.
            gathered = du.all_gather([packed.view(1, -1).cpu()])[0]
            total = gathered[:, :flag_idx].sum(0)
            bad_iters = [int(x) - 1 for x in gathered[:, flag_idx].tolist() if x > 0]
            bad_vals = [float(x) for x, b in zip(gathered[:, flag_idx + 1].tolist(), gathered[:, flag_idx].tolist()) if b > 0]
        else:
            p = packed.cpu()
            total = p[:flag_idx]
            bad_iters = [int(p[flag_idx]) - 1] if p[flag_idx] > 0 else []
            bad_vals = [float(p[flag_idx + 1])] if bad_iters else []
        first_bad = min(bad_iters) if bad_iters else None
        return total, first_bad, (bad_vals[0] if bad_vals else None)

    def check_and_log(self, cur_epoch, cur_iter, last_checkpoint, force=False):
        """Every LOG_PERIOD iterations (or when `force`): stops on a non-finite loss and logs a line."""
        if not force and (cur_iter + 1) % self.cfg.LOG_PERIOD != 0:
            return
        total, first_bad, bad_val = self._reduce(self.win, self.win_n)
        if first_bad is not None:
            raise LossExplosionError(
                f"Loss is {bad_val} at epoch {cur_epoch + 1}, iteration {first_bad + 1}/{self.epoch_iters} "
                f"(global iteration {cur_epoch * self.epoch_iters + first_bad + 1}); training stopped. "
                f"Last good checkpoint: {last_checkpoint or 'none (no checkpoint was saved yet)'}. "
                "Lower SOLVER.BASE_LR or lengthen SOLVER.WARMUP_EPOCHS, or check the data."
            )
        loss_sum, c1, c5, n = total.tolist()
        n = max(n, 1.0)
        iters = max(self.win_iters, 1)
        dt_data = self.win_data_time / iters
        dt_net = self.win_net_time / iters
        dt = dt_data + dt_net
        done = cur_epoch * self.epoch_iters + cur_iter + 1
        stats = {
            "_type": "train_iter",
            "epoch": f"{cur_epoch + 1}/{self.cfg.SOLVER.MAX_EPOCH}",
            "iter": f"{cur_iter + 1}/{self.epoch_iters}",
            "epoch_float": cur_epoch + (cur_iter + 1) / self.epoch_iters,
            "dt": dt,
            "dt_data": dt_data,
            "dt_net": dt_net,
            "eta": _eta(dt * (self.max_iter - done)),
            "loss": loss_sum / n,
            "lr": self.lr,
            "top1_err": (1.0 - c1 / n) * 100.0,
            "top5_err": (1.0 - c5 / n) * 100.0,
            "mem": round(gpu_mem_usage(), 3),
        }
        vlog.log_json_stats(stats, self.cfg.OUTPUT_DIR)
        if self.tb_writer is not None:
            g = done
            self.tb_writer.add_scalar("Train/loss", stats["loss"], g)
            self.tb_writer.add_scalar("Train/lr", stats["lr"], g)
            self.tb_writer.add_scalar("Train/Top1_err", stats["top1_err"], g)
            self.tb_writer.add_scalar("Train/Top5_err", stats["top5_err"], g)
            self.tb_writer.add_scalar("Train/data_time_fraction", dt_data / max(dt, 1e-12), g)
        self.win.zero_()
        self.win_n = 0
        self.win_data_time = self.win_net_time = 0.0
        self.win_iters = 0

    def log_epoch(self, cur_epoch):
        """Logs the epoch summary (json_stats), the bad-sample summary and the data-time warning;
        returns the stats dict."""
        total, _, _ = self._reduce(self.tot, self.tot_n)
        loss_sum, c1, c5, n = total.tolist()
        n = max(n, 1.0)
        data_t, net_t, bad = du.all_reduce_scalars([self.tot_data_time, self.tot_net_time, self.bad_samples])
        world = du.get_world_size()
        data_t /= world
        net_t /= world
        iters = max(self.epoch_iters, 1)
        dt = (data_t + net_t) / iters
        done = (cur_epoch + 1) * self.epoch_iters
        stats = {
            "_type": "train_epoch",
            "epoch": f"{cur_epoch + 1}/{self.cfg.SOLVER.MAX_EPOCH}",
            "epoch_float": float(cur_epoch + 1),
            "dt": dt,
            "dt_data": data_t / iters,
            "dt_net": net_t / iters,
            "eta": _eta(dt * (self.max_iter - done)),
            "loss": loss_sum / n,
            "lr": self.lr,
            "top1_err": (1.0 - c1 / n) * 100.0,
            "top5_err": (1.0 - c5 / n) * 100.0,
            "mem": round(gpu_mem_usage(), 3),
            "bad_samples": int(bad),
            "samples": int(n),
        }
        vlog.log_json_stats(stats, self.cfg.OUTPUT_DIR)
        examples = [e for lst in du.all_gather_object(self.bad_examples) for e in lst][:5]
        if int(bad) > 0:
            logger.warning(
                "Epoch %d: %d training sample(s) could not be read and were substituted (all processes); "
                "examples: %s",
                cur_epoch + 1,
                int(bad),
                "; ".join(map(str, examples)),
            )
        else:
            logger.info("Epoch %d: no bad training samples.", cur_epoch + 1)
        frac = (data_t / max(data_t + net_t, 1e-12))
        if frac > self.cfg.TRAIN.DATA_TIME_WARN_FRACTION:
            logger.warning(
                "Data loading took %.0f%% of the step time in epoch %d (%.3fs of %.3fs per iteration): the "
                "loader is the bottleneck. Raise DATA_LOADER.NUM_WORKERS (now %d) if CPU cores allow, or "
                "use a faster decoding backend / pre-resized videos.",
                100 * frac,
                cur_epoch + 1,
                data_t / iters,
                dt,
                self.cfg.DATA_LOADER.NUM_WORKERS,
            )
        if self.tb_writer is not None:
            self.tb_writer.add_scalar("Train/epoch_loss", stats["loss"], cur_epoch + 1)
            self.tb_writer.add_scalar("Train/epoch_Top1_err", stats["top1_err"], cur_epoch + 1)
            self.tb_writer.add_scalar("Train/bad_samples", stats["bad_samples"], cur_epoch + 1)
        return stats
