# shellcheck shell=bash
# Shared by launch/local.sh and launch/cluster.sh (sourced, not run).
# Finds python and mpiexec, tells MPICH from Open MPI, and builds the relief-mpi command.

die() { echo "$(basename "$0"): error: $*" >&2; exit 2; }
note() { echo "$(basename "$0"): $*" >&2; }

# PYTHON: the interpreter that has relief_mpi and mpi4py (default: python3/python on PATH).
find_python() {
    PYTHON=${RELIEF_MPI_PYTHON:-}
    if [[ -z "$PYTHON" ]]; then
        PYTHON=$(command -v python3 || command -v python || true)
    fi
    [[ -n "$PYTHON" ]] || die "no python3 on PATH; activate the venv that has relief-mpi (or set RELIEF_MPI_PYTHON)"
    # Absolute path, so remote hosts run the same interpreter path (the venv must exist there too).
    PYTHON=$(command -v "$PYTHON" || true)
    [[ -n "$PYTHON" ]] || die "RELIEF_MPI_PYTHON=${RELIEF_MPI_PYTHON:-} is not an executable"
    "$PYTHON" -c "import relief_mpi" 2>/dev/null \
        || die "$PYTHON cannot import relief_mpi; activate its venv or pip install -e . (or set RELIEF_MPI_PYTHON)"
}

# MPIEXEC: the launcher next to $PYTHON (a venv's pip MPICH) first, then PATH; MPI_FLAVOR: mpich|openmpi.
find_mpiexec() {
    MPIEXEC=${MPIEXEC:-}
    if [[ -z "$MPIEXEC" ]]; then
        local here
        here="$(dirname "$PYTHON")/mpiexec"
        if [[ -x "$here" ]]; then MPIEXEC=$here; else MPIEXEC=$(command -v mpiexec || command -v mpirun || true); fi
    fi
    [[ -n "$MPIEXEC" ]] || die "no mpiexec found; pip install mpich (or install Open MPI / MPICH), or set MPIEXEC"
    command -v "$MPIEXEC" >/dev/null 2>&1 || die "MPIEXEC=$MPIEXEC is not an executable"
    local version
    version=$("$MPIEXEC" --version 2>&1 || true)
    if grep -qE "Open MPI|OpenRTE|open-mpi" <<<"$version"; then
        MPI_FLAVOR=openmpi
    elif grep -qiE "HYDRA|MPICH|Intel\(R\) MPI" <<<"$version"; then
        MPI_FLAVOR=mpich
    else
        die "cannot tell which MPI $MPIEXEC is (\`$MPIEXEC --version\` says: $(head -n1 <<<"$version")); MPICH and Open MPI are supported"
    fi
}

# Open MPI refuses to run as root unless told; MPICH needs nothing.
openmpi_root_env() {
    if [[ "$MPI_FLAVOR" == openmpi && "$(id -u)" == 0 ]]; then
        export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
    fi
}

# RELIEF_ARGS: `train ARGS` unless ARGS start with a subcommand (hosts check, bench, ...).
relief_args() {
    # shellcheck disable=SC2034  # RELIEF_ARGS is read by the sourcing script
    if [[ $# -gt 0 && "$1" != -* ]]; then RELIEF_ARGS=("$@"); else RELIEF_ARGS=(train "$@"); fi
}

has_option() {  # has_option --fleet ARGS...: is --fleet (or --fleet=...) among ARGS?
    local opt=$1 a
    shift
    for a in "$@"; do
        [[ "$a" == "$opt" || "$a" == "$opt="* ]] && return 0
    done
    return 1
}

show_and_run() {  # print the command, then run it (or only print it with DRY_RUN=1)
    printf '+' >&2
    printf ' %q' "$@" >&2
    printf '\n' >&2
    if [[ "${DRY_RUN:-0}" == 1 ]]; then return 0; fi
    "$@"
}
