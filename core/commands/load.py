"""Reload a saved .h5 model file into a working quantized model and verify it bit-exact."""

from pathlib import Path

from core.model_source import resolve
from core.storage.store import load_file, verify_file


def add_arguments(parser) -> None:
    parser.add_argument("file", help="a .h5 file written by `store` (or by the Saving-PruneBERT notebook's layout)")
    parser.add_argument("--model", required=True, help="the model source the file was made from")
    parser.add_argument("--verify", action="store_true",
                        help="compare outputs with the source quantized the same way, on 20 random inputs")


def run(args) -> dict:
    source = resolve(args.model)
    if args.verify:
        return verify_file(Path(args.file), source)
    model, config, load_s = load_file(Path(args.file), source)
    return {"format": config.format, "settings": config.__dict__, "load_s": load_s,
            "parameters": sum(p.numel() for p in model.parameters())}
