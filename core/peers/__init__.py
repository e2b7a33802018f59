"""Dense peer engines, measured honestly beside SparseLab's own kernels.

What a user would really run instead of our block-sparse TVM kernels: PyTorch
eager fp32, ONNX Runtime fp32 and dynamic int8, OpenVINO at its default
precision (bf16 on CPUs that have it), forced f32, and NNCF int8. Modules:

- ``engines/``: the registry, one module per engine (auto-discovered);
- ``onnx_export``: the one cached ONNX export every ONNX-based engine starts from;
- ``model_ref``, ``inputs``: how workers find the model, and the inputs every engine sees;
- ``worker`` / ``pool``: one process per engine, timed in interleaved rounds;
- ``summary``: core.timing's conventions plus p10/p90, and agreement with PyTorch fp32;
- ``measure``: ``measure_peers(...) -> PeerReport``;
- ``request``, ``jobs``: ``PeerRequest`` (validated params) and the ``peers_job`` background job.

Never imports streamlit. Entry points: ``core.peers.measure.measure_peers``,
``core.peers.jobs.peers_job``, ``python -m core peers`` and benchmarks/peers.py.
"""
