"""The JSON report every benchmark writes: the date and the machine of the run, then its own numbers."""

from __future__ import annotations

import datetime
import json
import os
import platform
from pathlib import Path
from typing import Any


def write_report(path: Path, body: dict[str, Any]) -> None:
    """Write ``{"date", "machine", **body}`` to ``path`` as JSON and say where."""
    report = {"date": datetime.date.today().isoformat(),
              "machine": {"cores": os.cpu_count(), "cpu": platform.processor() or platform.machine(),
                          "python": platform.python_version()},
              **body}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten: {path}")
