"""List or export the measurements in the run store."""

from core import run_store
from core.run_store import default_store, flat_row


def add_arguments(parser) -> None:
    parser.add_argument("action", choices=("list", "export"), nargs="?", default="list")
    parser.add_argument("--kind", help="only runs of this kind (e.g. prune, store, tvm, tflite)")
    parser.add_argument("--model", help="only runs of this model")
    parser.add_argument("--machine", help="only runs measured on this machine (host name)")
    parser.add_argument("--limit", type=int, default=50, help="at most this many runs (list only)")
    parser.add_argument("--format", choices=("csv", "json"), default="csv", help="export format")
    parser.add_argument("--out", help="export to this file instead of stdout")


def run(args) -> dict:
    store = default_store()
    limit = args.limit if args.action == "list" else None
    records = store.query(kind=args.kind, model=args.model, machine=args.machine, limit=limit)
    if args.action == "list":
        return {"count": store.count(), "runs": [flat_row(r) for r in records]}
    text = run_store.to_csv(records) if args.format == "csv" else run_store.to_json(records)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as handle:
            handle.write(text)
        return {"exported": len(records), "path": args.out, "format": args.format}
    return {"exported": len(records), "format": args.format, "content": text}
