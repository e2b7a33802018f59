"""The job engine's queue: every job with its status, queue position, worker and machine; cancel one."""

from core.errors import SparseLabError
from core.jobs import default_runner


def add_arguments(parser) -> None:
    parser.add_argument("action", choices=("list", "cancel"), nargs="?", default="list")
    parser.add_argument("job", nargs="?", help="the job id (cancel)")
    parser.add_argument("--name", help="only jobs of this name (e.g. tvm, whatif)")
    parser.add_argument("--limit", type=int, default=50)


def run(args) -> dict:
    runner = default_runner()
    if args.action == "cancel":
        if not args.job or runner.get_raw(args.job) is None:
            raise SparseLabError(f"No job '{args.job}' to cancel; `python -m core jobs list` shows them.")
        runner.cancel(args.job)
        return runner.get_raw(args.job).as_dict()
    jobs = runner.list(name=args.name, limit=args.limit)
    return {"count": len(jobs), "jobs": [job.as_dict() for job in jobs]}
