"""Running a .tflite file the way an app would: accuracy and latency through the interpreter.

The interpreter is ``ai_edge_litert``'s with its default delegate (XNNPACK) and
an explicit thread count; there is no benchmark_model binary here. Every
latency goes through ``core.timing.measure`` (warm-up, repeats, median). Full
int8 files take int8 input: images are quantized with the input's own scale and
zero point.
"""

from __future__ import annotations

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from core.timing import Timing, measure


def _as_input(images: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero_point = detail["quantization"]
    if not np.issubdtype(detail["dtype"], np.integer):
        return images.astype(detail["dtype"])
    limits = np.iinfo(detail["dtype"])
    return np.clip(np.round(images / scale + zero_point), limits.min, limits.max).astype(detail["dtype"])


def _as_float(output: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero_point = detail["quantization"]
    if not np.issubdtype(detail["dtype"], np.integer):
        return output
    return (output.astype(np.float32) - zero_point) * scale


def predict(model: bytes, images: np.ndarray) -> np.ndarray:
    """Float logits for a batch of images, in one invocation (the input is resized to the batch)."""
    interpreter = Interpreter(model_content=model)
    detail = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(detail["index"], list(images.shape))
    interpreter.allocate_tensors()
    interpreter.set_tensor(detail["index"], _as_input(images, detail))
    interpreter.invoke()
    output = interpreter.get_output_details()[0]
    return _as_float(interpreter.get_tensor(output["index"]), output)


def tflite_accuracy(model: bytes, images: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(predict(model, images), axis=-1) == labels))


def tflite_latency(model: bytes, image: np.ndarray, threads: int, repeats: int, warmup: int) -> Timing:
    """Latency of one single-image inference with ``threads`` threads."""
    interpreter = Interpreter(model_content=model, num_threads=threads)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    interpreter.set_tensor(detail["index"], _as_input(image[None], detail))
    return measure(interpreter.invoke, threads=threads, repeats=repeats, warmup=warmup)
