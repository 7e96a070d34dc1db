"""Writing a benchmark record: the measured numbers plus machine, devices, versions and date."""

import json
import os
import time

from collapse_jax._sweep import environment


def save_record(out: dict, path: str) -> str:
    """Add ``environment`` (versions, devices, CPU count) and ``date`` to ``out``; write JSON."""
    record = {**out, "environment": environment(), "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as fh:
        json.dump(record, fh, indent=2)
    return path
