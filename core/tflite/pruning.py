"""Pruning a trained Keras model with TF-MOT: clone, wrap, fine-tune with UpdatePruningStep, strip.

``prune_low_magnitude`` wraps the very layer objects it is given, so pruning the
dense model itself would silently prune the "dense" baseline too: the model is
cloned (``clone_model`` + ``set_weights``) first and only the clone is wrapped.
The result is stripped (``strip_pruning``): plain Keras layers holding zeros,
ready for the TFLite converter.
"""

from __future__ import annotations

import math

import tensorflow_model_optimization as tfmot
import tf_keras as keras

from core.errors import SparseLabError
from core.tflite.digits import DigitsSplit
from core.tflite.models import input_depth, prunable_layers
from core.tflite.options import PruneSpec
from core.tflite.training import EpochCallback, fit

tfmot_keras = tfmot.sparsity.keras
# How often (in steps) the masks are recomputed while the schedule is active.
MASK_UPDATE_EVERY = 10
# PolynomialDecay reaches the target at this fraction of the fine-tuning; the rest recovers accuracy.
RAMP_FRACTION = 0.6


def clone(model: keras.Model) -> keras.Model:
    """An independent copy: new layer objects, same weights."""
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def schedule(spec: PruneSpec, steps: int) -> tfmot_keras.PruningSchedule:
    """ConstantSparsity from step 0, or a PolynomialDecay ramp ending on a mask update."""
    if spec.method in ("constant", "mn"):
        return tfmot_keras.ConstantSparsity(spec.sparsity, begin_step=0, frequency=MASK_UPDATE_EVERY)
    end_step = max(MASK_UPDATE_EVERY, int(steps * RAMP_FRACTION) // MASK_UPDATE_EVERY * MASK_UPDATE_EVERY)
    return tfmot_keras.PolynomialDecay(initial_sparsity=0.0, final_sparsity=spec.sparsity, begin_step=0,
                                       end_step=end_step, frequency=MASK_UPDATE_EVERY)


def check_prunable(model: keras.Model, spec: PruneSpec) -> None:
    """Fail early, with the reason in plain words, for a model the chosen method cannot prune."""
    if spec.method == "xnnpack":
        try:
            tfmot_keras.PruneForLatencyOnXNNPack().ensure_model_supports_pruning(model)
        except ValueError as exc:
            raise SparseLabError(
                f"The XNNPACK latency pruning policy cannot prune this model: {exc}. It prunes only the 1x1 "
                "convolutions of a MobileNet-like model that starts with ZeroPadding2D(1) and a 3x3 stride-2 "
                "'valid' Conv2D on 3 channels and ends its sparse part with GlobalAveragePooling2D(keepdims=True); "
                "choose digits-mobilenet, or another pruning method for this model.") from exc
    elif spec.mn and not any(input_depth(layer) % spec.mn[1] == 0 for layer in prunable_layers(model)):
        raise SparseLabError(f"No prunable layer of this model has an input depth divisible by "
                             f"{spec.mn[1]}, so the {spec.label} pattern fits nowhere.")


def wrap(model: keras.Model, spec: PruneSpec, steps: int) -> keras.Model:
    """``model`` with pruning wrappers (it must be a clone: its layer objects are reused)."""
    check_prunable(model, spec)
    plan = schedule(spec, steps)
    if spec.method == "xnnpack":
        return tfmot_keras.prune_low_magnitude(model, pruning_schedule=plan,
                                               pruning_policy=tfmot_keras.PruneForLatencyOnXNNPack())
    targets = {layer.name for layer in prunable_layers(model)}

    def wrap_layer(layer):
        if layer.name not in targets:
            return layer
        if spec.mn and input_depth(layer) % spec.mn[1] == 0:
            m, n = spec.mn  # TF-MOT's (m, n) counts the zeros of each group, ours the kept weights
            return tfmot_keras.prune_low_magnitude(layer, pruning_schedule=plan, sparsity_m_by_n=(n - m, n))
        return tfmot_keras.prune_low_magnitude(layer, pruning_schedule=plan)

    return keras.models.clone_model(model, clone_function=wrap_layer)


def prune(dense: keras.Model, spec: PruneSpec, data: DigitsSplit, epochs: int, batch_size: int, seed: int,
          on_epoch: EpochCallback | None = None) -> keras.Model:
    """A pruned, fine-tuned and stripped copy of ``dense``; ``dense`` itself is left untouched."""
    steps = epochs * math.ceil(len(data.x_train) / batch_size)
    wrapped = wrap(clone(dense), spec, steps)
    fit(wrapped, data, epochs, batch_size, seed, callbacks=[tfmot_keras.UpdatePruningStep()], on_epoch=on_epoch)
    return tfmot_keras.strip_pruning(wrapped)


def weight_sparsity(model: keras.Model) -> float:
    """Zeros over all kernel weights (every weight of rank 2 or more), pruned or not."""
    kernels = [w for w in model.get_weights() if w.ndim >= 2]
    return sum(w.size - int((w != 0).sum()) for w in kernels) / max(1, sum(w.size for w in kernels))
