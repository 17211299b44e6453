#!/usr/bin/env bash
# Create .venv and install loreg with every extra. torch goes first and pinned
# (2.13.0 CPU build, already on disk on this kind of machine); everything else is
# installed under a constraint that keeps that torch, so nothing downloads another.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.13.0"
printf 'torch==2.13.0\n' > .venv/constraints.txt
.venv/bin/python -m pip install -q -c .venv/constraints.txt -e ".[all,dev]"
# The browser tests (tests/e2e/test_web_browser.py) drive Debian's chromium through
# Playwright (its own browser download cannot work offline): install it when we can.
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    apt-get install -y -q chromium >/dev/null || echo "install.sh: could not install chromium" >&2
fi
