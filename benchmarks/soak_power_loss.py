"""Soak: the power-loss test with many more SIGKILLs (default 300). Slow; not part of `make test` or `make bench`.

    .venv/bin/python benchmarks/soak_power_loss.py [KILLS]
"""

import os
import subprocess
import sys
from pathlib import Path

kills = sys.argv[1] if len(sys.argv) > 1 else "300"
root = Path(__file__).resolve().parents[1]
sys.exit(subprocess.call([sys.executable, "-m", "pytest", "-q", str(root / "tests" / "test_power_loss.py")],
                         env={**os.environ, "FB_POWER_LOSS_KILLS": kills}, cwd=root))
