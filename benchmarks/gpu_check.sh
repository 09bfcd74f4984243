#!/usr/bin/env bash
# The prepared GPU check of issue 24: one command on a GPU machine (reference: one H100 or H200 and
# 16 cores, under 8 minutes), one PASS/FAIL line per check with its figures, a timeout on every
# step, and everything it started stopped and removed at the end.
#
#     bash benchmarks/gpu_check.sh                  # on the GPU machine, from the checkout's root
#     bash benchmarks/gpu_check.sh --cpu-dry-run    # here: the same steps with --device cpu, tiny sizes
#
# The GPU machine reaches no package registry. Its python3 (3.12) already holds torch with CUDA,
# mpi4py, numpy, h5py, click, psutil, matplotlib and nvidia-ml-py, so this script installs the
# project from the working tree without dependencies (pip install --no-deps -e .). It checks for an
# MPI runtime (`mpiexec --version`, and that mpi4py finds it); where there is none it installs an
# MPICH wheel from benchmarks/wheels/ (git-ignored), fetched beforehand on a machine with a
# registry, from the checkout's root:
#
#     pip download mpich --only-binary=:all: --no-deps --python-version 3.12 \
#         --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d benchmarks/wheels/
#
# It gets only the checkout's own files there, not ../shared: the SPAR steps take the data from
# benchmarks/data/spar-watch-10subj/ (git-ignored), copied in beforehand:
#
#     mkdir -p benchmarks/data && cp -r ../shared/data/spar-watch-10subj benchmarks/data/
#
# and are skipped, saying so, without it. Checks (docs/bench.md, "GPU check"):
#   1. hosts check on 5 ranks --device cuda: every rank on a GPU, its share method
#   2. relief, 3 rounds, 11 ranks on CUDA without MPS: per-tier step times against the tiers'
#      gpu_share (1, 0.5, 0.25; the clock charges measured x 1/share), peak GPU memory per rank
#   3. the same with MPS (launch/mps.sh start|stop): the GPU gives the share, charged = measured
#   4. CPU vs CUDA, 2 rounds of the published relief preset: same S_n and k_n, final macro-F1 within
#      0.01; and in-process vs MPI on CUDA: every logged number identical
#   5. the SPAR paper-protocol quick bench (fedavg, relief) on CUDA with its wall time, beside the
#      same on this machine's CPU cores
#   6. benchmarks/gpu_step.py: one client's training step (paper model, batch 32) against ten
#      clients stacked as one grouped model (torch.func.vmap) and a plain matmul, on CUDA and CPU
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
cd "$ROOT" || exit 2
DRY=0
[[ "${1:-}" == --cpu-dry-run || "${GPU_CHECK_CPU_DRY_RUN:-0}" == 1 ]] && DRY=1
PY=${PYTHON:-python3}
command -v "$PY" >/dev/null || PY=python
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")
FAILS=0
POLLER=""
MPS_STARTED=0
T0=$(date +%s)

