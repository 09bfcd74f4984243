"""The paper's headline table from the round logs: metrics as the authors compute them, ours beside.

As published (the authors' metrics.py and server.py; design.md section 0):
- time to accuracy (TTA) = the first evaluated round whose macro-F1 (pooled full-modality test set)
  reaches the target (0.85, `--target-f1`): its round, its cumulative analytic time
  (`analytic_elapsed_s`) and cumulative analytic energy (`analytic_energy_cum_j`);
- speedup = FedAvg's TTA time / the strategy's; energy reduction = 1 - E_TTA / E_TTA,FedAvg;
- rare-modality F1 = the mean final per-class F1 over the critical classes, the classes whose final
  F1 is below 0.5 in the same seed's FedAvg run (a strategy's gain is in percentage points).
Ours beside it: the same at our emulated (FLOP-measured) time and energy, the earlier protocol's
target (95% of FedAvg's final macro-F1 on the same seed), our cohort rare-F1, and the pooled test
set seen with each device type's own sensors. Comparisons are paired by seed; a run that never
reaches a target has no time and takes no part in a ratio: nothing is extrapolated.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from relief_mpi.atomic import write_atomic
from relief_mpi.bench.results import NAN, Reach, Stat, fmt, label_of, last_row, ratio, reach, reduction_pct
from relief_mpi.log.hdf5 import RunLog
from relief_mpi.metrics import CRITICAL_F1, TARGET_F1, critical_classes, rare_modality_f1

__all__ = [
    "BASELINE", "CORRECTIONS", "Comparison", "NOT_FOUND", "OURS_FRACTION", "PAIRS", "PAIR_METRICS", "PAIR_REACH",
    "PAPER_FIGURES", "PaperRun", "PaperSummary", "REACH_LIKE", "ROW_METRICS", "Row", "cell", "compare",
    "corrections_markdown", "markdown", "pair", "pair_reasons", "paper_run", "summarize", "write_csv",
    "write_json"
]


BASELINE = "fedavg"
OURS_FRACTION = 0.95  # our earlier protocol's target: 95% of FedAvg's final macro-F1, same seed

# The paper's own figures (arXiv 2604.04243, abstract): the only ones reachable from this lab.
# Per-strategy values (final macro-F1, TTA rounds, MB up, % trained) are in the paper's tables,
# whose text could not be retrieved here; the table says so instead of inventing them.
PAPER_FIGURES = {
    "speedup": "up to 9.41x",
    "energy_reduction": "37%",
    "rare_gain": "up to +15.3 pp",
    "setting": "PAMAP2 and MHEALTH, CNN and LoRA, R = 200, E = 5 (abstract; two Jetson AGX Orin for validation)",
}
NOT_FOUND = "not found (the paper's tables were not retrievable here; only its abstract)"


@dataclass
class PaperRun:
    """One log's numbers for the paper's table (NaN where undefined)."""

    label: str  # the bench row: the strategy, or strategy+correction under --compare
    strategy: str
    seed: int
    lr: float
    path: str
    rounds: int
    final_macro_f1: float
    final_accuracy: float
    final_own_macro_f1: float
    final_rare_f1: float  # ours: the rare modality's cohort, own windows and sensors
    class_f1: np.ndarray  # [C] at the last evaluated round
    tier_pooled_f1: dict[str, float]
    analytic_s: float
    analytic_energy_j: float
    energy_j: float
    virtual_s: float
    mb_up_analytic: float
    mb_up: float
    trained_pct: float
    target: Reach = field(default_factory=lambda: Reach(NAN))
    ours: Reach = field(default_factory=lambda: Reach(NAN))
    critical: tuple[int, ...] = ()  # this run's own classes with final F1 < threshold
    reference_critical: tuple[int, ...] = ()  # its FedAvg reference's: where rare-modality F1 is measured
    rare_modality_f1: float = NAN


def paper_run(log: RunLog, path: str | Path = "", label: str | None = None) -> PaperRun:
    r = log.rounds
    cfg = log.config
    i = last_row(r["macro_f1"]) if len(r) else -1
    last = (lambda key: float(r[key][i])) if i >= 0 else (lambda key: NAN)
    n_classes = len(log.class_names)
    tier_pooled = log.tier_arrays.get("pooled_f1")
    return PaperRun(
        label=label or label_of(path, log), strategy=str(log.attrs.get("strategy") or cfg["strategy"]["name"]),
        seed=int(cfg["seed"]), lr=float(cfg["strategy"]["lr"]), path=str(path), rounds=len(r),
        final_macro_f1=last("macro_f1"), final_accuracy=last("accuracy"), final_own_macro_f1=last("own_macro_f1"),
        final_rare_f1=last("rare_f1"),
        class_f1=log.class_f1[i] if i >= 0 and n_classes else np.full(n_classes, NAN),
        tier_pooled_f1={t: float(tier_pooled[i, j]) if tier_pooled is not None and i >= 0 else NAN
                        for j, t in enumerate(log.tier_names)},
        analytic_s=float(r["analytic_elapsed_s"][-1]) if len(r) else NAN,
        analytic_energy_j=float(r["analytic_energy_cum_j"][-1]) if len(r) else NAN,
        energy_j=float(np.nansum(r["energy_j"])), virtual_s=float(r["virtual_elapsed_s"][-1]) if len(r) else NAN,
        mb_up_analytic=float(np.nansum(r["analytic_mb_up"])), mb_up=float(np.nansum(r["bytes_up"])) / 1e6,
        trained_pct=float(np.nanmean(r["trained_pct"])) if len(r) and np.isfinite(r["trained_pct"]).any() else NAN,
    )


# Paired metrics of a run against its reference (baseline) run of the same seed.
PAIR_METRICS: dict[str, tuple[str, str]] = {
    "speedup_analytic": ("speedup (analytic TTA time, as published)", ".2f"),
    "energy_reduction_analytic": ("energy reduction to target (analytic, as published, %)", "+.1f"),
    "rare_gain_pp": ("rare-modality F1 gain (pp, critical classes)", "+.1f"),
    "speedup_emulated": ("speedup (emulated TTA time, ours)", ".2f"),
    "energy_reduction_emulated": ("energy reduction to target (emulated, ours, %)", "+.1f"),
    "speedup_analytic_ours": ("speedup at 95% of FedAvg's final F1 (analytic)", ".2f"),
    "speedup_emulated_ours": ("speedup at 95% of FedAvg's final F1 (emulated)", ".2f"),
    "energy_reduction_run": ("energy reduction, whole run (analytic, %)", "+.1f"),
    "macro_f1_gain_pp": ("final macro-F1 gain (pp)", "+.1f"),
}


def pair(run: PaperRun, base: PaperRun) -> dict[str, float]:
    """Run vs base on one seed. The rare-modality F1 of both is measured on the critical classes of
    run's FedAvg reference (fedavg, or the same correction's FedAvg), whatever base is."""
    crit = run.reference_critical
    mine, theirs = rare_modality_f1(run.class_f1, crit), rare_modality_f1(base.class_f1, crit)
    out = {
        "speedup_analytic": ratio(base.target.analytic_s, run.target.analytic_s),
        "energy_reduction_analytic": reduction_pct(run.target.analytic_energy_j, base.target.analytic_energy_j),
        "rare_gain_pp": 100.0 * (mine - theirs) if math.isfinite(mine) and math.isfinite(theirs) else NAN,
        "speedup_emulated": ratio(base.target.virtual_s, run.target.virtual_s),
        "energy_reduction_emulated": reduction_pct(run.target.energy_j, base.target.energy_j),
        "speedup_analytic_ours": ratio(base.ours.analytic_s, run.ours.analytic_s),
        "speedup_emulated_ours": ratio(base.ours.virtual_s, run.ours.virtual_s),
        "energy_reduction_run": reduction_pct(run.analytic_energy_j, base.analytic_energy_j),
        "macro_f1_gain_pp": 100.0 * (run.final_macro_f1 - base.final_macro_f1),
    }
    for t, v in run.tier_pooled_f1.items():
        out[f"tier_gain_pp:{t}"] = 100.0 * (v - base.tier_pooled_f1.get(t, NAN))
    return out


# Paired ratios and the targets they need both runs to reach: (run's Reach, reference's Reach) attribute.
PAIR_REACH = {"speedup_analytic": "target", "energy_reduction_analytic": "target", "speedup_emulated": "target",
              "energy_reduction_emulated": "target", "speedup_analytic_ours": "ours", "speedup_emulated_ours": "ours"}


def pair_reasons(run: PaperRun, base: PaperRun | None, reference: str) -> dict[str, str]:
    """Why a paired value is undefined on this seed: the run, or its reference, never reached the
    target; or the FedAvg reference had no critical class (then there is no rare-modality F1)."""
    out = {}
    if not run.reference_critical:
        out["rare_modality_f1"] = out["rare_gain_pp"] = "n/a (no critical class)"
    for key, which in PAIR_REACH.items():
        if not getattr(run, which).reached:
            out[key] = "not reached"
        elif base is None:
            out[key] = f"n/a (no {reference})"
        elif not getattr(base, which).reached:
            out[key] = f"n/a ({reference} not reached)"
    return out


def _stat(values: list[float], reasons: list[str]) -> Stat:
    return Stat(values, "; ".join(dict.fromkeys(r for r in reasons if r)))


@dataclass
class Row:
    """One bench row (label) over seeds."""

    label: str
    runs: list[PaperRun]
    stats: dict[str, Stat] = field(default_factory=dict)


@dataclass
class Comparison:
    """One line of a paired table: `label` against `reference`, over the seeds both ran."""

    title: str
    label: str
    reference: str
    stats: dict[str, Stat]
    n_seeds: int


@dataclass
class PaperSummary:
    rows: list[Row]
    target: float
    target_source: str
    critical: dict[int, tuple[int, ...]]  # seed -> FedAvg's critical classes
    class_names: list[str]
    tier_names: list[str]
    threshold: float
    comparisons: list[Comparison] = field(default_factory=list)
    corrections: list[Comparison] = field(default_factory=list)
    references: dict[str, dict[int, tuple[int, ...]]] = field(default_factory=dict)  # corrected FedAvg rows
    meta: dict[str, object] = field(default_factory=dict)

    def get(self, label: str) -> Row | None:
        return next((r for r in self.rows if r.label == label), None)


# The pairs the paper's table is read by (issue 12): what RELIEF adds over each.
PAIRS = (("relief", "fedavg", "RELIEF vs FedAvg (the headline)"),
         ("relief", "ablation-v3", "RELIEF vs ablation-v3 (random groups, FedAvg weights)"),
         ("relief", "ablation-v2", "RELIEF vs ablation-v2 (divergence groups, FedAvg weights)"),
         ("relief", "cohort-fedavg", "RELIEF vs cohort-fedavg (cohort aggregation alone)"),
         ("relief", "relief-acc", "RELIEF vs relief-acc (no budget)"),
         ("relief", "fedavg-fair", "RELIEF vs fedavg-fair (sample weights, absent sensors untouched)"),
         ("relief", "fedavg-deadline", "RELIEF vs fedavg-deadline (FedAvg with RELIEF's deadline)"),
         ("relief", "skip-absent", "RELIEF vs skip-absent (FedAvg that skips absent sensors)"),
         ("relief", "fixed-order", "RELIEF vs fixed-order (rule-based allocation)"))

# --compare corrected: (title, RELIEF run, reference run), each paired by seed.
CORRECTIONS = (("published (as the paper)", "relief", "fedavg"),
               ("fair baseline: fedavg-fair", "relief", "fedavg-fair"),
               ("T* bracket contains T_o", "relief+tstar", "fedavg"),
               ("cost model from the chosen groups' FLOPs", "relief+flops", "fedavg+flops"),
               ("leak-free split (time)", "relief+time", "fedavg+time"),
               ("every correction together", "relief+all", "fedavg-fair+all"))


def summarize(logs: Sequence[tuple[RunLog, str]], target_f1: float | None = None, threshold: float = CRITICAL_F1,
              baseline: str = BASELINE) -> PaperSummary:
    """The paper's table of (log, path) pairs; rows keep their first-seen order."""
    runs = [(log, paper_run(log, path)) for log, path in logs]
    target = TARGET_F1 if target_f1 is None else float(target_f1)
    source = f"macro-F1 {target:g} ({'--target-f1' if target_f1 is not None else 'the paper'})"
    labels = {r.label for _, r in runs}
    refs = {r.label: _reference_of(r.label, baseline, labels) for _, r in runs}
    _apply_targets(runs, refs, target)
    by_key = {(r.label, r.seed): r for _, r in runs}
    references = _critical_classes(by_key, refs, threshold)
    _measure_rare_modality(by_key, refs)
    order = list(dict.fromkeys(r.label for _, r in runs))
    rows = [_row(label, sorted((r for _, r in runs if r.label == label), key=lambda x: x.seed), refs[label], by_key)
            for label in order]
    first = logs[0][0] if logs else None
    out = PaperSummary(rows, target, source, references.get(baseline, {}), list(first.class_names) if first else [],
                       list(first.tier_names) if first else [], threshold)
    out.references = {k: v for k, v in references.items() if k != baseline}
    out.comparisons, out.corrections = _paired_tables(by_key)
    return out


