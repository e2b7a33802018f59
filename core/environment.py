"""What machine and libraries a measurement was made with.

Every latency means something only next to the CPU, the thread count and the
library versions it was measured with, so these facts are recorded with every run
and go into every artifact's cache key.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import socket
from dataclasses import asdict, dataclass, field
from importlib import metadata

from core.settings import Settings

LIBRARIES = (
    "torch",
    "transformers",
    "apache-tvm",
    "apache-tvm-ffi",
    "tensorflow",
    "tf-keras",
    "tensorflow-model-optimization",
    "ai-edge-litert",
    "numpy",
    "scipy",
    "h5py",
    "streamlit",
    "plotly",
)
# What decides which kernels a peer or TVM can use. AMX matters most for the comparison: on an Intel CPU with
# amx_int8 / amx_bf16 (seen: Emerald Rapids, 2026-12-02) OpenVINO's int8 and bf16 run on AMX tiles, while
# SparseLab's int8 kernels use AVX-512 VNNI, so the same table can rank the engines differently than on AMD.
FLAGS_THAT_MATTER = ("avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16",
                     "amx_bf16", "amx_int8", "neon", "asimd")


def library_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def library_versions(names=LIBRARIES) -> dict[str, str | None]:
    return {name: library_version(name) for name in names}


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields from /proc/cpuinfo (empty off Linux)."""
    try:
        text = open("/proc/cpuinfo", encoding="utf-8").read()
    except OSError:
        return {}
    first = text.split("\n\n", 1)[0]
    fields = {}
    for line in first.splitlines():
        if ":" in line:
            key, value = line.split(":", 1)
            fields[key.strip()] = value.strip()
    return fields


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class CpuInfo:
    model: str
    vendor: str
    family: int | None
    cores: int
    flags: tuple[str, ...] = field(default_factory=tuple)

    def has(self, flag: str) -> bool:
        return flag in self.flags


@functools.cache
def cpu_info() -> CpuInfo:
    info = _cpuinfo()
    flags = set((info.get("flags") or info.get("Features") or "").split())
    family = info.get("cpu family")
    return CpuInfo(
        model=info.get("model name") or platform.processor() or platform.machine(),
        vendor=info.get("vendor_id", ""),
        family=int(family) if family and family.isdigit() else None,
        cores=usable_cores(),
        flags=tuple(sorted(f for f in FLAGS_THAT_MATTER if f in flags)),
    )




@functools.cache
def llvm_mcpu() -> str:
    """The LLVM CPU name of this host, so TVM emits AVX2/FMA (2.5x faster kernels than without).

    TVM detects it; the answer is kept per CPU and TVM version in a small file next to the
    artifact cache, because importing TVM (2-5 s) is most of a warm What-if estimate and every
    cache key needs the name."""
    identity = {**asdict(cpu_info()), "cores": None, "machine": platform.machine(),
                "tvm": library_version("apache-tvm")}
    key = hashlib.blake2b(json.dumps(identity, sort_keys=True).encode(), digest_size=8).hexdigest()
    path = Settings.from_env().cache_dir / "llvm_mcpu.json"
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    if isinstance(known, dict) and isinstance(known.get(key), str):
        return known[key]
    name = _detect_llvm_mcpu()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(json.dumps({**(known if isinstance(known, dict) else {}), key: name}))
        os.replace(partial, path)
    except OSError:  # a read-only home: detect again next time
        pass
    return name


def _detect_llvm_mcpu() -> str:
    try:
        from tvm.target import codegen

        name = codegen.llvm_get_system_cpu()
        if name and name != "generic":
            return name
    except Exception:  # TVM missing or built without the helper: use cpuinfo
        pass
    cpu = cpu_info()
    if cpu.vendor == "AuthenticAMD" and cpu.family == 25:  # Zen3, or Zen4 with AVX-512
        return "znver4" if cpu.has("avx512f") else "znver3"
    if cpu.has("avx512f"):
        return "skylake-avx512"
    if cpu.has("avx2"):
        return "haswell"
    return "x86-64" if platform.machine() == "x86_64" else "generic"


def environment_record() -> dict:
    """The facts stored with every measurement."""
    cpu = asdict(cpu_info())
    cpu["flags"] = list(cpu["flags"])  # JSON-native, so a record reads back equal
    return {
        "host": socket.gethostname(),
        "worker": os.environ.get("SPARSELAB_WORKER"),  # the Dask worker that ran the job, if a job did
        "cpu": cpu,
        "llvm_mcpu": llvm_mcpu(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "libraries": library_versions(),
    }
