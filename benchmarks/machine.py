"""A one-line description of the machine the numbers came from."""

from __future__ import annotations

import os
import platform

import torch


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def memory_gib() -> float | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / (1 << 20)
    except (OSError, ValueError, IndexError):
        pass
    return None


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def describe(device: torch.device) -> dict[str, str]:
    memory = memory_gib()
    info = {
        "CPU": cpu_model(),
        "cores": f"{os.cpu_count()} logical, {usable_cpus()} usable",
        "memory": f"{memory:.0f} GiB" if memory else "unknown",
        "torch": torch.__version__,
        "threads": str(torch.get_num_threads()),
        "python": platform.python_version(),
        "OS": f"{platform.system()} {platform.release()}",
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["GPU"] = f"{torch.cuda.get_device_name(device)} ({props.total_memory / (1 << 30):.0f} GiB)"
        info["CUDA"] = str(torch.version.cuda)
    return info
