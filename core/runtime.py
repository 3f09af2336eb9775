"""Lazy TensorFlow import with quiet logs and GPU memory growth: import only when a model is needed."""
from __future__ import annotations

import os
import sys
import threading

_lock = threading.Lock()
_tf = None


def tensorflow():
    """The tensorflow module, imported once (about 4 s) with sensible process-wide settings."""
    global _tf
    with _lock:
        if _tf is None:
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
            os.environ.setdefault("KERAS_BACKEND", "tensorflow")
            _import_before_tensorflow()
            import tensorflow as tf

            for gpu in tf.config.list_physical_devices("GPU"):
                try:
                    tf.config.experimental.set_memory_growth(gpu, True)
                except RuntimeError:  # already initialised
                    pass
            _tf = tf
    return _tf


def _import_before_tensorflow() -> None:
    """pylibsrtp (the webcam's WebRTC, via aiortc) crashes the process (SIGSEGV) when it is first
    imported after TensorFlow; imported first, both work. It is absent from CLI-only installs."""
    if "tensorflow" in sys.modules:   # too late (keras imported it): importing pylibsrtp now would crash
        return
    try:
        import pylibsrtp  # noqa: F401
    except ImportError:
        pass


BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})  # x86 AVX-512/AMX; "bf16" on Arm


def _cpuinfo_fields(cpuinfo: str) -> dict[str, str]:
    """The first value of each field of /proc/cpuinfo (keys lower-cased); empty where unreadable."""
    try:
        text = open(cpuinfo, encoding="utf-8", errors="replace").read()
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip().lower(), value.strip())
    return fields


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> set[str]:
    """The CPU's feature flags (x86 `flags`, Arm `Features`); empty where they cannot be read."""
    fields = _cpuinfo_fields(cpuinfo)
    return set((fields.get("flags") or fields.get("features") or "").split())


def cpu_model(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The CPU's model name (x86), or "" where /proc/cpuinfo does not give one."""
    return _cpuinfo_fields(cpuinfo).get("model name", "")


def gpu_count() -> int:
    return len(tensorflow().config.list_physical_devices("GPU"))
