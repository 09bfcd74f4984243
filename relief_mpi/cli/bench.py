"""`relief-mpi bench`: every strategy x seed on the same data and fleet, one table, figures.

`--protocol paper` writes the paper's table (bench/paper.py) with the published presets, at the
paper's budget (R = 200, E = 5) or `--budget quick`; `--compare corrected` runs the published
presets beside our corrections of them. Also `relief-mpi bench --system`: the emulator's own
performance figures (framework overhead per round, block-exchange throughput against raw mpi4py,
peak memory per rank).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from click.core import ParameterSource

from relief_mpi.bounds import check_clients_fit
from relief_mpi.cli.errors import abort_job
from relief_mpi.cli.options import build_config, common_options
from relief_mpi.cli.settings import register_command
from relief_mpi.cli.train import check_writable
from relief_mpi.errors import ReliefError

if TYPE_CHECKING:
    from relief_mpi.bench.runner import BenchPlan

__all__ = [
    "FULL", "FULL_EXTRAS", "PAPER_EXTRAS", "PAPER_STRATEGIES", "QUICK", "QUICK_SEEDS", "command",
    "corrected_variants"
]


# --protocol paper: the published presets and, when registered, our controls and (full budget)
# fedprox, our SGD baseline. heterofl scales the small model's widths: not the paper model's.
PAPER_STRATEGIES = ("fedavg", "cohort-fedavg", "relief-acc", "relief", "ablation-v2", "ablation-v3")
PAPER_EXTRAS = ("fedavg-fair", "fedavg-deadline", "skip-absent", "fixed-order")
FULL_EXTRAS = ("fedprox",)
# --budget quick under --protocol paper: rounds, local epochs and seeds that fit a 2-core host in
# about 20 minutes with mpirun -n 11 on SPAR (docs/bench.md says what it measured).
QUICK = {"rounds": 16, "local_epochs": 1}
QUICK_SEEDS = "0"
FULL = {"rounds": 200, "local_epochs": 5}  # the paper's R and E (design.md section 0)


def _explicit(ctx: click.Context, name: str, files: bool = True) -> bool:
    """Given by the user: on the command line, in the environment, or (files) in a --config file."""
    sources = (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)
    return ctx.get_parameter_source(name) in sources + ((ParameterSource.DEFAULT_MAP,) if files else ())


@click.command("bench")
@common_options
@click.option("--strategies", default=None,
              help="Comma-separated strategies to compare (any of the registered ones; fedavg is the baseline of "
                   "every comparison). Default: relief,fedavg; under --protocol paper the published presets "
                   f"({','.join(PAPER_STRATEGIES)}) plus those of {','.join(PAPER_EXTRAS)} that are registered.")
@click.option("--seeds", default="0,1,2", show_default=True,
              help="Comma-separated seeds; each strategy runs every seed (same data, partition and fleet per seed). "
                   f"--budget quick: {QUICK_SEEDS} unless given.")
@click.option("--lr-grid", default=None,
              help="Comma-separated learning rates: every strategy (FedAvg included) tries each on the first seed, "
                   "scored on a validation split (the last 20% in time of each client's training windows; the "
                   "test set is never read) and keeps the best final macro-F1; every seed then runs with it. "
                   "Default: --lr, or each strategy's default lr.")
@click.option("--target-f1", type=click.FloatRange(0, 1, min_open=True), default=None,
              help="Target macro-F1 for time to target. --protocol paper: default 0.85 (the paper's), and the "
                   "tables also show our earlier target; otherwise default 95% of FedAvg's final macro-F1 on the "
                   "same seed.")
@click.option("--budget", type=click.Choice(["full", "quick"]), default="full", show_default=True,
              help="--protocol paper: full = the paper's R = 200 rounds, E = 5 local epochs (a GPU host); quick = "
                   f"{QUICK['rounds']} rounds, {QUICK['local_epochs']} local epoch, seed {QUICK_SEEDS}, no fedprox "
                   "(a 2-core host: about 20 minutes with mpirun -n 11 on SPAR). --rounds / --local-epochs / "
                   "--seeds / --strategies given explicitly win. The table header says which.")
@click.option("--compare", type=click.Choice(["corrected"]), default=None,
              help="--protocol paper: instead of --strategies, run the published presets beside our corrections "
                   "on the same data, fleet and seeds (relief and fedavg; fedavg-fair; relief with --t-star-bracket "
                   "contains-overhead; both with --cost-model flops; both on the leak-free --split time with "
                   "training-only normalisation; every correction together) and write one table of how much of "
                   "RELIEF's speedup, energy and rare-F1 gain over FedAvg remains under each, with each device "
                   "type evaluated with its own sensors.")
@click.option("--out-dir", type=click.Path(file_okay=False), default=None,
              help="Folder for the logs (<strategy>-seed<k>.h5), summary.md, summary.csv and figures "
                   "[default: bench/<dataset>].")
@click.option("--overwrite", is_flag=True, help="Replace earlier bench outputs in --out-dir.")
@click.option("--resume", is_flag=True,
              help="Keep every log in --out-dir that is complete and has exactly this run's configuration; run "
                   "only the missing ones (after a crash or a timeout).")
@click.option("--summary-only", is_flag=True, help="Run nothing: recompute the summary and figures from the logs "
                                                    "already in --out-dir.")
@click.option("--no-plots", is_flag=True, help="Write the tables only.")
@click.option("--transport", type=click.Choice(["mpi", "inprocess"]), default="mpi", show_default=True,
              help="mpi: under mpirun (rank 0 server, ranks 1..N-1 clients); inprocess: every client in this process.")
@click.option("--clients", type=click.IntRange(min=1), default=4, show_default=True,
              help="Number of clients with --transport inprocess (under MPI it is N-1). With --system: the "
                   "training job's clients, spread over the client ranks (default: one per client rank).")
@click.option("--quiet", is_flag=True, help="No per-round lines (one line per run only).")
@click.option("--system", is_flag=True,
              help="Instead of the strategy comparison: the emulator's performance on this MPI job (overhead "
                   "per round for this world size, Bcast/Reduce throughput vs raw mpi4py, peak memory per rank).")
@click.option("--max-mb", type=click.IntRange(min=0), default=64, show_default=True,
              help="--system: largest block size of the throughput sweep (from 1 KB, x4 per step); 0 = no sweep.")
@click.option("--json-out", type=click.Path(dir_okay=False), default=None,
              help="--system: also write the figures as JSON to this file.")
@click.pass_context
def command(ctx: click.Context, **kw: Any) -> None:
    """Compare strategies on one scenario: every strategy x seed in this one job, sequentially.

    \b
    Under MPI:   mpirun -n 9 relief-mpi bench --strategies relief,fedavg,fedprox --seeds 0,1,2 --out-dir D
    The paper:   mpirun -n 11 relief-mpi bench --protocol paper --dataset spar --data-dir X --budget quick
    Corrected:   mpirun -n 11 relief-mpi bench --protocol paper --dataset spar --data-dir X --compare corrected
    One process: relief-mpi bench --transport inprocess --clients 8 ...
    Emulator:    mpirun -n 5 relief-mpi bench --system --rounds 3 --local-steps 2

    Writes D/<strategy>-seed<k>.h5 (one HDF5 round log per run), D/summary.md, D/summary.csv,
    D/runs.csv and D/f1_vs_time.png, D/energy_per_tier.png, D/bytes_per_round.png. Per strategy:
    final accuracy, macro-F1 and rare-modality F1 (gain over FedAvg in pp), time to the target
    macro-F1 (emulated and wall) and speedup over FedAvg, energy and its reduction, bytes up/down;
    mean ± std over seeds. A run that never reaches the target is reported as not reached.
    Under --protocol paper, summary.md opens with the paper's table (speedup and energy reduction
    at the time to 0.85 macro-F1 in the published analytic model, critical-class rare-modality F1,
    final macro-F1, TTA rounds, MB up, % trained) beside the paper's figures, and D/paper.csv,
    D/paper.json, D/paper_f1.png, D/energy_cumulative.png, D/allocation.png.
    """
    from relief_mpi.bench.runner import BenchPlan
    from relief_mpi.strategy.registry import strategy_classes

    _refuse_single_run_options(ctx)
    if kw["system"]:
        return _system(kw, _explicit(ctx, "strategies"), kw["clients"] if _explicit(ctx, "clients") else None)
    paper = kw.get("protocol") == "paper"
    _check_paper_options(ctx, kw, paper)
    out_dir = Path(kw["out_dir"]) if kw["out_dir"] else Path("bench") / kw["dataset"]
    known = strategy_classes()
    strategies, notes = _strategy_list(kw, paper, set(known))
    if kw["summary_only"]:
        return _summary_only(out_dir, kw, strategies)
    seeds, grid = _seeds_and_lr_grid(ctx, kw, paper)
    if kw["resume"] and kw["overwrite"]:
        raise ReliefError("give --resume or --overwrite, not both")
    given = {k for k in kw if _explicit(ctx, k)}
    budget = ""
    if paper:
        kw, given, budget = _paper_budget(kw, given, len(seeds))
    variants: tuple = ()
    if kw["compare"]:
        variants, more = corrected_variants(set(known))
        notes += more
        strategies = tuple(dict.fromkeys(v.strategy for v in variants))
    cfg = build_config({**kw, "strategy": strategies[0], "seed": seeds[0]}, given)
    lrs = () if _explicit(ctx, "lr") else _default_lrs(kw, given, strategies, seeds[0])
    plan = BenchPlan(cfg, strategies, seeds, out_dir, grid, kw["target_f1"], kw["overwrite"], not kw["no_plots"],
                     kw["resume"], variants, budget, tuple(notes), lrs)
    _run_plan(plan, kw)


register_command(command)  # its option names are known to --config files of other commands


def _refuse_single_run_options(ctx: click.Context) -> None:
    """`train`'s --strategy / --seed mean one run; a bench runs lists of them (and a --config file
    written for a run may hold them, so only the command line and the environment count)."""
    for name, alt in (("strategy", "--strategies"), ("seed", "--seeds")):
        if _explicit(ctx, name, files=False):
            raise ReliefError(f"bench takes {alt}, not --{name}")


def _check_paper_options(ctx: click.Context, kw: dict[str, Any], paper: bool) -> None:
    """--budget and --compare only mean something under --protocol paper; --compare picks its own rows."""
    for name, flag in (("budget", "--budget"), ("compare", "--compare")):
        if _explicit(ctx, name) and not paper:
            raise ReliefError(f"{flag} applies to --protocol paper")
    if kw["compare"] and kw["strategies"]:
        raise ReliefError("give --compare or --strategies, not both (--compare runs its own rows)")


def _strategy_list(kw: dict[str, Any], paper: bool, known: set[str]) -> tuple[tuple[str, ...], list[str]]:
    """The strategies to compare (--strategies, the paper's presets, or relief and fedavg) and the
    notes that say which presets were left out; an unregistered one is refused before any run."""
    from relief_mpi.bench.runner import parse_list

    notes: list[str] = []
    if kw["strategies"] is not None:  # given, even empty (`--strategies ''` is an error, not the default set)
        strategies = parse_list(kw["strategies"], str, "--strategies")
    elif paper:
        extras = PAPER_EXTRAS + (FULL_EXTRAS if kw["budget"] == "full" else ())
        strategies = PAPER_STRATEGIES + tuple(s for s in extras if s in known)
        notes.append("heterofl is left out: it scales the small model's widths (--model small), not the paper "
                     "model's" + ("; fedprox (our SGD baseline) too, to fit the quick budget"
                                  if kw["budget"] == "quick" else ""))
    else:
        strategies = ("relief", "fedavg")
    bad = [s for s in strategies if s not in known]
    if bad:
        raise ReliefError(f"--strategies: {bad[0]!r} is not available; available: {', '.join(sorted(known))}")
    return strategies, notes


def _summary_only(out_dir: Path, kw: dict[str, Any], strategies: tuple[str, ...]) -> None:
    """--summary-only: the tables and figures again from the logs in out_dir, in --strategies order if
    given, else in the order of the bench that wrote them (its bench.json, read once here)."""
    from relief_mpi.bench.runner import planned_order, read_bench_json, write_outputs

    saved = read_bench_json(out_dir)
    order = strategies if kw["strategies"] else planned_order(saved)
    for p in write_outputs(out_dir, kw["target_f1"], order, _saved_meta(saved), not kw["no_plots"]):
        click.echo(f"wrote {p}")


SEED_MAX = 2**32 - 1  # --seed's range (cli.options)


def _seeds_and_lr_grid(ctx: click.Context, kw: dict[str, Any],
                       paper: bool) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """The seeds (the quick budget's unless --seeds is given) and the --lr-grid, checked."""
    from relief_mpi.bench.runner import parse_list

    quick = paper and kw["budget"] == "quick"
    seeds = parse_list(QUICK_SEEDS if quick and not _explicit(ctx, "seeds") else kw["seeds"], int, "--seeds")
    bad = next((s for s in seeds if not 0 <= s <= SEED_MAX), None)
    if bad is not None:  # what --seed takes: a seed outside it would fail (or wrap) inside the first run
        raise ReliefError(f"--seeds: {bad} is not a seed (0..{SEED_MAX}, as --seed)")
    grid = parse_list(kw["lr_grid"], float, "--lr-grid") if kw["lr_grid"] is not None else ()
    if any(not 0 < x <= 10 for x in grid):  # NaN fails the comparison too
        raise ReliefError("--lr-grid: learning rates must be in (0, 10], as --lr")
    if _explicit(ctx, "lr") and grid:
        raise ReliefError("give --lr or --lr-grid, not both")
    return seeds, grid


def _paper_budget(kw: dict[str, Any], given: set[str], n_seeds: int) -> tuple[dict[str, Any], set[str], str]:
    """--protocol paper: the budget's rounds and local epochs where the user gave none (marked as
    given, so the protocol's defaults do not replace them), and the table header's line about it."""
    chosen = QUICK if kw["budget"] == "quick" else FULL
    set_here = {k: v for k, v in chosen.items() if k not in given}
    kw = {**kw, **set_here}
    given = given | set(set_here)
    mine = " (--rounds / --local-epochs given)" if set(chosen) - set(set_here) else ""
    budget = (f"{kw['budget']}: R = {kw['rounds']} rounds after round 0, {kw['local_epochs']} local epoch(s) per "
              f"round, {n_seeds} seed(s){mine}; the paper: R = {FULL['rounds']}, {FULL['local_epochs']} epochs")
    return kw, given, budget


def _default_lrs(kw: dict[str, Any], given: set[str], strategies: tuple[str, ...],
                 seed: int) -> tuple[tuple[str, float], ...]:
    """Without --lr: each strategy's own default lr (an Adam preset's differs from SGD's)."""
    return tuple((s, build_config({**kw, "strategy": s, "seed": seed}, given).strategy.lr) for s in strategies)


def _run_plan(plan: BenchPlan, kw: dict[str, Any]) -> None:
    """Run every strategy x seed in this process or under MPI, then print what was written and the summary."""
    from relief_mpi.bench.runner import run_bench

    progress = None if kw["quiet"] else (lambda line: click.echo(line))

    def say(line: str) -> None:
        click.echo(line)

    if kw["transport"] == "inprocess":
        check_clients_fit(plan.base, kw["clients"])  # before any run allocates them (issue 22, case 7)
        check_writable(plan.out_dir / "summary.md", "--out-dir")  # read-only or a file: one line before any run
        files = run_bench(plan, "inprocess", kw["clients"], progress, say)
    else:
        check_writable(plan.out_dir / "summary.md", "--out-dir")  # on every rank: the verdict is the same
        files = _guarded(lambda: run_bench(plan, "mpi", 0, progress, say))
    for p in files or []:
        click.echo(f"wrote {p}")
    if files:
        click.echo((plan.out_dir / "summary.md").read_text())


def corrected_variants(known: set[str]) -> tuple[tuple, list[str]]:
    """--compare corrected: the published relief and fedavg, and each correction (issue 16) as its own
    rows, named <strategy>+<correction>; a correction whose strategy is not registered is left out
    and said so."""
    from relief_mpi.bench.runner import Variant

    tstar = (("strategy.t_star_bracket", "contains-overhead"),)
    flops = (("strategy.cost_model", "flops"),)
    # leak-free: the last 20% in time of every label run, z-score from training windows only (protocol
    # ours' normalisation and windows inside one label run; the paper's 256 / 50 windows and one client
    # per subject kept)
    time_split = (("data.split", "time"), ("data.split_file", ""), ("data.protocol", "ours"))
    rows = [Variant("fedavg", "fedavg"), Variant("relief", "relief")]
    notes = []
    fair = "fedavg-fair" in known
    if fair:
        rows.append(Variant("fedavg-fair", "fedavg-fair"))
    else:
        notes.append("fedavg-fair is not registered in this build: the fair-baseline lines are left out")
    rows += [Variant("relief+tstar", "relief", tstar),
             Variant("fedavg+flops", "fedavg", flops), Variant("relief+flops", "relief", flops),
             Variant("fedavg+time", "fedavg", time_split), Variant("relief+time", "relief", time_split),
             Variant("relief+all", "relief", tstar + flops + time_split)]
    if fair:
        rows.append(Variant("fedavg-fair+all", "fedavg-fair", flops + time_split))
    return tuple(rows), notes


def _saved_meta(d: dict[str, Any] | None) -> dict[str, object] | None:
    """summary.md's lines about the bench (budget, wall time, transport, peak RSS, notes) from its bench.json."""
    if d is None:
        return None
    meta: dict[str, object] = {"budget": d["budget"]} if d.get("budget") else {}
    meta.update({"bench wall time (s)": f"{d.get('wall_s', float('nan')):.1f}", "transport": d.get("transport"),
                 "peak RSS per rank (MB)": ", ".join(f"r{i} {v:.0f}" for i, v in enumerate(d.get("peak_rss_mb", [])))})
    meta.update({f"note {i + 1}": note for i, note in enumerate(d.get("notes", []))})
    return meta


def _guarded(fn):  # noqa: ANN001, ANN202 - run under MPI; any failure on any rank ends the whole job
    from relief_mpi.comm.world import world_rank, world_size
    from relief_mpi.mpirun import StartupRefused

    try:
        return fn()
    except StartupRefused as e:
        if e.printable:
            click.echo(f"error: {e}", err=True)
        sys.exit(2)
    except ReliefError:
        if world_size() > 1 and world_rank() != 0:
            abort_job()
        raise
    except BaseException:  # noqa: BLE001
        abort_job()


def _system(kw: dict[str, Any], explicit_strategies: bool, n_clients: int | None) -> None:
    """--system: run_system on the first of --strategies; n_clients None = one client per client rank."""
    from relief_mpi.bench.system import run_system

    strategy = kw["strategies"].split(",")[0].strip() if explicit_strategies else "fedavg"
    cfg = build_config({**kw, "strategy": strategy})
    _guarded(lambda: run_system(cfg, kw["max_mb"], Path(kw["json_out"]) if kw["json_out"] else None,
                                lambda line: click.echo(line), n_clients))
