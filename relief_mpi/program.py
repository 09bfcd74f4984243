"""The program's entry (`relief-mpi`, `python -m relief_mpi`), light on purpose.

Before handing on to the click commands (relief_mpi.cli.entry) rank 0 of `train` prints its first
start-up line (issue 22, case 18): at -n 33 on a 2-core host every rank spent 27 s importing torch
before rank 0 said a word, and even the command line's own imports (click, numpy: 0.3 s of CPU)
take seconds when 33 processes share 2 cores. So nothing but the standard library and
relief_mpi.launcher is loaded before the line.
"""

from __future__ import annotations

import sys

from relief_mpi import launcher

__all__ = ["entry"]


def entry() -> None:
    line = launcher.early_line(sys.argv[1:])
    if line is not None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
        launcher.mark_said()
    from relief_mpi.cli import entry as commands  # click, numpy and the commands: after the line

    commands()