def _paired_tables(by_key: dict[tuple[str, int], PaperRun]) -> tuple[list[Comparison], list[Comparison]]:
    """The PAIRS and the CORRECTIONS the bench ran both sides of; no corrections table for a plain
    bench (its first line alone is the headline pair, already among the PAIRS)."""
    comparisons = [c for a, b, title in PAIRS if (c := compare(by_key, a, b, title)) is not None]
    corrections = [c for title, a, b in CORRECTIONS if (c := compare(by_key, a, b, title)) is not None]
    return comparisons, corrections if len(corrections) >= 2 else []


def _apply_targets(runs: list[tuple[RunLog, PaperRun]], refs: dict[str, str], target: float) -> None:
    """Where each run reaches the paper's target, and ours: a fraction of its reference's final
    macro-F1 on the same seed (never, when the reference did not run that seed)."""
    finals = {(r.label, r.seed): r.final_macro_f1 for _, r in runs}
    for log, r in runs:
        r.target = reach(log, target)
        r.ours = reach(log, OURS_FRACTION * finals.get((refs[r.label], r.seed), NAN))


def _critical_classes(by_key: dict[tuple[str, int], PaperRun], refs: dict[str, str],
                      threshold: float) -> dict[str, dict[int, tuple[int, ...]]]:
    """Set every run's own critical classes; returns those of the reference rows, by label and seed."""
    references: dict[str, dict[int, tuple[int, ...]]] = {}
    for (label, seed), r in by_key.items():
        r.critical = critical_classes(r.class_f1, threshold) if r.class_f1.size else ()
        if label in refs.values():
            references.setdefault(label, {})[seed] = r.critical
    return references


