"""Submit a train-then-test run to SLURM with submitit (pip install submitit).

    vov3d-submit --cfg configs/SSv1/VoV3D_L_32x1.yaml --nodes 2 --gpus 8 --partition learn \
        --timeout 4320 [KEY VALUE ...]

One SLURM task per GPU (NUM_GPUS = --gpus, NUM_SHARDS = --nodes). On timeout or preemption the job is
requeued and resumes from its newest checkpoint (TRAIN.AUTO_RESUME). Logs: OUTPUT_DIR/stdout.log and
OUTPUT_DIR/submitit/.

From a source checkout, `python tools/submit.py` is the same program.
"""

import os
import sys


def build_parser():
    """Returns the parser: run_net.py's flags plus the SLURM resources."""
    from vov3d.utils.parser import build_parser as run_parser

    parser = run_parser("Submit vov3d training + testing to SLURM with submitit.")
    g = parser.add_argument_group("SLURM")
    g.add_argument("--nodes", type=int, default=1, help="machines (NUM_SHARDS)")
    g.add_argument("--gpus", type=int, default=8, help="GPUs per machine (NUM_GPUS; 0: one CPU task per machine)")
    g.add_argument("--cpus_per_task", type=int, default=10, help="CPU cores per process (data-loader workers)")
    g.add_argument("--mem_gb", type=int, default=0, help="memory per machine in GB (0: the partition default)")
    g.add_argument("--timeout", type=int, default=72 * 60, help="minutes per job (it is requeued after)")
    g.add_argument("--partition", default="", help="SLURM partition")
    g.add_argument("--account", default="", help="SLURM account")
    g.add_argument("--constraint", default="", help="SLURM constraint, e.g. volta32gb")
    g.add_argument("--job_name", default="vov3d", help="SLURM job name")
    g.add_argument("--dry_run", action="store_true", help="print the job parameters and exit")
    return parser


class Trainer:
    """The submitted callable: one instance runs in every SLURM task; requeues itself on preemption."""

    def __init__(self, args):
        self.args = args

    def __call__(self):
        import submitit

        from vov3d.engine.launch import launch_job, train_then_test
        from vov3d.utils.parser import config_from_args

        job = submitit.JobEnvironment()
        os.environ.update({
            "RANK": str(job.global_rank),
            "WORLD_SIZE": str(job.num_tasks),
            "LOCAL_RANK": str(job.local_rank),
            "LOCAL_WORLD_SIZE": str(job.num_tasks // max(job.num_nodes, 1)),
            "NODE_RANK": str(job.node),
            "MASTER_ADDR": job.hostnames[0],
            "MASTER_PORT": os.environ.get("MASTER_PORT", str(15000 + int(job.job_id.split("_")[0]) % 20000)),
            "VOV3D_NO_SIGNAL_HANDLERS": "1",  # submitit handles preemption (checkpoint() below)
        })
        cfg = config_from_args(self.args)
        code = launch_job(cfg, "env://", train_then_test)
        if code:
            raise SystemExit(code)

    def checkpoint(self):
        """Called by submitit on timeout / preemption: resubmit; AUTO_RESUME picks up the last checkpoint."""
        import submitit

        return submitit.helpers.DelayedSubmission(type(self)(self.args))


def main(argv=None):
    """Returns the exit code after submitting (or printing, with --dry_run) the job."""
    args = build_parser().parse_args(argv)
    args.opts = list(args.opts or []) + ["NUM_GPUS", str(args.gpus), "NUM_SHARDS", str(args.nodes)]
    from vov3d.engine.launch import EXIT_USER_ERROR, USER_ERRORS, error_line
    from vov3d.utils.parser import config_from_args

    try:
        cfg = config_from_args(args, check_devices=False)  # fail here, not in the queue
    except USER_ERRORS as e:
        print(error_line(e), file=sys.stderr)
        return EXIT_USER_ERROR
    tasks = max(args.gpus, 1)
    params = {
        "nodes": args.nodes,
        "tasks_per_node": tasks,
        "cpus_per_task": args.cpus_per_task,
        "timeout_min": args.timeout,
        "name": args.job_name,
        "slurm_signal_delay_s": 120,
    }
    if args.gpus > 0:
        params["gpus_per_node"] = args.gpus
    if args.mem_gb:
        params["mem_gb"] = args.mem_gb
    if args.partition:
        params["slurm_partition"] = args.partition
    extra = {k: v for k, v in (("account", args.account), ("constraint", args.constraint)) if v}
    if extra:
        params["slurm_additional_parameters"] = extra
    folder = os.path.join(cfg.OUTPUT_DIR, "submitit")
    if args.dry_run:
        print(f"submitit folder: {folder}")
        for k, v in sorted(params.items()):
            print(f"{k}: {v}")
        return 0
    try:
        import submitit
    except ImportError:
        print("vov3d: error: vov3d-submit needs submitit: pip install submitit", file=sys.stderr)
        return EXIT_USER_ERROR
    executor = submitit.AutoExecutor(folder=folder, slurm_max_num_timeout=30)
    executor.update_parameters(**params)
    job = executor.submit(Trainer(args))
    print(f"Submitted job {job.job_id}; logs in {folder} and {os.path.join(cfg.OUTPUT_DIR, 'stdout.log')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
