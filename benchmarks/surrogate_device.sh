#!/usr/bin/env bash
# The surrogate's data and training on a lent GPU machine (16 CPU cores + one GPU), in three stages run in the
# background (setsid) so that successive `device` calls can poll it:
#   A  Monte Carlo training set (make-dataset, all CPU cores) until the deadline A_MIN;
#   B  GPU training of the shipped layout on it, while the CPU makes the evaluation set (other seed, 1000 e/px);
#   C  representation ablation (small budget each) and GPU timings.
# Usage: bash benchmarks/surrogate_device.sh start|wait STAGE   (wait copies that stage's files to $OUT)
set -u
W=${W:-/tmp/sur}
export PYTHONPATH=$PWD/src:/tmp/site PYTHONUNBUFFERED=1 NUMBA_CACHE_DIR=/tmp/numba
: "${A_SEC:=420}" "${B_MIN:=8}" "${ABL_MIN:=1}" "${TRAIN_SEED:=0}" "${EVAL_SEED:=2}" "${DEV:=cuda}" "${EVAL_E:=1000}"
: "${TRAIN_E:=50}" "${EVAL_SIZE:=128}"
cli() { python3 -m napari_sparse_sem "$@"; }

stages() {
  mkdir -p $W && cd "$1"
  date +%s >$W/t0
  timeout $A_SEC python3 -m napari_sparse_sem surrogate make-dataset --out $W/train.zarr \
    --geometries 72 --held-out 8 --cuts 2 --spacing 12 --size 128 --electrons $TRAIN_E --seed $TRAIN_SEED >$W/a.log 2>&1
  touch $W/A.done
  (NUMBA_NUM_THREADS=$(( $(nproc) > 4 ? $(nproc) - 2 : 1 )) python3 -m napari_sparse_sem surrogate make-dataset \
     --out $W/eval.zarr --geometries 4 --held-out 4 --cuts 1 --size $EVAL_SIZE --electrons $EVAL_E --seed $EVAL_SEED >$W/eval.log 2>&1; touch $W/eval.done) &
  cli surrogate train $W/train.zarr --out $W/surrogate_carbon.safetensors --layout resnet34-half --minutes $B_MIN \
    --batch 32 --crop 96 --device $DEV >$W/b.log 2>&1
  touch $W/B.done
  for rep in ehf+normals ehf heightfield; do
    cli surrogate train $W/train.zarr --out $W/abl_${rep/+/_}.safetensors --layout resnet34-half \
      --representation $rep --minutes $ABL_MIN --batch 32 --crop 96 --device $DEV >>$W/c.log 2>&1
  done
  python3 -m benchmarks.surrogate_speed --device $DEV --repeats 10 >$W/speed_$DEV.md 2>>$W/c.log
  OMP_NUM_THREADS=16 python3 -m benchmarks.surrogate_speed --device cpu --repeats 3 >$W/speed_cpu16.md 2>>$W/c.log
  wait
  touch $W/C.done
}

case "$1" in
  start)
    [ -d .whl ] && python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    nvidia-smi --query-gpu=name,memory.total --format=csv; nproc; rm -rf $W
    setsid bash "$0" stages "$PWD" </dev/null >/tmp/sur_stages.log 2>&1 &
    ;;
  stages) stages "$2" ;;
  wait)
    while [ ! -e $W/$2.done ]; do sleep 5; done
    cd $W
    case "$2" in
      A) tar cf - train.zarr | split -b 15M - "$OUT/train.zarr.tar.part" ;;
      B) cp surrogate_carbon.safetensors surrogate_carbon.json surrogate_carbon.curves.* b.log "$OUT/" 
         while [ ! -e $W/eval.done ] && [ $(( $(date +%s) - $(cat t0) )) -lt $(( A_SEC + (B_MIN + 4) * 60 )) ]; do sleep 5; done
         tar cf "$OUT/eval.zarr.tar" eval.zarr ;;
      C) tar cf "$OUT/c.tar" abl_*.json speed_*.md c.log eval.log
         [ -e eval.done ] && [ ! -e "$OUT/eval.zarr.tar" ] && tar cf "$OUT/eval.zarr.tar" eval.zarr ;;
    esac
    ls -la "$OUT"; tail -c 1500 $W/*.log | tr '\r' '\n' | tail -40
    ;;
esac
