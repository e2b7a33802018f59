"""Bring a model: a zipped transformers folder, checked before anything of it is trusted.

What is taken: ``config.json`` of an architecture transformers knows, weights as safetensors
(a data-only format: loading it runs no code), and, optionally, tokenizer files. What is
refused, with a message naming the file and leaving nothing behind:

- pickle weights (``.bin``, ``.pt``, ``.pth``, ``.pkl``, ``.ckpt``...): loading them can run code;
- paths that leave the folder (``..``, absolute paths, links) and nested archives;
- zip bombs: more than ``MAX_ENTRIES`` files, a total unpacked size over the cap, or a file
  that unpacks to more than ``MAX_RATIO`` times its packed size; sizes are counted while
  unpacking, so a zip that lies about them is stopped at the cap too;
- a file over the upload cap (``SPARSELAB_MAX_UPLOAD_BYTES``), before it is read;
- a missing, unreadable or unknown ``config.json``, and weights that do not load into it.

``trust_remote_code`` is never on. The model joins the library (core/library/store.py).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from core.errors import SparseLabError
from core.library.store import LibraryModel, ModelLibrary, default_library
from core.settings import Settings

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".npy", ".npz", ".h5", ".msgpack")
ARCHIVE_SUFFIXES = (".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".rar", ".zst")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "vocab.json",
                   "merges.txt", "added_tokens.json", "spiece.model", "sentencepiece.bpe.model", "tokenizer.model")
OTHER_FILES = ("config.json", "generation_config.json", "model.safetensors.index.json", "README.md")
MAX_ENTRIES = 200
MAX_RATIO = 200  # safetensors of real weights pack to 1.1-1.3x; text files to 3-5x
CHUNK = 1 << 20


def _member_path(info: zipfile.ZipInfo) -> PurePosixPath:
    name = info.filename.replace("\\", "/")
    path = PurePosixPath(name)
    if name.startswith("/") or (len(name) > 1 and name[1] == ":") or ".." in path.parts:
        raise SparseLabError(f"The zip holds '{info.filename}', a path that leaves the model folder; "
                             "refused (zip entries must be plain relative paths).")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise SparseLabError(f"The zip holds '{info.filename}', a symbolic link; refused (links can point "
                             "outside the folder).")
    return path


def _check_members(archive: zipfile.ZipFile, cap: int) -> tuple[dict[str, zipfile.ZipInfo], PurePosixPath]:
    """The files to unpack, by their name inside the model folder, and the folder's prefix in the zip."""
    infos = [i for i in archive.infolist() if not i.is_dir()]
    if len(infos) > MAX_ENTRIES:
        raise SparseLabError(f"The zip holds {len(infos)} files; a model folder has a handful (at most "
                             f"{MAX_ENTRIES} are taken).")
    paths = {info.filename: _member_path(info) for info in infos}
    for info in infos:
        name = paths[info.filename].name.lower()
        if name.endswith(PICKLE_SUFFIXES):
            raise SparseLabError(f"'{info.filename}' holds pickle weights, which can run code when loaded; "
                                 "refused. Save the model with safetensors (save_pretrained(..., "
                                 "safe_serialization=True)) and upload the .safetensors files.")
        if name.endswith(ARCHIVE_SUFFIXES):
            raise SparseLabError(f"'{info.filename}' is an archive inside the archive; refused. Zip the model "
                                 "folder itself.")
    declared = sum(info.file_size for info in infos)
    if declared > cap:
        raise SparseLabError(f"The zip unpacks to {declared / 2**20:.0f} MB, over this server's cap of "
                             f"{cap / 2**20:.0f} MB.")
    configs = [p for p in paths.values() if p.name == "config.json"]
    if not configs:
        raise SparseLabError("The zip has no config.json: zip a transformers model folder (config.json, "
                             "*.safetensors, optionally tokenizer files).")
    prefix = min(configs, key=lambda p: len(p.parts)).parent
    wanted = {}
    for info in infos:
        path = paths[info.filename]
        if path.parent != prefix:
            continue  # not in the model folder itself (a __MACOSX copy, a subfolder)
        name = path.name
        if name.endswith(".safetensors") or name in TOKENIZER_FILES or name in OTHER_FILES:
            wanted[name] = info
    if not any(name.endswith(".safetensors") for name in wanted):
        raise SparseLabError("The zip has no .safetensors weights next to its config.json; only safetensors "
                             "weights are taken.")
    return wanted, prefix


