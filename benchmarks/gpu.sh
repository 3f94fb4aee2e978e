#!/usr/bin/env bash
# Throughput on an NVIDIA GPU (`make bench-gpu`). See benchmarks/README.md, "Throughput".
#
#   bash benchmarks/gpu.sh prepare   # here, once: wheels into .whl/, photos into .bench-photos/
#   bash benchmarks/gpu.sh           # on the GPU machine, from the repository root
#
# The GPU machine has torch, torchvision, numpy, pillow, httpx, prometheus-client, scikit-image
# but not open_clip, FastAPI/uvicorn, pydantic, qdrant or redis: they travel as wheels. It has
# no redis-server either, so indexing runs in-process (decode in a process pool, the real
# encoder service over HTTP, Qdrant Edge in the driver; no Redis, no search-API hop).
#
# Environment: DEVICE (cuda), PYTHON (python3), BENCH_OUT (data/bench-gpu), SKIP_INSTALL=1 to
# use the current environment (a CPU dry run here: DEVICE=cpu PYTHON=.venv/bin/python
# SKIP_INSTALL=1 bash benchmarks/gpu.sh), BENCH_ARGS (extra arguments).
set -euo pipefail
cd "$(dirname "$0")/.."

WHEELS=(
  open_clip_torch==3.3.0 ftfy==6.3.1 wcwidth==0.9.4
  fastapi==0.165.0 starlette==1.10.0 uvicorn==0.54.0 annotated-doc==0.0.7 python-multipart==0.0.34
  pydantic==2.14.4 pydantic_core==2.50.5 pydantic-settings==2.16.3 python-dotenv==1.2.4
  annotated-types==0.8.0 typing-inspection==0.4.5 typing_extensions==4.16.0
  qdrant-edge-py==0.9.0 qdrant-client==1.20.0 h2==4.4.1 hpack==4.2.0 hyperframe==6.1.0
  redis==8.1.0
)

if [[ "${1:-}" == "prepare" ]]; then
  PY=${PYTHON:-.venv/bin/python}
  for ignored in /.whl/ /.bench-photos/; do
    grep -qxF "$ignored" .git/info/exclude 2>/dev/null || echo "$ignored" >> .git/info/exclude
  done
  rm -rf .whl
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux1_x86_64 -d .whl "${WHEELS[@]}"
  # A spread of the wallpapers (large JPEGs first) within 28 MB: the tree that travels
  # (repository + wheels + photos) must stay under 64 MiB.
  "$PY" -m benchmarks.throughput_data --cache "${DATA_DIR:-data}/bench/cache" \
    --export .bench-photos --max-mb 28
  du -sh .whl .bench-photos
  echo "ready: run 'bash benchmarks/gpu.sh' on the device with carry=[\".whl\", \".bench-photos\"]"
  exit 0
fi

PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
OUT_DIR=${BENCH_OUT:-data/bench-gpu}
if [[ "${SKIP_INSTALL:-0}" != "1" ]]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
# Our packages straight from the tree (the encoder child process inherits this).
export PYTHONPATH=$PWD/shared/src:$PWD/services/encoder/src:$PWD/services/indexer-worker/src:$PWD/services/search-api/src:$PWD${PYTHONPATH:+:$PYTHONPATH}
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
PHOTOS=${PHOTOS:-.bench-photos}
[[ -d "$PHOTOS" ]] || { echo "no $PHOTOS: run 'bash benchmarks/gpu.sh prepare' first" >&2; exit 2; }

if [[ "$DEVICE" == cuda* ]]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
fi
"$PY" -c 'import torch, open_clip, fastapi, qdrant_edge; print("torch", torch.__version__, "cuda", torch.cuda.is_available())'

# Model only (fp16) -> encoder service under load -> decode cost per option -> indexing with
# this machine's cores decoding -> the seed's way on the same photos -> fidelity. About 4
# minutes on an H100; stopped at 520 s whatever happens (the JSON is saved after every
# section, throughput-partial.json until the end), so one `run` call of 600 s is enough.
status=0
# shellcheck disable=SC2086
timeout --signal=INT 520 "$PY" -m benchmarks.throughput --out "$OUT_DIR" --device "$DEVICE" \
  --only model,encoder,prep,indexing,naive,fidelity --indexing-mode inprocess \
  --photos "$PHOTOS" --images 34 ${BENCH_ARGS:-} || status=$?

if [[ -n "${OUT:-}" ]]; then
  mkdir -p "$OUT"
  for f in throughput-latest.json throughput-partial.json; do
    if [[ -f "$OUT_DIR/$f" ]]; then cp "$OUT_DIR/$f" "$OUT/gpu-$f"; fi
  done
  cp "$OUT_DIR"/work/logs/encoder.log "$OUT/encoder.log" 2>/dev/null || true
fi
exit "$status"
