"""Training precision: "auto" takes bfloat16 on a CPU only where the CPU has bfloat16 instructions."""
from __future__ import annotations

import keras
import pytest

from core.runtime import cpu_flags, cpu_model, gpu_count
from training.precision import auto_precision, set_precision

X86_AVX2 = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2 avx2 fma\n\nprocessor\t: 1\nflags\t\t: fpu sse2 avx2 fma\n"
X86_AMX = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"
ARM = "processor\t: 0\nFeatures\t: fp asimd bf16 i8mm\nCPU implementer\t: 0x41\n"


@pytest.mark.parametrize("text, flag, expected", [
    (X86_AVX2, "avx2", "float32"),
    (X86_AMX, "avx512_bf16", "mixed_bfloat16"),
    (ARM, "bf16", "mixed_bfloat16"),
])
def test_cpu_flags_decide_the_cpu_precision(tmp_path, text, flag, expected):
    path = tmp_path / "cpuinfo"
    path.write_text(text)
    flags = cpu_flags(str(path))
    assert flag in flags
    assert auto_precision(False, flags) == expected
    assert auto_precision(True, flags) == "mixed_float16"


def test_cpu_model_name(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text("processor\t: 0\nmodel name\t: AMD EPYC 9B14\nflags\t\t: fpu avx2\n")
    assert cpu_model(str(path)) == "AMD EPYC 9B14"
    path.write_text(ARM)
    assert cpu_model(str(path)) == ""


def test_unreadable_cpuinfo_means_float32(tmp_path):
    flags = cpu_flags(str(tmp_path / "absent"))
    assert flags == set() and cpu_model(str(tmp_path / "absent")) == ""
    assert auto_precision(False, flags) == "float32"


def test_auto_on_this_machine_sets_the_keras_policy():
    flags = cpu_flags()
    assert flags, "this Linux machine's /proc/cpuinfo has feature flags"
    try:
        chosen = set_precision("auto")
        assert keras.config.dtype_policy().name == chosen
        assert chosen == auto_precision(gpu_count() > 0, flags)
    finally:
        keras.config.set_dtype_policy("float32")