def _measure_rare_modality(by_key: dict[tuple[str, int], PaperRun], refs: dict[str, str]) -> None:
    """Each run's rare-modality F1, on the critical classes of its reference's run on the same seed
    (none, and NaN, without that run)."""
    for r in by_key.values():
        ref = by_key.get((refs[r.label], r.seed))
        r.reference_critical = ref.critical if ref is not None else ()
        r.rare_modality_f1 = rare_modality_f1(r.class_f1, r.reference_critical) if ref is not None else NAN


def _row(label: str, mine: list[PaperRun], ref_label: str, by_key: dict[tuple[str, int], PaperRun]) -> Row:
    """One bench row's ROW_METRICS over its seeds, each paired with `ref_label`'s run of the same
    seed; a stat with no value keeps the reasons why."""
    st: dict[str, list[float]] = {k: [] for k in ROW_METRICS}
    why: dict[str, list[str]] = {k: [] for k in ROW_METRICS}
    for r in mine:
        ref = by_key.get((ref_label, r.seed))
        for k, reason in pair_reasons(r, ref, ref_label).items():
            why[k].append(reason)
        vals = _row_values(r, pair(r, ref) if ref is not None else {})
        for k in ROW_METRICS:
            st[k].append(vals[k])
    return Row(label, mine, {k: _stat(v, why[k]) for k, v in st.items()})


