#!/usr/bin/env bash
# Before/after benchmark of two checkouts of nmtbucket on the same data, interleaved so that
# machine drift hits both alike: the training step (scripts/bench_train.py, eager, the demo
# task) and translation (scripts/bench_translate.py, beams 1 and 5, on a trained parallel run),
# each checkout running its own scripts in its own virtual environment (CHECKOUT/.venv); then
# the training step once more through one harness for both (the after checkout's
# scripts/bench_public_step.py), so that a change of harness cannot pass for a library one.
#
#   git worktree add ../before <commit> && (cd ../before && python3 -m venv .venv &&
#       . .venv/bin/activate && pip install torch==2.13.0 && pip install -e .)
#   scripts/bench_revisions.sh ../before . runs/multi30k_transformer_cpu bench/results/NAME
#   python scripts/summarise_revisions.py bench/results/NAME
#
# Optional environment: TRAIN_PAIRS (default 4), TRANSLATE_PAIRS (default 3),
# SAME_HARNESS_PAIRS (default 6).
set -euo pipefail
if [ $# -ne 4 ]; then
  echo "usage: $0 BEFORE_CHECKOUT AFTER_CHECKOUT TRANSLATION_RUN_DIR OUT_DIR" >&2
  exit 2
fi
before=$(cd "$1" && pwd); after=$(cd "$2" && pwd); run=$(cd "$3" && pwd)
mkdir -p "$4"; out=$(cd "$4" && pwd)
work=$(mktemp -d)
for side in before after; do
  checkout=${!side}
  if [ ! -x "$checkout/.venv/bin/python" ]; then
    echo "$checkout/.venv is missing: install that checkout into its own venv first" >&2
    exit 2
  fi
  git -C "$checkout" rev-parse HEAD > "$out/$side.commit"
done

# Runs one benchmark for one side: SIDE NAME ARGS...
bench() {
  local side=$1 name=$2; shift 2
  local checkout=${!side}
  (cd "$work" && "$checkout/.venv/bin/python" "$checkout/scripts/$name.py" "$@" \
    > "$out/${name}_${side}_$pair.log" 2>&1)
  echo "$name $side pair $pair done" >&2
}

for pair in $(seq 1 "${TRAIN_PAIRS:-4}"); do
  order="before after"; [ $((pair % 2)) = 0 ] && order="after before"
  for side in $order; do
    bench "$side" bench_train +experiment=demo trainer.device=cpu \
      "data.cache_dir=$work/cache_$side" --variants eager --rounds 5 --steps 40 \
      --json "$out/bench_train_${side}_$pair.json"
  done
done
for pair in $(seq 1 "${TRANSLATE_PAIRS:-3}"); do
  order="before after"; [ $((pair % 2)) = 0 ] && order="after before"
  for side in $order; do
    bench "$side" bench_translate "$run" --beams 1 5 --repeats 2 \
      --json "$out/bench_translate_${side}_$pair.json"
  done
done
for pair in $(seq 1 "${SAME_HARNESS_PAIRS:-6}"); do
  order="before after"; [ $((pair % 2)) = 0 ] && order="after before"
  for side in $order; do
    checkout=${!side}
    (cd "$work" && "$checkout/.venv/bin/python" "$after/scripts/bench_public_step.py" \
      --cache-dir "$work/cache_$side" > "$out/bench_public_step_${side}_$pair.log" 2>&1)
    echo "bench_public_step $side pair $pair done" >&2
  done
done
rm -rf "$work"
