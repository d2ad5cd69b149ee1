"""``python -m localcluster``: ``cluster.py``'s commands, and ``up --kueue`` to start Kueue on the
cluster too (``kueue.py``; built on first use by ``build_kueue.sh``)."""

import argparse
import sys
from pathlib import Path

from localcluster.cluster import default_dir, main

extra = argparse.ArgumentParser(add_help=False)
extra.add_argument("--kueue", action="store_true")
extra.add_argument("--dir", type=Path, default=None)
known, _ = extra.parse_known_args()
try:
    main([a for a in sys.argv[1:] if a != "--kueue"])
finally:
    if "-h" in sys.argv or "--help" in sys.argv:
        print("  --kueue               up: also start Kueue (localcluster/kueue.py)")
if known.kueue and sys.argv[1:2] == ["up"]:
    from localcluster import kueue

    kueue.up((known.dir or default_dir()).resolve())
