"""The `remediator` console script as a user runs it, for tests: a subprocess with no REMEDIATOR_*
variables from the test's own environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def command() -> list[str]:
    exe = Path(sys.executable).with_name("remediator")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "agents.cli"]


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("REMEDIATOR_")}


def remediator(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """Run it to the end."""
    return subprocess.run([*command(), *args], capture_output=True, text=True, timeout=timeout, env=clean_env())


def start(*args: str) -> subprocess.Popen[str]:
    """Start it; the caller communicates."""
    return subprocess.Popen([*command(), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=clean_env())
