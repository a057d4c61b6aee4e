"""Known vulnerabilities in the installed dependencies, with pip-audit (run by tests/run.sh).

Exit 1 when pip-audit reports a vulnerability (each printed with its fix versions). When its
vulnerability database cannot be reached (no network, a package index without the JSON API),
print why and exit 0: CI goes on, and the line says that nothing was checked. The project itself
(an editable install) is skipped: it is not on PyPI.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

PIP_AUDIT = Path(sys.executable).with_name("pip-audit")


def main() -> int:
    try:
        run = subprocess.run([str(PIP_AUDIT), "--skip-editable", "--progress-spinner", "off", "-f", "json"],
                             capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as e:
        print(f"pip-audit skipped: it could not run ({e})")
        return 0
    try:
        deps = json.loads(run.stdout)["dependencies"]
    except (ValueError, KeyError, TypeError):
        last = (run.stderr.strip().splitlines() or ["no output"])[-1]
        print(f"pip-audit skipped: its vulnerability database could not be reached ({last[:200]})")
        return 0
    audited = [d for d in deps if "skip_reason" not in d]
    vulnerable = [d for d in audited if d.get("vulns")]
    for d in vulnerable:
        for v in d["vulns"]:
            fix = ", ".join(v.get("fix_versions") or []) or "no fixed version yet"
            print(f"VULNERABLE {d['name']} {d['version']}: {v['id']} (fixed in: {fix})")
    if vulnerable:
        print(f"pip-audit: {len(vulnerable)} of {len(audited)} audited dependencies have known vulnerabilities; "
              "raise their lower bounds in pyproject.toml")
        return 1
    if not audited:
        print(f"pip-audit skipped: its vulnerability database could not be reached (none of {len(deps)} "
              "dependencies could be looked up); nothing was checked")
        return 0
    skipped = len(deps) - len(audited)
    print(f"pip-audit: {len(audited)} dependencies audited, no known vulnerabilities"
          + (f" ({skipped} could not be looked up)" if skipped else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
