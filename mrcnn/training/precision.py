"""Choosing the numeric precision a model computes in.

``Config.MIXED_PRECISION = "auto"`` (the default) picks, for the machine the model runs on:

* ``mixed_bfloat16`` on GPUs of compute capability >= 8.0 (A100, H100, RTX 30xx/40xx)
  and on CPUs with bfloat16 units (x86 flags ``avx512_bf16``, ``amx_bf16``/``amx_tile``);
* ``mixed_float16`` (with loss scaling while training) on GPUs of compute capability
  7.x (V100, T4, RTX 20xx), whose tensor cores run float16 but not bfloat16;
* ``float32`` everywhere else (older GPUs, CPUs without bf16, non-Linux CPUs).

An explicit value wins: ``None`` or ``"float32"`` means float32. Variables stay float32
under both mixed policies; the graph layers that decode boxes, run NMS, align ROIs and
compute losses run in float32 whatever the policy.

Example:
    resolve_precision("auto", cpu_flags={"avx512_bf16"}, gpus=[])   # "mixed_bfloat16"
    resolve_precision("auto", gpus=[(7, 0)])                        # "mixed_float16"
"""
import functools
import os
import sys

POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")
VALUES = (None, "auto") + POLICIES
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16", "amx_tile")
# oneDNN's ONEDNN_MAX_CPU_ISA values that still reach the bfloat16 units; any other value
# (e.g. AVX2, to run as on a CPU without AVX-512) makes "auto" pick float32.
ONEDNN_BF16_ISAS = ("AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX512_CORE_AMX",
                    "AVX512_CORE_AMX_FP16", "AVX10_1_512", "AVX10_1_512_AMX",
                    "AVX10_1_512_AMX_FP16", "AVX10_2_512", "AVX10_2_512_AMX_2", "ALL",
                    "DEFAULT")


@functools.lru_cache(maxsize=1)
def host_cpu_flags():
    """The CPU feature flags of this machine (Linux /proc/cpuinfo; empty elsewhere)."""
    if not sys.platform.startswith("linux"):
        return frozenset()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


@functools.lru_cache(maxsize=1)
def host_gpu_capabilities():
    """Compute capabilities (major, minor) of the visible GPUs, e.g. [(8, 0)]."""
    import tensorflow as tf
    caps = []
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            cap = tf.config.experimental.get_device_details(gpu).get("compute_capability")
        except (RuntimeError, ValueError):
            cap = None
        caps.append(tuple(cap) if cap else (0, 0))
    return tuple(caps)


def _capability(gpu):
    """(major, minor) from a tuple, a "8.0" string or a get_device_details dict."""
    if isinstance(gpu, dict):
        gpu = gpu.get("compute_capability") or (0, 0)
    if isinstance(gpu, str):
        gpu = tuple(int(p) for p in gpu.split(".")[:2])
    return tuple(gpu)


def choose_precision(cpu_flags=None, gpus=None):
    """(policy, reason) that "auto" picks for the given CPU flags and GPU capabilities.

    cpu_flags: iterable of flag names (default: this machine's); gpus: list of compute
    capabilities as (major, minor), "8.0" or device-detail dicts (default: this
    machine's visible GPUs; [] for none).
    """
    gpus = host_gpu_capabilities() if gpus is None else gpus
    if gpus:
        cap = min(_capability(g) for g in gpus)  # the slowest GPU decides
        text = f"GPU compute capability {cap[0]}.{cap[1]}"
        if cap >= (8, 0):
            return "mixed_bfloat16", f"{text} runs bfloat16"
        if cap >= (7, 0):
            return "mixed_float16", f"{text} runs float16 tensor cores, not bfloat16"
        return "float32", f"{text} has no fast half precision"
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "").strip().upper()
    if cpu_flags is None and isa and isa not in ONEDNN_BF16_ISAS:
        return "float32", f"ONEDNN_MAX_CPU_ISA={isa} keeps oneDNN off bfloat16 units"
    flags = set(host_cpu_flags() if cpu_flags is None else cpu_flags)
    found = [f for f in CPU_BF16_FLAGS if f in flags]
    if found:
        return "mixed_bfloat16", f"CPU has {'/'.join(found)}"
    return "float32", "CPU has no bfloat16 units (avx512_bf16/amx)"


def resolve_precision(value, cpu_flags=None, gpus=None, mode="training"):
    """Config.MIXED_PRECISION -> the Keras policy name to build with.

    "auto" follows choose_precision while training. An inference model built with
    "auto" computes in float32: weights from elsewhere (matterport's COCO file, a
    float32 run) then give exactly the detections they give in float32. To infer in
    half precision, set the policy explicitly; the fashion CLI does so for runs that
    were trained in a mixed policy (their run file records it). None and "float32"
    give "float32"; the mixed policies are returned as they are. ValueError for
    anything else.
    """
    if value is None or value == "float32":
        return "float32"
    if value in POLICIES:
        return value
    if value == "auto":
        if mode == "inference":
            return "float32"
        return choose_precision(cpu_flags, gpus)[0]
    raise ValueError(f"MIXED_PRECISION is {value!r}; use 'auto', None, 'float32', "
                     "'mixed_float16' or 'mixed_bfloat16'.")


def describe_precision(value, cpu_flags=None, gpus=None, mode="training"):
    """One line for logs: the chosen policy and why, e.g. "mixed_bfloat16 (auto: CPU
    has avx512_bf16)"."""
    policy = resolve_precision(value, cpu_flags, gpus, mode)
    if value == "auto" and mode == "inference":
        return f"{policy} (auto: inference keeps float32 unless set explicitly)"
    if value == "auto":
        return f"{policy} (auto: {choose_precision(cpu_flags, gpus)[1]})"
    return f"{policy} (set explicitly)"