def _row_values(r: PaperRun, p: dict[str, float]) -> dict[str, float]:
    """One run's ROW_METRICS; `p` is its pair() with the reference run (empty without one: NaN)."""
    return {"speedup_analytic": p.get("speedup_analytic", NAN),
            "energy_reduction_analytic": p.get("energy_reduction_analytic", NAN),
            "rare_modality_f1": r.rare_modality_f1, "rare_gain_pp": p.get("rare_gain_pp", NAN),
            "final_macro_f1": r.final_macro_f1, "tta_round": r.target.round - 1 if r.target.reached else NAN,
            "mb_up_analytic": r.mb_up_analytic, "trained_pct": r.trained_pct,
            "speedup_emulated": p.get("speedup_emulated", NAN),
            "energy_reduction_emulated": p.get("energy_reduction_emulated", NAN),
            "speedup_analytic_ours": p.get("speedup_analytic_ours", NAN),
            "speedup_emulated_ours": p.get("speedup_emulated_ours", NAN),
            "final_own_macro_f1": r.final_own_macro_f1, "final_rare_f1": r.final_rare_f1,
            "mb_up": r.mb_up, "tta_analytic_s": r.target.analytic_s,
            "tta_analytic_energy_j": r.target.analytic_energy_j}


def _reference_of(label: str, baseline: str, labels: set[str]) -> str:
    """The FedAvg run a row is measured against: the baseline of the same correction (`fedavg+time`
    for `relief+time`, `fedavg-fair+all` for `relief+all`) when the bench ran it, else the plain
    baseline (a correction that changes nothing for FedAvg, like the T* bracket, has none)."""
    if "+" in label:
        suffix = label.split("+", 1)[1]
        mine = f"{baseline}+{suffix}" if suffix != "all" else f"{baseline}-fair+all"
        if mine in labels:
            return mine
    return baseline


