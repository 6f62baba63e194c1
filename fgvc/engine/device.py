"""The device a run uses, its backend flags, and the model placed on it."""

from __future__ import annotations

import ctypes
import os
import platform
import types
from pathlib import Path

import torch
from torch import nn

from fgvc.errors import FGVCError
from fgvc.io import cache_dir


def resolve_device(name: str) -> torch.device:
    """`auto` (CUDA if available), `cpu`, `cuda` or `cuda:N`; a clear error otherwise."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise FGVCError(f"invalid --device {name!r}: use auto, cpu or cuda[:N]") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise FGVCError(f"--device {name}: CUDA is not available on this machine (use --device cpu)")
    return dev


def describe_device(device: torch.device) -> str:
    """The device as provenance records it (GPU name, or CPU model and thread count)."""
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu:{cpu_name()} x{torch.get_num_threads()} threads"


def cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (empty where there is none: not Linux)."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        pass
    return fields


def cpu_name() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo, where platform.processor() is empty)."""
    return cpuinfo().get("model name") or platform.processor() or platform.machine()


def cpu_identity() -> dict[str, str]:
    """What sets a CPU's floating-point path where a virtual machine masks the model name
    ("AMD EPYC"): the family / model / stepping, and the kernel level torch picked (AVX512,
    AVX2, ...). Two CPUs that differ here can train the same code and config to different last
    bits, which 30 epochs grow into points of accuracy (docs/results.md, commit check)."""
    info = cpuinfo()
    ident = " ".join(f"{k.split()[-1]} {info[k]}" for k in ("cpu family", "model", "stepping") if k in info)
    vendor = info.get("vendor_id", "")
    return dict(cpu_id=f"{vendor} {ident}".strip() or platform.processor() or platform.machine(),
                cpu_capability=torch.backends.cpu.get_cpu_capability())


PRECISIONS = ("auto", "fp32", "bf16")


def resolve_precision(name: str, device: torch.device) -> str:
    """`auto`: bf16 autocast on CUDA, and on a CPU with bf16 instructions (AVX-512 BF16 / AMX),
    where a Lite0 run is 1.2x faster and the accuracy check in docs/speed.md found no cost; fp32 on other
    CPUs, where bf16 would be emulated and slower (so `bf16` is refused there)."""
    if name not in PRECISIONS:
        raise FGVCError(f"invalid --precision {name!r}: use auto, fp32 or bf16")
    if name == "auto":
        return "bf16" if device.type == "cuda" or cpu_has_bf16() else "fp32"
    if name == "bf16" and device.type == "cpu" and not cpu_has_bf16():
        raise FGVCError("--precision bf16: this CPU has no bf16 instructions (AVX-512 BF16 / AMX); use fp32")
    return name


def cpu_has_bf16() -> bool:
    """Does oneDNN run bf16 natively on this CPU?"""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def configure_backends(device: torch.device, deterministic: bool) -> None:
    """Deterministic algorithms when asked (a repeated CPU run is then identical); else the
    fast CUDA settings (cudnn autotuning, TF32). On CPU: `keep_freed_memory`."""
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=False)
        torch.backends.cudnn.benchmark = False
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if device.type == "cpu":
        keep_freed_memory()


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_MMAP_MAX = -1, -3, -4  # glibc's mallopt parameters (malloc.h)
# What `keep_freed_memory` sets (parameter -> value); its docstring says why these values.
MALLOC_SETTINGS: dict[int, int] = {M_MMAP_MAX: 0, M_TRIM_THRESHOLD: 2**31 - 1}


def keep_freed_memory(settings: dict[int, int] | None = None) -> bool:
    """Let glibc keep freed memory for reuse instead of returning it to the system; True if set.

    glibc serves every allocation above 32 MB (most activations of a batch-32 CNN) with a fresh
    mmap and unmaps it when freed, so each training step faults in and zeroes gigabytes of pages
    again: 15-27% of a 2-core CPU went to the kernel. Serving them from the heap and trimming only
    above 2 GB made Lite0 training 27% (fp32) and 22% (bf16) faster on 2 cores
    (results/speed/cpu-tf_efficientnet_lite0-options.csv), at a higher peak resident memory
    (4.9 -> 7.2 GB for a fp32 step). Bounded settings did not bring that under 5 GB: over a few
    Lite0 fp32 steps and two evaluation passes (tools/memory_options.py, 2 cores of an AMD EPYC)
    these peaked at 6.0-6.3 GB and glibc's defaults at 4.6-5.0; mmapping only allocations above
    64, 128 or 256 MB, or trimming above 256 MB, at 5.2-6.3 GB, and on an idle machine the step
    of glibc's defaults took 1.52x and of mmap above 128 MB 1.21x as long (docs/speed.md), so
    these values stay; evaluating in training-sized batches on CPU (fgvc.data.loaders.eval_batch_size)
    brought fgvc's peak to 5.2 GB instead. `settings` (mallopt parameter -> value) replaces
    MALLOC_SETTINGS. Process-wide and irreversible; FGVC_KEEP_MALLOC=1 leaves glibc's defaults
    alone. No effect off glibc (macOS, musl)."""
    if os.environ.get("FGVC_KEEP_MALLOC") == "1" or platform.system() != "Linux":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return all([bool(libc.mallopt(param, value))
                    for param, value in (MALLOC_SETTINGS if settings is None else settings).items()])
    except (OSError, AttributeError):
        return False


