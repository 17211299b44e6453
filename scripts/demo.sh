#!/usr/bin/env bash
# Install, then run the demo: serve on the embedded default, train a tiny adapter,
# push it, pull it back into an empty cache and generate with it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
HF_HUB_OFFLINE=1 .venv/bin/python scripts/demo.py