def compare(by_key: dict[tuple[str, int], PaperRun], label: str, reference: str, title: str) -> Comparison | None:
    seeds = sorted(s for (lb, s) in by_key if lb == label and (reference, s) in by_key)
    if not seeds:
        return None
    vals: dict[str, list[float]] = {}
    why: dict[str, list[str]] = {}
    for s in seeds:
        run, base = by_key[(label, s)], by_key[(reference, s)]
        for k, v in pair(run, base).items():
            vals.setdefault(k, []).append(v)
        for k, reason in pair_reasons(run, base, reference).items():
            why.setdefault(k, []).append(reason)
    return Comparison(title, label, reference, {k: _stat(v, why.get(k, [])) for k, v in vals.items()}, len(seeds))


ROW_METRICS: dict[str, tuple[str, str]] = {
    "speedup_analytic": ("speedup (analytic TTA)", ".2f"),
    "energy_reduction_analytic": ("energy reduction to target (analytic, %)", "+.1f"),
    "rare_modality_f1": ("rare-modality F1 (critical classes)", ".3f"),
    "rare_gain_pp": ("rare-F1 gain (pp)", "+.1f"),
    "final_macro_f1": ("final macro-F1", ".3f"),
    "tta_round": ("TTA rounds", ".0f"),
    "mb_up_analytic": ("MB up (analytic)", ".1f"),
    "trained_pct": ("% trained", ".1f"),
    "speedup_emulated": ("speedup (emulated TTA)", ".2f"),
    "energy_reduction_emulated": ("energy reduction to target (emulated, %)", "+.1f"),
    "speedup_analytic_ours": ("speedup at 95% FedAvg (analytic)", ".2f"),
    "speedup_emulated_ours": ("speedup at 95% FedAvg (emulated)", ".2f"),
    "final_own_macro_f1": ("own-sensor macro-F1 (ours)", ".3f"),
    "final_rare_f1": ("cohort rare-F1 (ours)", ".3f"),
    "mb_up": ("MB up (emulated)", ".1f"),
    "tta_analytic_s": ("TTA time (analytic s)", ".3g"),
    "tta_analytic_energy_j": ("TTA energy (analytic J)", ".3g"),
}
REACH_LIKE = {"tta_round", "tta_analytic_s", "tta_analytic_energy_j", "speedup_analytic", "speedup_emulated",
              "energy_reduction_analytic", "energy_reduction_emulated", "speedup_analytic_ours",
              "speedup_emulated_ours"}


