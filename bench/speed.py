"""Stage timings of the improvement loop for 130, 10k and 100k generated sessions.

    python bench/speed.py [--sizes 130,10000,100000]

The embedded store only; `bench/scale.py` (which this calls) also covers the Bolt
stores and 1M sessions. Prints, per size, each stage's wall time and peak memory.
"""
import subprocess
import sys
from pathlib import Path

if __name__ == "__main__":
    sizes = sys.argv[sys.argv.index("--sizes") + 1] if "--sizes" in sys.argv else "130,10000,100000"
    scale = Path(__file__).resolve().parent / "scale.py"
    sys.exit(subprocess.call([sys.executable, str(scale), "--sizes", sizes, "--stores", "networkx"]))
