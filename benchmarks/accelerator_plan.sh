#!/usr/bin/env bash
# The runs that need an accelerator, side by side in one call of under ten minutes:
#   - benchmarks/diffusion_candidates.py: cDDPM widths trained for the same wall-clock time,
#     chosen on a validation split, the choice alone evaluated on the MNIST test set;
#   - the semi-supervised GAN of benchmarks/few_labels.py (10 labels per class, 100 in all) for
#     SSGAN_EPOCHS epochs (default 60) and the CNN trained on its labels, one process per seed
#     (0, 1, 2), then the merged table.
#
#   bash benchmarks/accelerator_plan.sh DATA_ROOT OUT [TRAIN_SECONDS]
#
# DATA_ROOT holds MNIST/raw. Everything lands in OUT: summary.json, grid.png and the logs of
# the diffusion candidates (OUT/diffusion), their float16 weights (OUT/diffusion/cand-*),
# ssgan-s*.json and ssgan-table.txt. Each part has its own time limit, so one that overruns
# leaves the others' results in place. SMOKE=1 SSGAN_EPOCHS=1 STUDENT_STEPS=10 checks the script on a CPU.
set -u
root=${1:?DATA_ROOT}
out=${2:?OUT}
train_seconds=${3:-260}
epochs=${SSGAN_EPOCHS:-60}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
export PYTHONUNBUFFERED=1
for seed in 0 1 2; do
  OMP_NUM_THREADS=2 timeout 560 python3 "$here/few_labels.py" --data-root "$root" --recipes "ssgan labels -> CNN" \
    --labels 10 --seeds 1 --first-seed "$seed" --ssgan-epochs "$epochs" --student-steps "${STUDENT_STEPS:-3000}" \
    --json "$out/ssgan-s$seed.json" \
    > "$out/ssgan-s$seed.log" 2>&1 &
done
timeout 555 python3 "$here/diffusion_candidates.py" --data-root "$root" --out "$out/diffusion" \
  --train-seconds "$train_seconds" --val-seconds 120 ${SMOKE:+--smoke} > "$out/diffusion.log" 2>&1
echo "diffusion candidates: exit $?"
wait
merged=$(ls "$out"/ssgan-s*.json 2>/dev/null)
if [ -n "$merged" ]; then
  # shellcheck disable=SC2086  # one argument per file
  python3 "$here/few_labels.py" --merge $merged > "$out/ssgan-table.txt" 2>&1
  cat "$out/ssgan-table.txt"
fi
tail -n 15 "$out/diffusion.log"
