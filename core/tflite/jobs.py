"""The Export page's background job: ``tflite`` (TF-MOT pruning, TFLite export, measurements)."""

from __future__ import annotations

from core.jobs import NO_PROGRESS, Progress
from core.tflite.options import TfliteSettings


def tflite_job(params: dict, progress: Progress = NO_PROGRESS) -> dict:
    """params: ``TfliteSettings.from_params``; the result is ``TfliteReport.as_dict()``."""
    settings = TfliteSettings.from_params(params)
    from core.tflite.pipeline import run_pipeline  # TensorFlow loads only once the params are valid

    return run_pipeline(settings, progress).as_dict()
