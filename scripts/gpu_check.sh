#!/usr/bin/env bash
# The GPU check (scripts/gpu_check.py): every GPU measurement in one command, about 8 minutes
# on one H100/H200, writing log.txt, summary.json and summary.md to OUT. NMTBUCKET_COMMIT names
# the commit in the summary where the tree has no .git (a copy sent to a lent GPU).
#
#   scripts/gpu_check.sh [--wheels DIR] [--dry-run] [--data DIR] OUT
#   scripts/gpu_check.sh --fetch-wheels DIR
#
# --wheels DIR     first install the wheels in DIR and nmtbucket itself (editable, no network):
#                  what a bare GPU image lacks (hydra-core, omegaconf, antlr4-python3-runtime)
# --fetch-wheels   download those wheels into DIR here (needs the package index) and stop
# --dry-run        on the CPU at tiny sizes, without the GPU parts (what CI runs)
# Other options go to scripts/gpu_check.py (--data, --scratch, --updates). PYTHON picks the
# interpreter (default python3). The README's "GPU check" section has the whole recipe.
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python3}"
wheels=""
args=()
while (($#)); do
  case "$1" in
    --wheels) wheels="$2"; shift 2 ;;
    --fetch-wheels)
      mkdir -p "$2"
      versions=$("$python" -c 'from importlib.metadata import version as v
print(" ".join(f"{n}=={v(n)}" for n in ("hydra-core", "omegaconf")))')
      # shellcheck disable=SC2086  # two requirements, split on purpose
      "$python" -m pip download -q --no-deps --only-binary=:all: -d "$2" $versions
      # antlr4-python3-runtime 4.9 is published as a source archive only: build its wheel
      "$python" -m pip wheel -q --no-deps -w "$2" "antlr4-python3-runtime==$("$python" -c \
        'from importlib.metadata import version; print(version("antlr4-python3-runtime"))')"
      ls "$2"
      exit 0 ;;
    *) args+=("$1"); shift ;;
  esac
done
if [[ -n "$wheels" ]]; then
  "$python" -m pip install -q --no-index --no-deps --no-compile "$wheels"/*.whl
  "$python" -m pip install -q --no-index --no-deps --no-build-isolation -e .
fi
if ! "$python" -c "import hydra, omegaconf, nmtbucket.conf" 2>/dev/null; then
  echo "gpu_check: $python cannot import hydra, omegaconf and nmtbucket.conf; install" \
    "nmtbucket (pip install -e .) or pass --wheels DIR (see the README's GPU check)" >&2
  exit 2
fi
exec "$python" scripts/gpu_check.py "${args[@]}"
