#!/usr/bin/env bash
# Install everything, lint (ruff check, ruff format --check, mypy on clients/loreg and
# registry), and run the whole test suite (unit, integration on Postgres + moto S3 and
# on SQLite + local store, end to end). Needs Postgres on 127.0.0.1:5432 (user postgres,
# trust auth) and Redis on 127.0.0.1:6379.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
.venv/bin/ruff check .
.venv/bin/ruff format --check .
bash scripts/typecheck.sh
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
