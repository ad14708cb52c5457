#!/usr/bin/env bash
# Prints the path of a Python interpreter that has fastavro, the second Avro implementation the
# schema interop test reads our fixtures with. The virtualenv lives outside the repo so that it
# survives fresh clones and never shows up in the work tree; it is created on the first run and
# reused afterwards. Only the interpreter path goes to stdout, so callers can capture it:
#   SALES_PYTHON="$(scripts/python-env.sh)"
# SALES_PYTHON_ENV overrides where the virtualenv is kept.
set -euo pipefail

# Pinned so that every machine checks the fixtures against the same reader.
FASTAVRO_VERSION="1.13.1"

env_dir="${SALES_PYTHON_ENV:-${XDG_CACHE_HOME:-$HOME/.cache}/sales-pipeline/python}"
python="$env_dir/bin/python"

installed_version() {
  "$python" -c 'import importlib.metadata as m; print(m.version("fastavro"))' 2>/dev/null || true
}

if [[ -x "$python" && "$(installed_version)" == "$FASTAVRO_VERSION" ]]; then
  echo "$python"
  exit 0
fi

if [[ ! -x "$python" ]]; then
  echo "python-env: creating virtualenv at $env_dir" >&2
  mkdir -p "$(dirname "$env_dir")"
  python3 -m venv "$env_dir" >&2
fi

echo "python-env: installing fastavro==$FASTAVRO_VERSION" >&2
"$python" -m pip install --disable-pip-version-check --quiet "fastavro==$FASTAVRO_VERSION" >&2

if [[ "$(installed_version)" != "$FASTAVRO_VERSION" ]]; then
  echo "python-env: fastavro $FASTAVRO_VERSION did not install into $env_dir" >&2
  exit 1
fi
echo "$python"
