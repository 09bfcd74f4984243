#!/usr/bin/env bash
# One host, N ranks: rank 0 the server, ranks 1..N-1 emulated devices.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: launch/local.sh [--dry-run] [--mps] N [train options...]    (both may also follow N)
       launch/local.sh [--dry-run] [--mps] N SUBCOMMAND [options...]     e.g. N hosts check

Runs `relief-mpi train` (or the given subcommand) on this host with N MPI ranks:
rank 0 is the server, ranks 1..N-1 emulate the devices of the fleet (default: three tiers).
More ranks than cores is fine: waiting ranks yield the CPU.

Detects the MPI from `mpiexec --version`:
  MPICH (pip install mpich): mpiexec -n N ...            (nothing special)
  Open MPI: mpiexec --oversubscribe --bind-to none -n N ...
            and, as root, OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

--mps: start the NVIDIA MPS control daemon first (launch/mps.sh start) and stop it after the job
if this script started it, so GPU ranks get their profile's gpu_share from MPS (docs/devices.md#gpu).

Environment:
  RELIEF_MPI_PYTHON  interpreter with relief_mpi (default: python3 on PATH)
  MPIEXEC            launcher (default: the mpiexec beside that python, then PATH)
  OMP_NUM_THREADS    default 1 (each client sets its torch threads from its profile)

Examples:
  launch/local.sh 5 --rounds 2
  launch/local.sh 9 --strategy relief --rounds 20 --clock real
  launch/local.sh 5 hosts check
EOF
}

# shellcheck source=launch/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

DRY_RUN=0  # read by show_and_run
MPS=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --dry-run) DRY_RUN=1; shift ;;
        --mps) MPS=1; shift ;;
        *) break ;;
    esac
done
[[ $# -ge 1 ]] || { usage >&2; exit 2; }
N=$1
shift
# --dry-run and --mps are this script's options wherever they stand (`local.sh 5 --dry-run` too): never passed on.
args=()
for a in "$@"; do
    if [[ "$a" == --dry-run ]]; then DRY_RUN=1; elif [[ "$a" == --mps ]]; then MPS=1; else args+=("$a"); fi
done
set -- ${args[@]+"${args[@]}"}
[[ "$N" =~ ^[0-9]+$ ]] || die "N must be the number of MPI ranks (a whole number), got '$N'; see --help"
(( N >= 2 )) || die "N must be at least 2 (1 server + at least 1 client), got $N"

find_python
find_mpiexec
openmpi_root_env
relief_args "$@"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} PYTHONUNBUFFERED=1

flags=()
if [[ "$MPI_FLAVOR" == openmpi ]]; then
    flags=(--oversubscribe --bind-to none)
fi
if [[ $MPS == 1 ]]; then
    MPS_SH="$(dirname "${BASH_SOURCE[0]}")/mps.sh"
    dry=(); [[ $DRY_RUN == 1 ]] && dry=(--dry-run)
    if [[ $DRY_RUN == 1 ]] || ! "$MPS_SH" status >/dev/null; then
        "$MPS_SH" start ${dry[@]+"${dry[@]}"} >&2
        trap '"$MPS_SH" stop ${dry[@]+"${dry[@]}"} >&2' EXIT  # only the daemon this script started
    fi
fi
show_and_run "$MPIEXEC" ${flags[@]+"${flags[@]}"} -n "$N" "$PYTHON" -m relief_mpi "${RELIEF_ARGS[@]}"
