"""What machine the course runs on: versions, CPU, threads, CUDA.

Introduced in notebook ``00_welcome``. Every timing in the course depends on the machine,
so notebooks print this report before they measure anything, and the benchmarks store it
beside their results.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

import numpy as np
import torch

__all__ = ["environment", "report", "cpu_name"]


def cpu_name() -> str:
    """The processor's model name, as the operating system reports it."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


def environment() -> dict:
    """The facts that decide how fast a model runs here, as a dict.

    Keys: ``python``, ``torch``, ``numpy``, ``lrlib``, ``platform``, ``cpu``,
    ``logical_cpus``, ``torch_threads`` (what ``torch.get_num_threads()`` says intra-op
    parallelism uses), ``torch_interop_threads``, ``cuda_available``, ``cuda_devices``
    (names, empty without CUDA), ``mkldnn`` (whether oneDNN kernels are available).
    """
    from . import __version__

    cuda = torch.cuda.is_available()
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "lrlib": __version__,
        "platform": f"{platform.system()} {platform.release()} ({platform.machine()})",
        "cpu": cpu_name(),
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "cuda_available": cuda,
        "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        if cuda
        else [],
        "mkldnn": torch.backends.mkldnn.is_available(),
    }


def report(file=None) -> dict:
    """Print the environment as an aligned table (to ``file``, default stdout) and return
    the dict from :func:`environment`."""
    if file is not None and not callable(getattr(file, "write", None)):
        raise TypeError(f"file must be a writable text stream such as sys.stdout, got "
                        f"{type(file).__name__}")
    facts = environment()
    width = max(len(key) for key in facts)
    for key, value in facts.items():
        if isinstance(value, list):
            value = ", ".join(value) or "none"
        print(f"{key:<{width}}  {value}", file=file or sys.stdout)
    return facts
