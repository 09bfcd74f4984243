#!/usr/bin/env bash
# Several hosts from a hostfile: rank 0 (the server, which writes the log) on the first host.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: launch/cluster.sh HOSTFILE [launcher options] [--] [train options...]
       launch/cluster.sh HOSTFILE [launcher options] [--] hosts check [options...]

Runs `relief-mpi train` (or a subcommand) on the hosts of HOSTFILE, in MPICH (host:N) or
Open MPI (host slots=N) syntax; the file is validated and converted to the syntax of the MPI
found. Ranks fill the hosts in file order, so rank 0 (the server) runs on the first host and
writes the log there. Every host needs the same venv path (see docs/cluster.md).

Launcher options (before the train options):
  -n N              ranks to start (default: the hostfile's total slots)
  --fleet FILE      fleet keyed by host name (default: HOSTFILE with its extension replaced by
                    .fleet.toml, if that file exists, else the default three-tier fleet)
  --profiles DIR    extra device profiles (default: hostfiles/profiles beside HOSTFILE, if any)
  --iface IF        network interface the ranks use (same name on every host): MPICH -iface,
                    UCX_NET_DEVICES, FI_TCP_IFACE; Open MPI btl/oob_tcp_if_include
  --dry-run         print the mpiexec command, do not run it

Environment:
  RELIEF_MPI_PYTHON  interpreter (absolute path, same on every host; default: python3 on PATH)
  MPIEXEC            launcher (default: the mpiexec beside that python, then PATH)
  MPIEXEC_ARGS       extra launcher arguments, word-split (e.g. "-launcher ssh -launcher-exec X")

Examples:
  launch/cluster.sh hostfiles/workstation-2orin.mpich hosts check
  launch/cluster.sh hostfiles/workstation-2orin.mpich --strategy relief --rounds 50 --clock real
  launch/cluster.sh hostfiles/lab-jetsons.openmpi -n 24 --iface eth0 --strategy relief
EOF
}

# shellcheck source=launch/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

[[ $# -ge 1 ]] || { usage >&2; exit 2; }
case "$1" in -h|--help) usage; exit 0 ;; esac
HOSTFILE=$1
shift
[[ -f "$HOSTFILE" ]] || die "hostfile $HOSTFILE: no such file"

DRY_RUN=0 N="" FLEET="" PROFILES="" IFACE=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --dry-run) DRY_RUN=1; shift ;;
        -n) [[ $# -ge 2 ]] || die "-n needs a number"; N=$2; shift 2 ;;
        --fleet) [[ $# -ge 2 ]] || die "--fleet needs a file"; FLEET=$2; shift 2 ;;
        --profiles) [[ $# -ge 2 ]] || die "--profiles needs a folder"; PROFILES=$2; shift 2 ;;
        --iface) [[ $# -ge 2 ]] || die "--iface needs an interface name"; IFACE=$2; shift 2 ;;
        --) shift; break ;;
        *) break ;;
    esac
done

find_python
find_mpiexec
openmpi_root_env

# Validate and convert the hostfile (errors name the line), count the slots, find rank 0's host.
tmp=$(mktemp "${TMPDIR:-/tmp}/relief-hosts.XXXXXX")
trap 'rm -f "$tmp"' EXIT
"$PYTHON" -m relief_mpi hosts list "$HOSTFILE" --as "$MPI_FLAVOR" >"$tmp" || exit 2
slots=$("$PYTHON" -m relief_mpi hosts list "$HOSTFILE" --slots)
first=$("$PYTHON" -m relief_mpi hosts list "$HOSTFILE" --first)
if [[ -z "$N" ]]; then N=$slots; fi
[[ "$N" =~ ^[0-9]+$ ]] || die "-n must be a whole number, got '$N'"
(( N >= 2 )) || die "need at least 2 ranks (1 server + 1 client), got $N"
(( N <= slots )) || die "-n $N is more than the $slots slot(s) in $HOSTFILE; add slots or lower -n"

case "$first" in
    localhost|127.*|"$(hostname)"|"$(hostname -s 2>/dev/null || hostname)") ;;
    *) if ! (hostname -I 2>/dev/null || true) | tr ' ' '\n' | grep -qxF "$first"; then
           note "rank 0 (the server) runs on $first, not on this host ($(hostname)): the log is written there"
       fi ;;
esac

relief_args "$@"
sub=${RELIEF_ARGS[0]}
if [[ "$sub" == hosts && "${RELIEF_ARGS[1]:-}" == check ]]; then
    # hosts check also validates the hostfile against the world size
    RELIEF_ARGS=(hosts check "$HOSTFILE" "${RELIEF_ARGS[@]:2}")
    sub=check
fi
if [[ "$sub" == train || "$sub" == check ]]; then
    base=${HOSTFILE%.*}
    if [[ -z "$FLEET" && -f "$base.fleet.toml" ]] && ! has_option --fleet "${RELIEF_ARGS[@]}"; then
        FLEET="$base.fleet.toml"
    fi
    if [[ -z "$PROFILES" && -d "$(dirname "$HOSTFILE")/profiles" ]] && ! has_option --profiles "${RELIEF_ARGS[@]}"; then
        PROFILES="$(dirname "$HOSTFILE")/profiles"
    fi
    [[ -z "$FLEET" ]] || { [[ -f "$FLEET" ]] || die "--fleet $FLEET: no such file"; RELIEF_ARGS+=(--fleet "$FLEET"); }
    [[ -z "$PROFILES" ]] || { [[ -d "$PROFILES" ]] || die "--profiles $PROFILES: not a folder"; RELIEF_ARGS+=(--profiles "$PROFILES"); }
fi

export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} PYTHONUNBUFFERED=1
flags=()
if [[ "$MPI_FLAVOR" == openmpi ]]; then
    flags=(--hostfile "$tmp" --map-by slot --bind-to none -x OMP_NUM_THREADS -x PYTHONUNBUFFERED)
    [[ -z "$IFACE" ]] || flags+=(--mca btl_tcp_if_include "$IFACE" --mca oob_tcp_if_include "$IFACE")
else
    flags=(-f "$tmp")
    [[ -z "$IFACE" ]] || flags+=(-iface "$IFACE" -genv UCX_NET_DEVICES "$IFACE" -genv FI_TCP_IFACE "$IFACE")
fi
extra=()
if [[ -n "${MPIEXEC_ARGS:-}" ]]; then read -r -a extra <<<"$MPIEXEC_ARGS"; fi
# not exec: the EXIT trap removes the converted hostfile after the job
show_and_run "$MPIEXEC" "${flags[@]}" ${extra[@]+"${extra[@]}"} -n "$N" "$PYTHON" -m relief_mpi "${RELIEF_ARGS[@]}"
