"""Keras pruning with TF-MOT and TFLite export: what sparsity buys a small CNN on a phone-class runtime.

One concept per module. TensorFlow-free (cheap to import from a page):
``options`` (what a run is: model, pruning, export variants), ``digits``
(the data), ``m_by_n`` (the pattern checker), ``inspection`` (reading any
.tflite), ``benchmark`` (interpreter accuracy and latency) and ``verdict``
(why sparse is or is not faster here). With TensorFlow: ``models``,
``training``, ``pruning``, ``export`` and ``pipeline`` (the whole run, as a
job and for ``python -m core tflite``).
"""
