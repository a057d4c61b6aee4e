"""Human-readable lines of a cycle report (run-once without --json, the demo)."""

from __future__ import annotations

from typing import Any


def report_lines(r: dict[str, Any], indent: str = "") -> list[str]:
    i2 = indent + "  "
    lines = [f"{indent}findings: {len(r['findings'])}"]
    lines += [f"{i2}[{f['severity']}] {f['kind']} {f['service']}: {f['summary']}" for f in r["findings"]]
    lines.append(f"{indent}incidents: {len(r['incidents'])}")
    lines += [f"{i2}{i['id']}  {i['kind']:<18} {i['service']:<32} {i['severity']:<8} {i['status']}"
              for i in r["incidents"]]
    lines.append(f"{indent}pull requests: {len(r['pull_requests'])}")
    lines += [f"{i2}{p['id']}  {p['status']:<6} {p['branch']}  {', '.join(p['files'])}  {p['url']}"
              for p in r["pull_requests"]]
    lines += [f"{indent}notified ({n['channel']}): {n['summary'][:240]}" for n in r["notifications"]]
    if r["errors"]:
        lines.append(f"{indent}errors: {len(r['errors'])}")
        lines += [f"{i2}[{e['stage']}] " + (e["message"] if str(e["message"]).startswith(f"{e['source']}:")
                                             else f"{e['source']}: {e['message']}") for e in r["errors"]]
    return lines