cleanup() {
    [[ -n "$POLLER" ]] && kill "$POLLER" 2>/dev/null
    [[ $MPS_STARTED == 1 ]] && timeout 30 "$ROOT/launch/mps.sh" stop >/dev/null 2>&1
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { echo "gpu_check: $*" >&2; }
result() { echo "$@"; [[ "$1" == FAIL ]] && FAILS=$((FAILS + 1)); return 0; }
step() {  # step SECONDS NAME CMD...: run with a timeout, output to $WORK/NAME.out; rc in $RC
    local limit=$1 name=$2
    shift 2
    say "$name (timeout ${limit}s)"
    timeout --kill-after=10 "$limit" "$@" >"$WORK/$name.out" 2>&1
    RC=$?
    if [[ $RC == 124 || $RC == 137 ]]; then
        result FAIL "$name: timed out after ${limit}s; last lines: $(tail -n 3 "$WORK/$name.out" | tr '\n' ' ')"
    elif [[ $RC != 0 ]]; then
        result FAIL "$name: exit $RC; last lines: $(tail -n 3 "$WORK/$name.out" | tr '\n' ' ')"
    fi
    return $RC
}
judge() { "$PY" "$HERE/gpu_check_eval.py" "$@"; [[ $? == 0 ]] || FAILS=$((FAILS + 1)); }
seconds() { echo $(( $(date +%s) - $1 )); }

if [[ $DRY == 1 ]]; then
    DEV=cpu BIG=5 SMALL=3 CLIENTS=4 TINY=(--local-epochs 1 --encoder-channels 8,16) MICRO=(--steps 2 --warmup 1 --repeat 1 --encoder-channels 8,16)
    say "CPU dry run: --device cpu, $BIG ranks for the 11-rank jobs, tiny model; MPS and nvidia-smi only shown"
else
    DEV=cuda BIG=11 SMALL=5 CLIENTS=10 TINY=(--local-epochs 1) MICRO=()
fi
DEVS=("$DEV")  # the device, then (on a GPU machine) its CPU cores beside it
[[ $DRY == 0 ]] && DEVS+=(cpu)
export OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1 RELIEF_MPI_AFFINITY=${RELIEF_MPI_AFFINITY:-}

# ---- 0. environment: torch, the project, MPI
step 60 torch "$PY" -c "import torch; print(torch.__version__, torch.cuda.is_available(), torch.cuda.device_count())"
if [[ $DRY == 0 ]] && ! grep -q " True " "$WORK/torch.out"; then
    result FAIL "torch: no CUDA device visible ($(cat "$WORK/torch.out")); nothing to check"; exit 1
fi
if [[ $DRY == 1 ]]; then  # a dry run installs nothing (the lab's venv is shared): the tree itself
    say "would run: $PY -m pip install --no-deps --no-build-isolation -q -e .  (dry run: PYTHONPATH=$ROOT)"
    export PYTHONPATH=$ROOT
else
    step 180 install "$PY" -m pip install --no-deps --no-build-isolation -q -e . \
        || { say "pip install -e . failed: running from the tree (PYTHONPATH=$ROOT)"; export PYTHONPATH=$ROOT; }
fi
MPIEXEC=$(command -v mpiexec || true)
if ! { [[ -n "$MPIEXEC" ]] && timeout 30 "$MPIEXEC" --version >/dev/null 2>&1 \
        && timeout 60 "$PY" -c "from mpi4py import MPI; MPI.Get_library_version()" >/dev/null 2>&1; }; then
    WHEEL=$(ls "$HERE"/wheels/mpich-*.whl 2>/dev/null | head -n1)
    [[ -n "$WHEEL" ]] || { result FAIL "mpi: no MPI runtime and no MPICH wheel in benchmarks/wheels/ (see the header)"; exit 1; }
    step 180 mpich-wheel "$PY" -m pip install --no-deps --no-index -q "$WHEEL" || exit 1
    MPIEXEC="$(dirname "$(command -v "$PY")")/mpiexec"
    [[ -x "$MPIEXEC" ]] || MPIEXEC=$(command -v mpiexec)
fi
FLAGS=()
"$MPIEXEC" --version 2>&1 | grep -qE "Open MPI|OpenRTE" && FLAGS=(--oversubscribe --bind-to none)
MPI=("$MPIEXEC" ${FLAGS[@]+"${FLAGS[@]}"})
result PASS "mpi: $MPIEXEC, $("$MPIEXEC" --version 2>&1 | grep -m1 -iE "version|Open MPI" | tr -s ' ')"
RELIEF=("$PY" -m relief_mpi)
SPAR="$HERE/data/spar-watch-10subj"

# ---- 1. hosts check
if step 120 hosts "${MPI[@]}" -n "$SMALL" "${RELIEF[@]}" hosts check --device "$DEV"; then
    judge hosts "$WORK/hosts.out" "$DEV"
fi
cat "$WORK/hosts.out" | grep -E "^rank [0-9]" | head -n 6 >&2

# ---- 2./3. relief on 11 ranks with the tiers' shares, without and with MPS
mkdir -p "$WORK/profiles"
for s in 1 0.5 0.25; do
    cat >"$WORK/profiles/share-$s.toml" <<EOF
name = "share-$s"
flops = "native"
threads = 1
memory_mb = 8192
gpu_share = $s
p_busy_w = 50
p_idle_w = 10
uplink_mbps = 1000
downlink_mbps = 1000
latency_ms = 1
energy_per_bit_nj = 1
EOF
done
cat >"$WORK/shares.fleet.toml" <<'EOF'
[[tier]]
name = "whole"
profile = "share-1"
sensors = "all"
fraction = 0.3
[[tier]]
name = "half"
profile = "share-0.5"
sensors = "all"
fraction = 0.3
[[tier]]
name = "quarter"
profile = "share-0.25"
sensors = "all"
fraction = 0.4
EOF
JOB=(train --quiet --strategy relief --rounds 3 "${TINY[@]}" --fleet "$WORK/shares.fleet.toml" --profiles "$WORK/profiles"
     --device "$DEV")
if [[ $DRY == 0 ]] && command -v nvidia-smi >/dev/null; then
    (while true; do nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader,nounits 2>/dev/null \
        | sed 's/$/ MiB/'; sleep 0.5; done >"$WORK/gpumem.csv") &
    POLLER=$!
fi
timeout 30 "$ROOT/launch/mps.sh" stop >/dev/null 2>&1  # a daemon left by someone else would make this "with MPS"
t=$(date +%s)
if step 240 relief-no-mps "${MPI[@]}" -n "$BIG" "${RELIEF[@]}" "${JOB[@]}" --out "$WORK/nomps.h5"; then
    judge tiers "$WORK/nomps.h5"
    say "relief 3 rounds on $BIG ranks without MPS: $(seconds "$t") s wall"
fi
if [[ -n "$POLLER" ]]; then
    kill "$POLLER" 2>/dev/null; POLLER=""
    judge memory "$WORK/gpumem.csv"
fi
if [[ $DRY == 1 ]]; then
    "$ROOT/launch/mps.sh" start --dry-run >&2
    result PASS "relief with MPS: not run on the CPU (launch/mps.sh start/stop shown above)"
    "$ROOT/launch/mps.sh" stop --dry-run >&2
elif step 60 mps-start "$ROOT/launch/mps.sh" start; then
    MPS_STARTED=1
    t=$(date +%s)
    if step 240 relief-mps "${MPI[@]}" -n "$BIG" "${RELIEF[@]}" "${JOB[@]}" --out "$WORK/mps.h5"; then
        judge tiers "$WORK/mps.h5" mps
        say "relief 3 rounds on $BIG ranks with MPS: $(seconds "$t") s wall"
    fi
    step 60 mps-stop "$ROOT/launch/mps.sh" stop && MPS_STARTED=0
fi

# ---- 4. CPU vs CUDA, and in-process vs MPI on CUDA
if [[ -d "$SPAR" ]]; then
    DATA=(--dataset spar --data-dir "$SPAR" --protocol paper --rounds 2 --local-epochs 1); N=10; NR=11
else
    say "no $SPAR: CPU vs CUDA on the synthetic data (copy SPAR in for the published protocol; see the header)"
    DATA=(--rounds 2 --local-epochs 1); N=$CLIENTS; NR=$((CLIENTS + 1))
fi
[[ $DRY == 1 ]] && DATA+=(--encoder-channels 8,16) && NR=$SMALL
SAME=(train --quiet --strategy relief --seed 0 "${DATA[@]}")
step 300 numbers-cpu "${RELIEF[@]}" "${SAME[@]}" --transport inprocess --clients "$N" --device cpu --out "$WORK/cpu.h5" \
    && step 300 numbers-cuda "${RELIEF[@]}" "${SAME[@]}" --transport inprocess --clients "$N" --device "$DEV" \
        --out "$WORK/cuda.h5" \
    && judge cpu-vs-cuda "$WORK/cpu.h5" "$WORK/cuda.h5"
step 300 numbers-cuda-mpi "${MPI[@]}" -n "$NR" "${RELIEF[@]}" "${SAME[@]}" --clients "$N" --device "$DEV" --out "$WORK/cuda-mpi.h5" \
    && [[ -f "$WORK/cuda.h5" ]] && judge same "$WORK/cuda.h5" "$WORK/cuda-mpi.h5" "in-process vs MPI on $DEV (deterministic)"

# ---- 5. the SPAR paper-protocol quick bench, CUDA beside the CPU cores
if [[ -d "$SPAR" ]]; then
    BENCH=(bench --protocol paper --dataset spar --data-dir "$SPAR" --budget quick --strategies fedavg,relief
           --overwrite)
    [[ $DRY == 1 ]] && BENCH+=(--rounds 2 --encoder-channels 8,16)
    for d in "${DEVS[@]}"; do
        t=$(date +%s)
        if step 300 "bench-$d" "${MPI[@]}" -n 11 "${RELIEF[@]}" "${BENCH[@]}" --device "$d" --out-dir "$WORK/bench-$d"; then
            result PASS "SPAR paper quick bench (fedavg, relief) --device $d: $(seconds "$t") s wall, 11 ranks;" \
                "$(grep -E "^\| (fedavg|relief) " "$WORK/bench-$d"/*.md 2>/dev/null | head -n 2 | cut -c1-160 | tr '\n' ' ')"
        fi
    done
else
    result PASS "SPAR quick bench: skipped, no $SPAR (copy it in; see the header)"
fi

# ---- 6. the micro-benchmark
for d in "${DEVS[@]}"; do
    threads=()
    [[ $d == cpu ]] && threads=(--threads "$(nproc)")
    if step 180 "step-$d" "$PY" "$HERE/gpu_step.py" --device "$d" ${threads[@]+"${threads[@]}"} ${MICRO[@]+"${MICRO[@]}"} \
            --json "$WORK/step-$d.json"; then
        result PASS "training step on $d: $(tail -n 4 "$WORK/step-$d.out" | tr '\n' ';' | tr -s ' ')"
    fi
done

echo "gpu_check: $FAILS check(s) failed, $(seconds "$T0") s in all ($([[ $DRY == 1 ]] && echo "CPU dry run" || echo "$DEV"))"
[[ $FAILS == 0 ]]
