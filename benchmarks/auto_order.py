"""Install the backend order a GPU check measured, for ``backend='auto'`` on that card.

    python benchmarks/auto_order.py RESULTS/auto_order.json

Merges the file's {device name: {precision: [backend, ...]}} into
ddpm_fast/backends/auto_order.json (written to a temporary name, then renamed); commit it
with the results it came from. Cards not in that file keep the safe unmeasured order.
"""
import json
import os
import sys
from pathlib import Path

TARGET = Path(__file__).resolve().parents[1] / "ddpm_fast" / "backends" / "auto_order.json"


def main(path: str) -> int:
    measured = json.loads(Path(path).read_text())["orders"]
    if any(name == "cpu" for name in measured):
        sys.exit("auto_order: that file was measured on the CPU (a dry run); nothing installed")
    current = json.loads(TARGET.read_text()) if TARGET.exists() else {"orders": {}}
    current["orders"].update(measured)
    tmp = TARGET.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, TARGET)
    print(f"auto_order: {', '.join(measured)} -> {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
