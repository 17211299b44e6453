#!/usr/bin/env bash
# Type-check the client package and the registry with mypy; the settings (files,
# plugins, per-library overrides) are [tool.mypy] in pyproject.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/mypy "$@"