def _unpack(archive: zipfile.ZipFile, wanted: dict[str, zipfile.ZipInfo], folder: Path, cap: int) -> None:
    total = 0
    for name, info in wanted.items():
        written = 0
        with archive.open(info) as source, open(folder / name, "wb") as target:
            while chunk := source.read(CHUNK):
                written += len(chunk)
                total += len(chunk)
                if total > cap or written > max(info.file_size, 1) * 1.01 + CHUNK:
                    raise SparseLabError(f"'{info.filename}' unpacks to more than the zip declares or than the "
                                         f"cap of {cap / 2**20:.0f} MB allows: a zip bomb; refused.")
                if written > MAX_RATIO * max(info.compress_size, 1) + CHUNK:
                    raise SparseLabError(f"'{info.filename}' unpacks to over {MAX_RATIO}x its packed size: a zip "
                                         "bomb; refused.")
                target.write(chunk)


def _folder_digest(folder: Path) -> str:
    sha = hashlib.sha256()
    for path in sorted(folder.iterdir()):
        sha.update(path.name.encode())
        with open(path, "rb") as handle:
            while chunk := handle.read(CHUNK):
                sha.update(chunk)
    return sha.hexdigest()[:24]


def _check_config(folder: Path) -> dict:
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SparseLabError(f"config.json is not valid JSON: {exc}.") from None
    if not isinstance(config, dict):
        raise SparseLabError("config.json must hold a JSON object.")
    from transformers import CONFIG_MAPPING

    model_type = config.get("model_type")
    if not model_type or model_type not in CONFIG_MAPPING:
        raise SparseLabError(f"config.json names model_type '{model_type}', which transformers "
                             f"{_transformers_version()} does not know; known types include bert, distilbert, "
                             "roberta, gpt2, opt, llama.")
    if config.get("auto_map"):
        raise SparseLabError("config.json asks for custom code (auto_map); SparseLab never runs a model's own "
                             "code (trust_remote_code stays off).")
    return config


def _transformers_version() -> str:
    import transformers

    return transformers.__version__


def _check_loads(folder: Path) -> int:
    """Load the uploaded model as every page will; returns its parameter count."""
    from core.model_source import ModelSource

    source = ModelSource(name=str(folder), kind="local", location=str(folder))
    model = source.load_model()
    return sum(p.numel() for p in model.parameters())


def add_upload(data: bytes, filename: str, library: ModelLibrary | None = None,
               settings: Settings | None = None) -> LibraryModel:
    """Validate a zipped model folder and add it to the library; any refusal leaves nothing behind."""
    settings = settings or Settings.from_env()
    library = library or default_library()
    settings.check_upload(len(data), f"'{filename}'")
    staging = Path(tempfile.mkdtemp(prefix="sparselab-upload-"))
    try:
        zip_path = staging / "upload.zip"
        zip_path.write_bytes(data)
        try:
            archive = zipfile.ZipFile(zip_path)
        except (zipfile.BadZipFile, OSError) as exc:
            raise SparseLabError(f"'{filename}' is not a zip file ({exc}); zip the model folder.") from None
        with archive:
            wanted, _ = _check_members(archive, settings.max_upload_bytes)
            folder = staging / "model"
            folder.mkdir()
            try:
                _unpack(archive, wanted, folder, settings.max_upload_bytes)
            except (zipfile.BadZipFile, OSError, EOFError, RuntimeError) as exc:  # damaged data, CRC errors
                raise SparseLabError(f"'{filename}' is damaged: {exc}.") from None
        config = _check_config(folder)
        digest = _folder_digest(folder)  # the files, not the zip: zipping again changes timestamps only
        if existing := library.by_origin(f"upload:{digest}"):
            return existing
        try:
            parameters = _check_loads(folder)
        except SparseLabError:
            raise
        except Exception as exc:  # weights that do not fit the config, or a safetensors file that is not one
            raise SparseLabError(f"The weights do not load into the {config['model_type']} model config.json "
                                 f"describes: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}") from None
        base = Path(filename).stem or config["model_type"]
        return library.add(folder, kind="uploaded", base_name=base, origin=f"upload:{digest}",
                           details={"model_type": config["model_type"], "parameters": parameters,
                                    "files": sorted(wanted), "uploaded_as": filename,
                                    "tokenizer": any(name in TOKENIZER_FILES for name in wanted)})
    finally:
        shutil.rmtree(staging, ignore_errors=True)
