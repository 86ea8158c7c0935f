"""A node whose clocks run slow, through libfaketime (Debian's ``faketime``/``libfaketime``).

libfaketime alone hangs CPython's threads when it changes the clock's rate (see
faketime_shim.c), so a small shim, compiled here with the system's C compiler, is preloaded
before it. ``drift_env`` checks on a real process that time.monotonic runs at the rate asked.
"""

from __future__ import annotations

import glob
import shutil
import subprocess
import sys
import time
from pathlib import Path

SHIM = Path(__file__).with_name("faketime_shim.c")


def unavailable() -> str | None:
    if not glob.glob("/usr/lib/*/faketime/libfaketime.so.1"):
        return "libfaketime is not installed (apt-get install faketime)"
    if shutil.which("cc") is None:
        return "no C compiler to build the sem_clockwait shim libfaketime needs with Python"
    return None


def drift_env(directory: Path, rate: float) -> dict[str, str]:
    """The environment that makes a process's clocks (wall and monotonic) run at ``rate``."""
    lib = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))[0]
    shim = directory / "faketime_shim.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-o", str(shim), str(SHIM), "-ldl"],
                   check=True, capture_output=True, timeout=60)  # fmt: skip
    env = {"LD_PRELOAD": f"{shim} {lib}", "FAKETIME": f"+0 x{rate}"}
    # A process under it measures a real interval at the rate, and its lock timeouts return.
    probe = (
        "import threading, time, sys; m = time.monotonic(); threading.Event().wait(0.5); "
        "sys.stdout.write(str(time.monotonic() - m))"
    )
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True,
                         timeout=30, check=True)  # fmt: skip
    real = time.monotonic() - started
    faked = float(out.stdout)
    assert 0.45 <= faked < 0.6, f"the probe's clock measured {faked:.3f}s for a 0.5s wait"
    assert real >= 0.5 / rate - 0.05, f"a 0.5s wait at rate {rate} took {real:.3f}s"
    return env
