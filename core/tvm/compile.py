"""Compile a (pruned) transformers model with TVM, cache the library, load it back.

Pipeline: torch.export -> Relax -> every Linear to a BSR or packed dense kernel
(``bsr_rewrite``) -> legalize + fuse (Relax's CPU passes) -> schedule the rest
(``schedules``) -> lower -> ``export_library``. The library embeds the weights,
so its cache key has everything that changes its bytes: the weights' content
and sparsity pattern, the block shape, the threshold, the input shape, the target
(CPU, threads) and the TVM version. A hit loads in about a second.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from core.artifact_cache import ArtifactCache, ArtifactSpec, default_cache
from core.errors import SparseLabError
from core.jobs import NO_PROGRESS, Progress
from core.model_source import linear_layers
from core.tvm.amx_bsr_kernel import enable_amx, use_amx
from core.tvm.bsr_kernel import padded_tokens
from core.tvm.bsr_rewrite import LayerReport, RewriteOptions, bf16_attention_calls, linear_names, rewrite_linears
from core.tvm.int8_dense_kernel import use_vnni
from core.tvm.relax_import import INPUT_NAMES, InputShape, import_model
from core.tvm.target import host_target, set_runtime_threads, target_description
from core.tvm.tuning import tuned_schedules

log = logging.getLogger(__name__)

LIBRARY_FILE = "model.so"
REPORT_FILE = "report.json"
ARTIFACT_KIND = "tvm-library"
BUILD_LIBRARIES = ("apache-tvm", "apache-tvm-ffi", "torch", "transformers")
# Bump when kernels or schedules change, so old libraries are not reused.
# 19: the dense fp32 kernel prefetches its next weight panel (TVMScript, two stack accumulators);
# 18: softmax and layer norm reduce their lanes as shuffle trees;
# 17: bias, GELU, residual in the dense kernel's store (epilogue.py); 16: masked-row chain folded into softmax;
# 15: batch matmul 8x32 tiles; 14: hand-written softmax + layer norm, faster quantisation, AMX; 13: dense kernels
# parallel panel-major; 12: power(x, 2|3|4) as multiplications
SCHEDULE_VERSION = 19
# Bump when the int8 kernels or quantisation change (int8 libraries only). 17: VNNI ``tokens`` BSR kernels (1x4,
# 4x4) in 64-token tiles split by tokens; 16: GELU in the int8 kernels' stores;
# 15: the report's bf16 count renamed
# (bf16_attention_calls); 14: softmax reductions as shuffle trees;
# 13: self-attention fused (AMX bf16);
# 12: attention's matmuls on AMX bf16;
# 11: quantisation transposes by shuffles;
# 10: dense AMX split by slices again; 9: AMX and VNNI ``rows`` BSR kernels split by tokens; 8: bias and residual
# in the AMX kernels' stores; 7: per-token asymmetric activations; 5: epilogue; 4: dense 8x32 tiles; 3: AMX
INT8_VERSION = 17



@dataclass(frozen=True)
class CompileOptions:
    shape: InputShape = InputShape()
    threads: int = 1
    rewrite: RewriteOptions = RewriteOptions()
    tune: bool = False  # measure each layer shape's BSR schedules (core.tvm.tuning) instead of defaults

    def key_parts(self) -> dict:
        block = self.rewrite.block
        return {"batch": self.shape.batch, "seq_len": self.shape.seq_len,
                "block": list(block) if block else None, "threshold": self.rewrite.threshold,
                "schedules": sorted(f"{k}={v.label}" for k, v in self.rewrite.schedules.items()),
                "target": target_description(self.threads), "schedule_version": SCHEDULE_VERSION,
                "epilogues": self.rewrite.epilogues,
                # fp32 keys stay as before this field existed, so cached fp32 libraries remain valid
                **({} if self.rewrite.precision == "fp32" else
                   {"precision": self.rewrite.precision, "int8_vnni": use_vnni(self.rewrite.vnni),
                    "int8_amx": use_amx(self.rewrite.amx_choice), "int8_version": INT8_VERSION,
                    "attention_bf16": self.rewrite.uses_attention_bf16})}


@dataclass(frozen=True)
class CompiledModel:
    """A compiled library in the artifact cache and what its build reported."""

    path: Path
    layers: tuple[LayerReport, ...]
    compile_s: float  # of the build that produced it (also reported on a cache hit)
    cache_hit: bool
    load_s: float  # wall time of this compile_model call: the whole build on a miss, hashing + lookup on a hit
    unscheduled: tuple[str, ...]
    shape: InputShape
    threads: int
    bf16_attention_calls: int = 0  # fused attention kernels and lone attention matmuls on AMX bf16 tiles (int8, AMX)

    @property
    def attention_precision(self) -> str:
        return "bf16" if self.bf16_attention_calls else "fp32"

    @property
    def library_bytes(self) -> int:
        return (self.path / LIBRARY_FILE).stat().st_size

    @property
    def converted_layers(self) -> int:
        return sum(layer.kernel == "bsr" for layer in self.layers)

    def runner(self) -> Runner:
        return Runner(self.path / LIBRARY_FILE, self.threads)


class Runner:
    """The loaded library on a Relax VM: ``run(inputs) -> numpy`` (first output)."""

    def __init__(self, library: Path, threads: int):
        import tvm
        from tvm import relax

        set_runtime_threads(threads)
        enable_amx()  # a library with AMX kernels needs the tile state; harmless (refused) elsewhere
        self.device = tvm.cpu()
        self.vm = relax.VirtualMachine(tvm.runtime.load_module(str(library)), self.device)
        self._main = self.vm["main"]

    def to_device(self, inputs: dict) -> list:
        import tvm

        return [tvm.runtime.tensor(np.ascontiguousarray(_numpy(inputs[name])), self.device) for name in INPUT_NAMES]

    def run_device(self, args: list):
        return self._main(*args)

    def run(self, inputs: dict) -> np.ndarray:
        out = self.run_device(self.to_device(inputs))
        return (out if hasattr(out, "numpy") else out[0]).numpy()  # the importer returns a tuple


def _numpy(value) -> np.ndarray:
    return value.numpy() if hasattr(value, "numpy") else np.asarray(value)


def weights_fingerprint(model) -> dict:
    """Content hash of every parameter and buffer, and hash of which Linear weights are zero."""

    content, pattern = hashlib.blake2b(digest_size=16), hashlib.blake2b(digest_size=16)
    content.update(type(model).__name__.encode())
    content.update(model.config.to_json_string().encode())
    for name, tensor in model.state_dict().items():
        array = tensor.detach().contiguous().numpy()
        content.update(name.encode())
        content.update(array.tobytes())
    for name, module in linear_layers(model).items():
        pattern.update(name.encode())
        pattern.update(np.packbits(module.weight.detach().numpy() != 0).tobytes())
    return {"weights": content.hexdigest(), "sparsity_pattern": pattern.hexdigest()}


def relax_to_library(mod, target, progress: Progress):
    """Legalize, fuse, schedule and build a rewritten Relax module; returns (executable, unscheduled)."""
    import tvm
    from tvm.relax.backend.cpu_generic import pipeline as cpu

    from core.tvm.fast_math import fast_math_pass
    from core.tvm.schedules import schedule_pass, unscheduled

    with target:
        progress(0.45, "legalizing and fusing")
        mod = tvm.transform.Sequential([fast_math_pass(), *cpu.library_dispatch_passes(target),
                                        *cpu.legalize_passes(target)])(mod)
        progress(0.55, "scheduling")
        mod = schedule_pass()(mod)
        left = unscheduled(mod)
        if left:
            log.warning("unscheduled TIR functions (naive loops): %s", ", ".join(left))
        lower = tvm.transform.Sequential(cpu.dataflow_lower_passes(target) + cpu.finalize_passes(target))
    progress(0.65, "generating code (LLVM)")
    return tvm.compile(mod, target, relax_pipeline=lower), left


def _build(model, options: CompileOptions, progress: Progress) -> Callable[[Path], None]:
    def build(directory: Path) -> None:
        start = time.perf_counter()
        progress(0.05, "exporting with torch.export")
        mod = import_model(model, options.shape)
        progress(0.3, "rewriting Linear layers")
        mod, layers = rewrite_linears(mod, options.rewrite, linear_names(model))
        bf16_calls = bf16_attention_calls(mod)
        try:
            executable, left = relax_to_library(mod, host_target(options.threads), progress)
            progress(0.9, "writing the library")
            executable.export_library(str(directory / LIBRARY_FILE))
        except SparseLabError:
            raise
        except Exception as exc:  # TVM raises its own error types from C++
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise SparseLabError(f"TVM failed to compile the model: {first}") from exc
        report = {"layers": [layer.as_dict() for layer in layers], "unscheduled": left,
                  "bf16_attention_calls": bf16_calls,
                  "compile_s": time.perf_counter() - start}
        (directory / REPORT_FILE).write_text(json.dumps(report, indent=1))

    return build


def compile_model(model, options: CompileOptions, *, name: str = "model", cache: ArtifactCache | None = None,
                  progress: Progress = NO_PROGRESS) -> CompiledModel:
    """Compile ``model`` (eval mode, pruned or not) for ``options``, or reuse the cached library."""
    start = time.perf_counter()
    if options.tune and options.rewrite.block and options.rewrite.precision == "fp32":  # fp32 BSR schedules
        progress(0.0, "measuring BSR schedules")
        schedules = tuned_schedules(model, block=options.rewrite.block, threshold=options.rewrite.threshold,
                                    tokens=padded_tokens(options.shape.batch * options.shape.seq_len),
                                    threads=options.threads,
                                    cache=cache)
        options = replace(options, tune=False, rewrite=replace(options.rewrite, schedules=schedules))
    progress(0.02, "hashing weights")
    spec = ArtifactSpec(kind=ARTIFACT_KIND, libraries=BUILD_LIBRARIES, cpu_specific=True,
                        inputs={**weights_fingerprint(model), **options.key_parts()})
    path, hit = (cache or default_cache()).get_or_build(spec, _build(model, options, progress),
                                                        description=f"TVM {name} {_describe(options)}")
    report = json.loads((path / REPORT_FILE).read_text())
    progress(1.0, "cached library" if hit else "compiled")
    return CompiledModel(path=path, layers=tuple(_layer(d) for d in report["layers"]),
                         compile_s=report["compile_s"], cache_hit=hit, load_s=time.perf_counter() - start,
                         unscheduled=tuple(report["unscheduled"]), shape=options.shape, threads=options.threads,
                         bf16_attention_calls=report.get("bf16_attention_calls", 0))


def _describe(options: CompileOptions) -> str:
    block = options.rewrite.block
    sparse = f"BSR {block[0]}x{block[1]} >= {options.rewrite.threshold}" if block else "dense"
    sparse = sparse if options.rewrite.precision == "fp32" else f"{sparse} {options.rewrite.precision}"
    return f"{sparse}, batch {options.shape.batch} x {options.shape.seq_len}, {options.threads} threads"


def _layer(data: dict) -> LayerReport:
    return LayerReport(**{**data, "shape": tuple(data["shape"])})