def cell(stat: Stat, spec: str, reach_like: bool = False, with_max: bool = False) -> str:
    if stat.count == 0:
        return stat.why or ("not reached" if reach_like else "n/a")
    s = fmt(stat.mean, spec)
    if stat.count > 1:
        s += f" ± {fmt(stat.std, spec.lstrip('+'))}"
        if with_max:
            s += f", max {fmt(stat.max, spec)}"
    if reach_like and stat.count < stat.n:
        s += f" ({stat.count}/{stat.n} seeds)"
    return s


def _table(head: list[str], lines: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(x) + " |" for x in lines]


def markdown(s: PaperSummary) -> str:
    """summary.md's opening part: the paper's table, its figures beside ours, then our metrics."""
    out = _preamble(s) + _published_table(s) + _beside_the_paper(s)
    if s.comparisons:
        out += _comparisons_table(s)
    if s.corrections:
        out += corrections_markdown(s)
    out += _ours_table(s)
    if s.tier_names:
        out += _tier_table(s)
    out += _critical_section(s) + _per_run_table(s)
    out.append("")
    return "\n".join(out)


def _preamble(s: PaperSummary) -> list[str]:
    """Title, the bench's scenario, and how the numbers are measured."""
    out = ["# relief-mpi bench: the paper's table", ""]
    for k, v in s.meta.items():
        out.append(f"- {k}: {v}")
    return out + ["", f"Target: {s.target_source}. TTA rounds count as published (the seeding round is round 0; "
                  "our log's round r is the published r - 1). Speedups and reductions are paired by seed against the "
                  f"same seed's {BASELINE} run (a corrected row against its own corrected baseline); 'not reached' = "
                  "the run never reached the target, and nothing is extrapolated. Critical classes: final F1 below "
                  f"{s.threshold:g} in the same seed's {BASELINE} run. Values are mean ± sample std over seeds.", ""]


def _published_table(s: PaperSummary) -> list[str]:
    """Every row with the paper's metrics (analytic time and energy, pooled full-modality test set)."""
    heads = ["speedup_analytic", "energy_reduction_analytic", "rare_modality_f1", "rare_gain_pp", "final_macro_f1",
             "tta_round", "mb_up_analytic", "trained_pct"]
    out = ["## As published (analytic time and energy, pooled full-modality test set)", ""]
    return out + _table(["strategy", "seeds", "lr"] + [ROW_METRICS[k][0] for k in heads],
                        [[r.label, str(len(r.runs)), ", ".join(sorted({f"{x.lr:g}" for x in r.runs}))] +
                         [cell(r.stats[k], ROW_METRICS[k][1], k in REACH_LIKE,
                               k in ("speedup_analytic", "rare_gain_pp")) for k in heads] for r in s.rows])


def _beside_the_paper(s: PaperSummary) -> list[str]:
    """The paper's abstract figures beside our RELIEF-vs-FedAvg pair."""
    out = ["", "## The paper's figures beside ours (RELIEF vs FedAvg)", ""]
    head = next((c for c in s.comparisons if c.label == "relief" and c.reference == BASELINE), None)

    def ours(key: str, spec: str) -> str:
        return cell(head.stats[key], spec, key in REACH_LIKE, True) if head else "n/a (no relief and fedavg runs)"

    return out + _table(["metric", "paper", "ours"], [
        ["speedup over FedAvg (time to target)", PAPER_FIGURES["speedup"], ours("speedup_analytic", ".2f")],
        ["energy reduction over FedAvg", PAPER_FIGURES["energy_reduction"], ours("energy_reduction_analytic", "+.1f")],
        ["rare-modality F1 gain", PAPER_FIGURES["rare_gain"], ours("rare_gain_pp", "+.1f")],
        ["speedup at 95% of FedAvg's final macro-F1 (ours, analytic time)", "-", ours("speedup_analytic_ours", ".2f")],
        ["final macro-F1, TTA rounds, MB up, % trained", NOT_FOUND, "see the table above"],
        ["setting", PAPER_FIGURES["setting"], str(s.meta.get("budget", "-"))],
    ])