def compile_cache_dir() -> Path:
    """Where compiled code is kept: `$FGVC_CACHE_DIR/inductor` (default ~/.cache/fgvc/inductor)."""
    return cache_dir("inductor")


def compile_model(net: nn.Module) -> nn.Module:
    """`torch.compile(net)` as in a fresh process, its compiled code kept on disk for every later run.

    Compiling Lite0's training step takes about a minute on 2 cores, more than `--compile` gains
    in a 30-epoch run. Inductor keeps what it compiled (FX graph and AOTAutograd caches) in
    TORCHINDUCTOR_CACHE_DIR, set here to `compile_cache_dir()` unless set to another folder than
    torch's default (a /tmp folder), so every later run of a grid -- in this worker, another
    `--jobs` worker, a shard, the next grid -- loads it instead. Dynamo's in-memory state is reset first: a run trained after others in one process
    then traces and selects its graphs (static, then dynamic shapes after a smaller last batch)
    exactly as a fresh process does, and gets the same results (tested); kept, it would send the
    next run's batches through the previous run's graphs and, after 8 (Dynamo's recompile limit:
    several models or image sizes), run uncompiled."""
    if inductor_cache_is_default():
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(compile_cache_dir())
    torch.compiler.reset()
    return torch.compile(net)


def inductor_cache_is_default() -> bool:
    """Is TORCHINDUCTOR_CACHE_DIR unset, or torch's default? Importing torch._dynamo (torchvision
    does) sets it to the default, so its being set does not mean a user chose it."""
    current = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if current is None:
        return True
    try:
        from torch._inductor.runtime.cache_dir_utils import default_cache_dir
    except ImportError:  # another torch layout: only an unset variable counts as the default
        return False
    return os.path.abspath(current) == os.path.abspath(default_cache_dir())


def place_model(model: nn.Module, device: torch.device, channels_last: bool = True,
                precision: str = "fp32") -> nn.Module:
    """The model on `device`; channels_last: faster convolutions on CUDA and, with oneDNN, on
    CPU too. bf16 on CPU: depthwise convolutions train in fp32 (`keep_depthwise_fp32`)."""
    model = model.to(device, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    if precision == "bf16" and device.type == "cpu":
        keep_depthwise_fp32(model)
    return model


def keep_depthwise_fp32(model: nn.Module) -> int:
    """Train depthwise convolutions in fp32 under CPU bf16 autocast; returns how many.

    oneDNN's bf16 backward of a depthwise convolution is 3-4x slower than its fp32 one on CPU
    (Lite0's strided 3x3 and 5x5 ones; measured on a Xeon with AMX), which made a whole bf16
    training step slower than fp32. Their input is cast up and their output back down, so the
    rest of the step stays bf16; inference (no grad) keeps the fast bf16 forward. The forward
    is a bound method in the instance, so state_dict, deepcopy and pickling are unchanged."""
    n = 0
    for mod in model.modules():
        if isinstance(mod, nn.Conv2d) and mod.groups > 1 and mod.groups == mod.in_channels:
            mod.forward = types.MethodType(_fp32_while_training, mod)
            n += 1
    return n


def _fp32_while_training(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    dev = x.device.type
    if not (torch.is_grad_enabled() and torch.is_autocast_enabled(dev)):
        return type(conv).forward(conv, x)
    dtype = torch.get_autocast_dtype(dev)
    with torch.autocast(dev, enabled=False):
        return type(conv).forward(conv, x.float()).to(dtype)


__all__ = ["resolve_device", "describe_device", "cpu_name", "cpuinfo", "cpu_identity", "configure_backends",
           "place_model", "PRECISIONS",
           "resolve_precision", "cpu_has_bf16", "keep_depthwise_fp32", "keep_freed_memory", "MALLOC_SETTINGS",
           "M_TRIM_THRESHOLD", "M_MMAP_THRESHOLD", "M_MMAP_MAX", "compile_cache_dir", "compile_model",
           "inductor_cache_is_default"]
