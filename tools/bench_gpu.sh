#!/usr/bin/env bash
# GPU figures for issue 19: `bench step --device cuda` at 10k, 100k and 1M streams, each with
# the GPU's own float32 matmul ceiling timed in the same process. Run on a machine with CUDA
# and the project's Python packages (here: the lent H200 machine, packages carried as wheels
# in .whl/ because it cannot reach PyPI). Writes JSON lines to ${OUT:-runs/bench}/gpu_step.jsonl.
set -uo pipefail
out_dir=${OUT:-runs/bench}
mkdir -p "$out_dir"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name(0))'
for config in ${CONFIGS:-configs/vitals.yaml}; do
  for streams in ${STREAMS:-10000 100000 1000000}; do
    # SIGABRT on timeout: faulthandler prints where a size got stuck instead of nothing
    timeout -s ABRT "${STEP_TIMEOUT_S:-150}" python3 -X faulthandler -m streamlstm.cli \
      bench step --device cuda --config "$config" --streams "$streams" \
      --naive-streams "${NAIVE_STREAMS:-100}" --seconds "${SECONDS_PER_VARIANT:-1}" \
      ${EXTRA_ARGS:-} --json | tee -a "$out_dir/gpu_step.jsonl"
  done
done