def _comparisons_table(s: PaperSummary) -> list[str]:
    """RELIEF against each of the PAIRS the bench ran."""
    keys = ["speedup_analytic", "energy_reduction_analytic", "rare_gain_pp", "macro_f1_gain_pp",
            "speedup_emulated", "speedup_analytic_ours"]
    out = ["", "## What RELIEF adds over each (paired by seed)", ""]
    return out + _table(["comparison", "seeds"] + [PAIR_METRICS[k][0] for k in keys],
                        [[c.title, str(c.n_seeds)] + [cell(c.stats[k], PAIR_METRICS[k][1], k in REACH_LIKE, True)
                                                      for k in keys] for c in s.comparisons])


def _ours_table(s: PaperSummary) -> list[str]:
    """Every row with our metrics (FLOP-measured emulated time and energy, our earlier target)."""
    ours_keys = ["speedup_emulated", "energy_reduction_emulated", "speedup_analytic_ours", "speedup_emulated_ours",
                 "final_own_macro_f1", "final_rare_f1", "mb_up", "tta_analytic_s", "tta_analytic_energy_j"]
    out = ["", "## Ours beside it (FLOP-measured emulated time and energy; our earlier protocol's metrics)", ""]
    return out + _table(["strategy", "seeds"] + [ROW_METRICS[k][0] for k in ours_keys],
                        [[r.label, str(len(r.runs))] + [cell(r.stats[k], ROW_METRICS[k][1], k in REACH_LIKE)
                                                        for k in ours_keys] for r in s.rows])


def _tier_table(s: PaperSummary) -> list[str]:
    """Each row's final macro-F1 per device type, seen with that type's own sensors."""
    out = ["", "## Each device type with its own sensors (final macro-F1 on the pooled test set, the type's "
           "sensors only; the absent ones zero-filled or skipped as the strategy trains)", ""]
    return out + _table(["strategy", "seeds"] + s.tier_names,
                        [[r.label, str(len(r.runs))] + [cell(Stat([x.tier_pooled_f1.get(t, NAN) for x in r.runs]),
                                                             ".3f") for t in s.tier_names] for r in s.rows])


def _critical_section(s: PaperSummary) -> list[str]:
    """FedAvg's critical classes per seed, then those of each corrected FedAvg reference."""
    out = ["", f"## Critical classes (final F1 < {s.threshold:g} in {BASELINE}, per seed)", ""]
    if not s.critical:
        out.append(f"n/a: no {BASELINE} run in this bench, so no critical classes and no rare-modality F1.")
    for seed, crit in sorted(s.critical.items()):
        none = f"none ({BASELINE} reached F1 >= {s.threshold:g} on every class)"
        out.append(f"- seed {seed}: {_names(s, crit) or none}")
    for label, by_seed in s.references.items():  # the corrected FedAvg rows are their own references
        for seed, crit in sorted(by_seed.items()):
            out.append(f"- {label} (the reference of its correction), seed {seed}: "
                       f"{_names(s, crit) or f'none (F1 >= {s.threshold:g} on every class: no rare-modality F1)'}")
    return out


def _per_run_table(s: PaperSummary) -> list[str]:
    """One line per log: where it reached the target, and its whole-run totals."""
    out = ["", "## Per run", ""]
    return out + _table(["run", "seed", "lr", "rounds", "macro-F1", "rare-modality F1", "TTA round", "TTA analytic s",
                         "TTA analytic J", "TTA emulated s", "TTA emulated J", "analytic s (run)", "analytic J (run)",
                         "emulated s (run)", "emulated J (run)", "MB up (analytic)", "% trained"],
                        [_per_run_line(r) for row in s.rows for r in row.runs])


