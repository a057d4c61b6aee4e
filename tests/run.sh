#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what the tests need (Debian's prometheus +
# promtool, the project with its dev extras in .venv), then lint, types and pytest.
# Usage: bash tests/run.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
  echo "== installing Debian package prometheus (real Prometheus for integration tests)"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get install -y -q --no-install-recommends prometheus >/dev/null \
    || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q --no-install-recommends prometheus >/dev/null; }
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv"
  "$PY" -m venv .venv
fi
echo "== installing remediator[dev] into .venv"
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'

echo "== ruff"
.venv/bin/ruff check agents tools memory playbooks tests bench
echo "== lint-imports (layers, independent nodes, no cycles: the contracts in pyproject.toml)"
.venv/bin/lint-imports --no-cache
echo "== mypy (strict on memory/ and tools/detectors/)"
.venv/bin/mypy
echo "== pytest (${REMEDIATOR_TEST_WORKERS:-2} processes; the scenario harness runs beside the rest)"
exec .venv/bin/python -m pytest -q -n "${REMEDIATOR_TEST_WORKERS:-2}" --dist worksteal --hypothesis-profile=ci "$@"
