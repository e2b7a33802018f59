"""The machine every number on the dashboard was measured on."""

import streamlit as st

from core.environment import cpu_info, environment_record


@st.cache_data(show_spinner="Reading the machine and library versions…")
def _record() -> dict:
    return environment_record()  # imports TVM once to ask LLVM for the CPU name


def environment_summary() -> None:
    """One line in the sidebar: CPU, cores, the SIMD that matters (cheap: no library imports)."""
    cpu = cpu_info()
    st.caption(f"{cpu.model} · {cpu.cores} cores · {', '.join(cpu.flags) or 'no SIMD flags'}")


def environment_card() -> None:
    record = _record()
    cpu = record["cpu"]
    cols = st.columns(4)
    cols[0].metric("CPU", cpu["model"])
    cols[1].metric("Cores", cpu["cores"])
    cols[2].metric("LLVM target", record["llvm_mcpu"])
    cols[3].metric("Python", record["python"])
    flags = set(cpu["flags"])
    st.markdown(" ".join(
        f":{'green' if flag in flags else 'gray'}-badge[{flag.upper()} {'✓' if flag in flags else '✗'}]"
        for flag in ("avx2", "fma", "avx512f", "avx512_vnni")))
    versions = {name: version or "not installed" for name, version in record["libraries"].items()}
    st.dataframe([{"library": k, "version": v} for k, v in versions.items()], hide_index=True,
                 width="stretch")
