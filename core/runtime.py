"""Lazy TensorFlow import with quiet logs and GPU memory growth: import only when a model is needed."""
from __future__ import annotations

import contextlib
import gc
import importlib.util
import logging
import os
import sys
import tempfile
import threading
import warnings

_lock = threading.Lock()
_tf = None
_quiet = False


def quiet(verbose: bool = False) -> None:
    """For a command line, before TensorFlow is imported: hide TensorFlow's C++ and absl logs, CUDA
    probing and Python warnings, so that only the command's own lines are printed; `verbose` keeps them."""
    global _quiet
    if verbose or _quiet:
        return
    _quiet = True
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")
    warnings.simplefilter("ignore")
    for name in ("tensorflow", "absl", "keras", "h5py"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if "tensorflow" not in sys.modules:
        sys.meta_path.insert(0, _QuietTensorFlowImport())


def quiet_command(argv: list[str] | None = None) -> None:
    """quiet() as the first line of a command's main, before its parser is built (building one may import
    Keras): `--verbose` among the arguments keeps the logs."""
    quiet("--verbose" in (sys.argv[1:] if argv is None else argv))


class _QuietTensorFlowImport:
    """Import finder: whoever imports TensorFlow first (Keras, say), it runs with native stderr held back,
    where TensorFlow logs before absl starts (CUDA probing, CPU features)."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            run = spec.loader.exec_module

            def exec_module(module):
                with _native_stderr_hidden():
                    run(module)

            spec.loader.exec_module = exec_module
        return spec


@contextlib.contextmanager
def _native_stderr_hidden():
    """While quiet: what C++ code writes to file descriptor 2 is kept aside, and shown only if the block
    fails (so an import error still says why)."""
    if not _quiet:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            held.seek(0)
            sys.stderr.write(held.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def freeze_long_lived() -> None:
    """Leave every object alive now (imported modules, loaded models) out of the garbage collector's
    automatic passes. A server holds about half a million such objects once TensorFlow is in; each automatic
    full collection walked them all with the interpreter lock held (150-180 ms, during which no frame of
    any webcam stream was processed). Each call first collects everything once, the frozen objects too,
    so that a model dropped since the last call (out of a cache) is freed then, not kept for good."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def keep_keras_session() -> None:
    """For a server that builds its models once and shares them (the app): once something has imported Keras,
    make keras.backend.clear_session() do nothing, and leave TensorFlow's objects out of the collector's passes.
    Nothing is imported by calling it.

    Streamlit calls keras.backend.clear_session() after every script run, fragment reruns too (the webcam page
    refreshes its figures each second). In Keras 3 that resets global state and runs a full gc.collect() with the
    GIL held, stalling the frame callback for hundreds of milliseconds; the app calls this at the end of each
    script run, before Streamlit's call."""
    backend = getattr(sys.modules.get("keras"), "backend", None)
    clear_session = getattr(backend, "clear_session", None)    # None while another thread is still importing it
    if clear_session is None or getattr(clear_session, "grin_keeps_session", False):
        return

    def keep_session(*args, **kwargs) -> None:
        pass

    keep_session.grin_keeps_session = True
    backend.clear_session = keep_session
    freeze_long_lived()     # TensorFlow's half a million objects


def tensorflow():
    """The tensorflow module, imported once (about 4 s) with sensible process-wide settings."""
    global _tf
    with _lock:
        if _tf is None:
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
            os.environ.setdefault("KERAS_BACKEND", "tensorflow")
            _import_before_tensorflow()
            with _native_stderr_hidden():   # import and CUDA probing: where TensorFlow logs before absl starts
                import keras  # noqa: F401  (imports tensorflow; its own logs come at import too)
                import tensorflow as tf

                for gpu in tf.config.list_physical_devices("GPU"):
                    try:
                        tf.config.experimental.set_memory_growth(gpu, True)
                    except RuntimeError:  # already initialised
                        pass
            if _quiet:
                tf.get_logger().setLevel(logging.ERROR)
            _tf = tf
    return _tf


def tensorflow_loaded() -> bool:
    """Whether `tensorflow()` has imported TensorFlow in this process (nothing is imported by asking)."""
    return _tf is not None


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


def machine_summary() -> dict:
    """What a model card says of the machine that trained a model: CPU model, cores, GPUs."""
    return {"cpu": cpu_model(), "cpus": os.cpu_count(), "gpus": gpu_count()}
