#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what the tests need (Debian's prometheus +
# promtool, chromium + chromium-driver, the project with its dev extras in .venv), then lint, types and pytest.
# Usage: bash tests/run.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests drive for real, installed only when missing (root or sudo).
apt_install() {
  local SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get install -y -q --no-install-recommends "$@" >/dev/null \
    || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q --no-install-recommends "$@" >/dev/null; }
}
if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
  echo "== installing Debian package prometheus (real Prometheus for integration tests)"
  apt_install prometheus
fi
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  echo "== installing Debian packages chromium + chromium-driver (real headless browser for the review UI tests)"
  apt_install chromium chromium-driver
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv"
  "$PY" -m venv .venv
fi
echo "== installing remediator[dev] into .venv"
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'

echo "== pip-audit (known vulnerabilities in the installed dependencies; skips, saying so, when its database is out of reach)"
.venv/bin/python tests/audit_deps.py
echo "== ruff"
.venv/bin/ruff check agents tools memory playbooks tests bench
echo "== lint-imports (layers, independent nodes, no cycles: the contracts in pyproject.toml)"
.venv/bin/lint-imports --no-cache
# mypy (strict on agents/, tools/, memory/) runs beside pytest: the scenario harness leaves the cores
# idle while it waits on Prometheus and git, and a cold mypy takes ~40 s. Its output is printed after.
MYPY_LOG=$(mktemp)
.venv/bin/mypy >"$MYPY_LOG" 2>&1 &
MYPY_PID=$!
echo "== pytest (${REMEDIATOR_TEST_WORKERS:-2} processes; the scenario harness runs beside the rest; mypy beside them)"
set +e
.venv/bin/python -m pytest -q -n "${REMEDIATOR_TEST_WORKERS:-2}" --dist worksteal --hypothesis-profile=ci "$@"
PYTEST_RC=$?
wait "$MYPY_PID"
MYPY_RC=$?
set -e
echo "== mypy (strict on agents/, tools/, memory/)"
cat "$MYPY_LOG"; rm -f "$MYPY_LOG"
[ "$MYPY_RC" -eq 0 ] || { echo "mypy failed (exit $MYPY_RC)"; exit "$MYPY_RC"; }
exit "$PYTEST_RC"
