#!/usr/bin/env bash
# Start, stop or query the NVIDIA MPS control daemon on this host (docs/devices.md#gpu).
set -euo pipefail

usage() {
    cat <<'USAGE'
usage: launch/mps.sh start|stop|status [--dry-run]

With an MPS control daemon running, every client rank on a GPU of this host sets
CUDA_MPS_ACTIVE_THREAD_PERCENTAGE = 100 x its profile's gpu_share before CUDA starts, so the GPU
itself gives it that share of its SMs (relief_mpi/device/gpu.py). Without one, the rank's clock
stretches each measured step by 1 / gpu_share instead. `relief-mpi hosts check` and the log's
per-rank throttle record say which (share mps or share clock, with the reason).

  start   nvidia-cuda-mps-control -d (nothing if a daemon already answers on the pipe)
  stop    echo quit | nvidia-cuda-mps-control, then wait (20 s at most) for the pipe to go
  status  "running (PIPE)" or "not running (PIPE)"; exit 0 / 1

Environment (the ranks read the same variable, so set it for both or neither):
  CUDA_MPS_PIPE_DIRECTORY  default /tmp/nvidia-mps
  CUDA_MPS_LOG_DIRECTORY   default /tmp/nvidia-mps-log
Run it as the user who runs the job (MPS clients connect to their own user's daemon). The GPU's
compute mode is left as it is (EXCLUSIVE_PROCESS, set by root with nvidia-smi -c, is optional).
USAGE
}

die() { echo "mps.sh: error: $*" >&2; exit 2; }
PIPE=${CUDA_MPS_PIPE_DIRECTORY:-/tmp/nvidia-mps}
LOGS=${CUDA_MPS_LOG_DIRECTORY:-/tmp/nvidia-mps-log}
export CUDA_MPS_PIPE_DIRECTORY=$PIPE CUDA_MPS_LOG_DIRECTORY=$LOGS
DRY_RUN=0
cmd=${1:-}
[[ "${2:-}" == --dry-run ]] && DRY_RUN=1
running() { [[ -p "$PIPE/control" || -e "$PIPE/control" ]]; }
run() { printf '+'; printf ' %q' "$@"; printf '\n'; [[ $DRY_RUN == 1 ]] || "$@"; }

case "$cmd" in
    -h|--help) usage; exit 0 ;;
    start)
        if running; then echo "mps.sh: already running ($PIPE)"; exit 0; fi
        [[ $DRY_RUN == 1 ]] || command -v nvidia-cuda-mps-control >/dev/null \
            || die "no nvidia-cuda-mps-control on PATH (it comes with the NVIDIA driver); ranks will use share clock"
        run mkdir -p "$PIPE" "$LOGS"
        run timeout 20 nvidia-cuda-mps-control -d
        [[ $DRY_RUN == 1 ]] || { sleep 1; running || die "the daemon did not start; see $LOGS/control.log"; }
        echo "mps.sh: started ($PIPE)" ;;
    stop)
        if ! running && [[ $DRY_RUN == 0 ]]; then echo "mps.sh: not running ($PIPE)"; exit 0; fi
        printf '+ echo quit | timeout 20 nvidia-cuda-mps-control\n'
        if [[ $DRY_RUN == 0 ]]; then
            echo quit | timeout 20 nvidia-cuda-mps-control || true
            for _ in $(seq 20); do running || break; sleep 1; done
            running && die "the daemon still answers on $PIPE after 20 s"
        fi
        echo "mps.sh: stopped ($PIPE)" ;;
    status)
        if running; then echo "running ($PIPE)"; exit 0; fi
        echo "not running ($PIPE)"; exit 1 ;;
    *) usage >&2; exit 2 ;;
esac
