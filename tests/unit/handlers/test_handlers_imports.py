"""What the controller loads at startup: heavy libraries only on first use (its idle RSS is a target)."""

from __future__ import annotations

import subprocess
import sys


def test_starting_the_controller_loads_no_scipy_or_numpy() -> None:
    """scipy + numpy add ~65 MiB of RSS to every replica; they load only when a statistic is computed
    (a compare gate's U test, an Experiment report), never merely by importing the controller."""
    code = (
        "import sys\n"
        "import controller.handlers.startup, controller.wiring, controller.cli\n"
        "print(sorted(m for m in ('scipy', 'numpy') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
