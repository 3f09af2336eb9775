"""A run's Keras dtype policy, and the float32 copy of its network that is saved and served."""
from __future__ import annotations

from core.runtime import BF16_CPU_FLAGS, cpu_flags, gpu_count
from training.config import TrainConfig


def auto_precision(has_gpu: bool, flags: set[str]) -> str:
    """float16 on a GPU; bfloat16 on a CPU with bfloat16 instructions (1.4-2x faster there); else
    float32: without them bfloat16 is emulated (10x slower, measured on an AVX2-only AMD EPYC)."""
    if has_gpu:
        return "mixed_float16"
    return "mixed_bfloat16" if flags & BF16_CPU_FLAGS else "float32"


def set_precision(precision: str) -> str:
    """Set the Keras dtype policy; "auto" chooses for the machine (`auto_precision`)."""
    import keras

    if precision == "auto":
        precision = auto_precision(gpu_count() > 0, cpu_flags())
    keras.config.set_dtype_policy(precision)
    return precision


def float32_copy(model, cfg: TrainConfig, input_shape, n_classes):
    """The same network in float32 for serving (faster on this CPU than bfloat16)."""
    import keras

    from training.architectures import build_model

    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")
    try:
        fresh = build_model(cfg.resolved_arch(), input_shape, n_classes, cfg.width or None, cfg.dropout, cfg.l2)
    finally:
        keras.config.set_dtype_policy(policy)
    fresh.set_weights(model.get_weights())
    return fresh
