"""What machine a benchmark ran on, for the line printed beside its figures."""

from __future__ import annotations

import platform
import subprocess


def cpu_name() -> str:
    """The CPU's model name as lscpu says it (platform's guess where lscpu is missing)."""
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown CPU"
