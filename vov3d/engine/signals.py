"""Stop requests from the scheduler or the user: SIGTERM, SIGUSR1 (SLURM's pre-timeout signal) and SIGINT.

While the training loop runs (:func:`deferred_stop`), a signal only sets a flag: the loop finishes the
current optimizer step, writes a resumable checkpoint of exactly that iteration and raises
:class:`Preempted`. Outside the loop (setup, the final test) nothing is lost by stopping at once, so the
handler raises Preempted immediately. A second SIGINT always stops at once (an impatient Ctrl-C).
"""

import contextlib
import logging
import os
import signal
import subprocess

import torch

from vov3d.utils import distributed as du

logger = logging.getLogger(__name__)

EXIT_PREEMPTED = 4
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)

_state = {"requested": None, "deferred": False}


class Preempted(SystemExit):
    """Raised in the main thread when SLURM / the scheduler / the user asks the job to stop."""

    def __init__(self, code=EXIT_PREEMPTED):
        super().__init__(code)


def _requeue_slurm(name):
    job = os.environ.get("SLURM_JOB_ID")
    if not job or du.get_rank() != 0:
        return False
    try:
        subprocess.run(["scontrol", "requeue", job], check=False, timeout=30)
        logger.warning("Received %s: requeued SLURM job %s.", name, job)
        return True
    except (OSError, subprocess.SubprocessError) as e:
        logger.warning("Received %s: could not requeue SLURM job %s: %s", name, job, e)
        return False


def _on_signal(signum, frame):
    name = signal.Signals(signum).name
    if _state["requested"] is not None and signum == signal.SIGINT:
        raise Preempted()  # second Ctrl-C: stop now
    first = _state["requested"] is None
    _state["requested"] = name
    if first and signum == signal.SIGUSR1:
        _requeue_slurm(name)
    if _state["deferred"]:
        if first:
            logger.warning("Received %s: finishing this iteration, then saving a checkpoint of it and stopping.",
                           name)
        return
    logger.warning("Received %s: stopping; restart the same command to resume from the last checkpoint.", name)
    raise Preempted()


def install_stop_handlers():
    """Routes SIGTERM, SIGUSR1 and SIGINT to the stop logic above; returns None.

    Not installed under submitit, which handles preemption itself (tools/submit.py), nor with
    VOV3D_NO_SIGNAL_HANDLERS set."""
    if os.environ.get("SUBMITIT_EXECUTOR") or os.environ.get("VOV3D_NO_SIGNAL_HANDLERS"):
        return
    _state["requested"] = None
    try:
        for sig in STOP_SIGNALS:
            signal.signal(sig, _on_signal)
    except ValueError:  # not the main thread
        pass


@contextlib.contextmanager
def deferred_stop():
    """Within the block a stop signal only sets a flag (see :func:`stop_requested`); yields None. A signal
    received before the block is honoured at the block's first check."""
    previous = _state["deferred"]
    _state["deferred"] = True
    try:
        yield
    finally:
        _state["deferred"] = previous


def requested_signal():
    """Returns the name of the stop signal received by this process, or None."""
    return _state["requested"]


def stop_requested():
    """Returns True when any process of the job received a stop signal (a collective call with several
    processes: every rank must call it at the same point, so they all stop after the same iteration)."""
    local = _state["requested"] is not None
    if du.get_world_size() == 1:
        return local
    flag = torch.tensor([1.0 if local else 0.0])  # all_reduce moves it to the backend's device
    du.all_reduce([flag], average=False)
    return bool(flag.item() > 0)


def clear():
    """Forgets a received stop request (tests run several trainings in one process); returns None."""
    _state["requested"] = None