def _per_run_line(r: PaperRun) -> list[str]:
    return [r.label, str(r.seed), f"{r.lr:g}", str(r.rounds), fmt(r.final_macro_f1, ".3f"),
            fmt(r.rare_modality_f1, ".3f"), str(r.target.round - 1) if r.target.reached else "not reached",
            fmt(r.target.analytic_s, ".3g"), fmt(r.target.analytic_energy_j, ".3g"),
            fmt(r.target.virtual_s, ".3g"), fmt(r.target.energy_j, ".3g"),
            fmt(r.analytic_s, ".3g"), fmt(r.analytic_energy_j, ".3g"), fmt(r.virtual_s, ".3g"),
            fmt(r.energy_j, ".3g"), fmt(r.mb_up_analytic, ".1f"), fmt(r.trained_pct, ".1f")]


def _names(s: PaperSummary, classes: Sequence[int]) -> str:
    return ", ".join(s.class_names[c] if c < len(s.class_names) else str(c) for c in classes)


def corrections_markdown(s: PaperSummary) -> list[str]:
    """How much of RELIEF's gain over FedAvg remains under each correction (issue 16)."""
    base = s.corrections[0]
    keys = ["speedup_analytic", "energy_reduction_analytic", "rare_gain_pp", "speedup_emulated",
            "speedup_analytic_ours"]
    out = ["", "## How much of RELIEF's gain remains under each correction (paired by seed; in brackets: the "
           "share of the published line's value that remains)", ""]
    tiers = [k for k in base.stats if k.startswith("tier_gain_pp:")]
    lines = []
    for c in s.corrections:
        row = [c.title, f"{c.label} vs {c.reference}", str(c.n_seeds)]
        for k in keys:
            txt = cell(c.stats[k], PAIR_METRICS[k][1], k in REACH_LIKE)
            share = _share(c.stats[k].mean, base.stats[k].mean, k)
            row.append(txt + (f" [{share}]" if share and c is not base else ""))
        row += [cell(c.stats.get(t, Stat([])), "+.1f") for t in tiers]
        lines.append(row)
    head = ["correction", "runs", "seeds"] + [PAIR_METRICS[k][0] for k in keys]
    head += [f"F1 gain on {t.split(':', 1)[1]} with its own sensors (pp)" for t in tiers]
    return out + _table(head, lines)


def _share(value: float, published: float, key: str) -> str:
    """The part of the published line's gain left: speedup above 1x, reductions and gains above 0."""
    if not (math.isfinite(value) and math.isfinite(published)):
        return ""
    gain, ref = (value - 1.0, published - 1.0) if key.startswith("speedup") else (value, published)
    return f"{100.0 * gain / ref:.0f}%" if abs(ref) > 1e-12 else ""


def write_csv(s: PaperSummary, path: Path) -> None:
    fh = io.StringIO(newline="")
    w = csv.writer(fh)
    w.writerow(["row", "seeds"] + [f"{k}_{x}" for k in ROW_METRICS for x in ("mean", "std", "n")])
    for r in s.rows:
        w.writerow([r.label, len(r.runs)] + [v for k in ROW_METRICS for v in
                                             (r.stats[k].mean, r.stats[k].std, r.stats[k].count)])
    write_atomic(path, fh.getvalue().encode())


def write_json(s: PaperSummary, path: Path) -> None:
    def stats(d: dict[str, Stat]) -> dict[str, dict[str, object]]:
        return {k: {"mean": v.mean, "std": v.std, "n": v.count, "values": list(v.values)} for k, v in d.items()}

    write_atomic(path, json.dumps({
        "target": s.target, "threshold": s.threshold,
        "critical": {str(k): [s.class_names[c] if c < len(s.class_names) else str(c) for c in v]
                     for k, v in s.critical.items()},
        "rows": {r.label: stats(r.stats) for r in s.rows},
        "comparisons": [{"title": c.title, "label": c.label, "reference": c.reference, **stats(c.stats)}
                        for c in s.comparisons],
        "corrections": [{"title": c.title, "label": c.label, "reference": c.reference, **stats(c.stats)}
                        for c in s.corrections],
    }, indent=1, default=float).encode())
