"""RELIEF as its authors built it (design.md section 0), and the published method presets.

Per round: every client trains its mandatory A groups plus its other accessible groups by
descending smoothed cohort divergence, up to an elastic budget k_n from a T* search over the
published cost model; a round-robin floor brings back groups left out for Q rounds. The first
round (the published round 0) trains every accessible group to seed the divergences. Clients run
Adam (fresh every round) for E epochs with absent sensors zero-filled; uploads are unweighted
coefficients fixed by the server: 1 / (owners that trained it) for A and encoder groups, modality
counts for the shared B, 1 / (participants) for head groups. Divergence is zero-padded over the
whole cohort and not normalised by size. Our log's round r is the published round r - 1.

Presets (one name each): fedavg, cohort-fedavg, relief-acc (lambda 0), relief = relief-fast
(lambda 1), ablation-v2 (FedAvg weights, no mandatory A), ablation-v3 (ablation-v2, random picks),
b-uniform, b-freeze (B trained in the first round only), b-block (one B per modality). Our
corrections and controls on the same recipe are presets too (strategy/controls.py).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np

from relief_mpi.errors import ReliefError
from relief_mpi.rounds import ClientRecipe, FleetInfo, GroupInfo, GroupSums, PlanNotes, RoundPlan
from relief_mpi.strategy import budget
from relief_mpi.strategy.base import (
    PAPER_KINDS,
    Aggregated,
    Strategy,
    StrategyContext,
    weighted_divergence,
    weighted_mean_update,
)

__all__ = [
    "Aggregation", "Allocation", "BAggregation", "BMode", "BudgetUnit", "PRESETS", "PUBLISHED", "Preset",
    "PublishedRelief", "REFRESH_EVERY", "Scope", "local_steps", "preset_class"
]


REFRESH_EVERY = 50  # rounds between T* recalibrations


Aggregation = Literal["cohort", "fedavg", "samples"]  # samples (ours): weights = samples, over the uploaders
BAggregation = Literal["modality_count", "uniform", "freeze"]
Allocation = Literal["divergence", "random", "fixed"]  # fixed (ours): least recently trained first
Scope = Literal["accessible", "full_model"]
BMode = Literal["shared", "block"]
BudgetUnit = Literal["groups", "steps"]  # steps (ours): every accessible group, k_n / |G_n| of the steps


@dataclass(frozen=True)
class Preset:
    lam: float = 1.0
    aggregation: Aggregation = "cohort"
    b_aggregation: BAggregation = "modality_count"
    allocation: Allocation = "divergence"
    mandatory: bool = True
    scope: Scope = "accessible"
    b_mode: BMode = "shared"
    budget_unit: BudgetUnit = "groups"
    zero_fill: bool = True  # absent sensors: zeros through their encoders (False: not encoded, h_m = 0)
    freeze_absent_bn: bool = False  # absent sensors' encoders in eval mode (BatchNorm statistics untouched)




def _full_model(aggregation: Aggregation) -> Preset:
    """The published FedAvg presets: the whole model, lambda 0, B averaged uniformly."""
    return Preset(lam=0.0, aggregation=aggregation, scope="full_model", b_aggregation="uniform")


PRESETS: dict[str, Preset] = {
    "relief": Preset(),
    "relief-fast": Preset(),
    "relief-acc": Preset(lam=0.0),
    "fedavg": _full_model("fedavg"),
    "cohort-fedavg": _full_model("cohort"),
    "ablation-v2": Preset(aggregation="fedavg", mandatory=False),
    "ablation-v3": Preset(aggregation="fedavg", mandatory=False, allocation="random"),
    "b-uniform": Preset(b_aggregation="uniform"),
    "b-freeze": Preset(b_aggregation="freeze"),
    "b-block": Preset(b_mode="block"),
}


def local_steps(epochs: int, n_windows: int, batch: int) -> int:
    """E epochs of shuffled batches, the last short batch dropped when there is more than one."""
    return epochs * max(1, n_windows // batch) if n_windows > 0 else 0


def _mandatory_groups(g: GroupInfo, modalities: frozenset[int]) -> list[int]:
    """A client's mandatory groups: the A group of each of its modalities."""
    return [j for j in range(len(g)) if g.kinds[j] == "A" and g.modality[j] in modalities]


def _floor_period(g: GroupInfo, n_modalities: int) -> int:
    """Q, the round-robin floor's period: the modalities, the encoder stages of the deepest
    encoder and the head groups, plus one."""
    n_stages = max((sum(1 for j in range(len(g)) if g.kinds[j] == "enc" and g.modality[j] == m)
                    for m in range(n_modalities)), default=0)
    n_head = sum(1 for kind in g.kinds if kind == "head")
    return n_modalities + n_stages + n_head + 1


def _cohort_sizes(g: GroupInfo, fleet: FleetInfo) -> np.ndarray:
    """Per group, how many clients hold its modality (every client for a group of no modality)."""
    return np.array([sum(1 for mods in fleet.modality_sets if m is None or m in mods) for m in g.modality])


class PublishedRelief(Strategy):
    zero_fill = True  # absent sensors are zeros and their encoders still run forward
    preset: ClassVar[Preset] = Preset()

    def __init__(self, ctx: StrategyContext) -> None:
        super().__init__(ctx)
        g = ctx.groups
        if not set(g.kinds) <= PAPER_KINDS:
            raise ReliefError(f"--strategy {self.name} is defined on the paper model's parameter groups; "
                              "use --model paper (the default)")
        cfg = ctx.config
        self.lam = self.preset.lam if cfg.lam is None or self.preset.lam == 0.0 else cfg.lam
        fleet = ctx.fleet
        self.K = fleet.n_clients
        self.mandatory = [_mandatory_groups(g, mods) for mods in fleet.modality_sets]
        self.q = _floor_period(g, ctx.n_modalities)
        self.samples = np.array([cfg.local_epochs * n for n in fleet.n_train], float)
        self.steps = np.array([local_steps(cfg.local_epochs, n, ctx.batch_size) for n in fleet.n_train], np.int64)
        self.rng = np.random.default_rng(ctx.seed)
        self.last_trained = np.zeros((self.K, len(g)), np.int64)
        self.d_bar = np.zeros(len(g))
        self.d_prev = np.zeros(len(g))
        self.t_star = float("nan")
        self.t_a = self.t_f = float("nan")
        self._notes = PlanNotes()
        self.cohort_size = _cohort_sizes(g, fleet)

    # -- hooks -----------------------------------------------------------------------------------
    def recipe(self, k: int) -> ClientRecipe:
        del k
        p = self.preset
        return ClientRecipe(zero_fill=self.zero_fill, optimizer="adam", lr=self.ctx.config.lr,
                            sample_weighted=p.aggregation == "samples", freeze_absent_bn=p.freeze_absent_bn)

    def accessible_at(self, k: int, r: int) -> list[int]:
        """G_n: groups of k's modalities (every group under full_model scope), without B after the
        first round under b-freeze."""
        g = self.ctx.groups
        mods = self.ctx.fleet.modality_sets[k]
        out = []
        for j in range(len(g)):
            if g.kinds[j] == "B" and self.preset.b_aggregation == "freeze" and r > 0:
                continue
            if self.preset.scope == "accessible" and g.modality[j] is not None and g.modality[j] not in mods:
                continue
            out.append(j)
        return out

    def accessible(self, k: int) -> tuple[int, ...]:
        return tuple(self.accessible_at(k, 1))

    # -- the round -------------------------------------------------------------------------------
    def configure_round(self, rnd: int) -> RoundPlan:
        r = rnd - 1  # the published round number
        acc = [self.accessible_at(k, r) for k in range(self.K)]
        budgets = np.array([len(a) for a in acc], np.int64)
        chosen = acc
        steps, samples = self.steps.copy(), self.samples.copy()
        if r > 0:
            self._calibrate_if_due(r, acc)
            gamma = self.ctx.config.gamma
            self.d_bar = gamma * self.d_prev + (1.0 - gamma) * self.d_bar
            if self.lam != 0.0 and self.preset.budget_unit == "steps":
                budgets = self._budgets(acc)
                steps, samples = self._deadline_steps(acc, budgets)
            elif self.lam != 0.0:
                chosen, budgets = self._allocate(r, acc)
        alloc = np.zeros((self.K, len(self.ctx.groups)), np.uint8)
        for k, sel in enumerate(chosen):
            alloc[k, sel] = 1
            self.last_trained[k, sel] = r
        coef = self.coefficients(alloc)
        plain = np.zeros(len(self.ctx.groups), np.uint8)
        for j in range(len(self.ctx.groups)):
            nz = coef[:, j][coef[:, j] > 0]
            plain[j] = 1 if nz.size and not np.allclose(nz, nz[0], rtol=0, atol=1e-12) else 0
        self._notes = PlanNotes(self.t_star, budgets, tuple(tuple(a) for a in acc), samples)
        return RoundPlan(rnd, alloc, coef, steps, float("inf"), plain)

    def _calibrate_if_due(self, r: int, acc: list[list[int]]) -> None:
        if not np.isnan(self.t_star) and r % REFRESH_EVERY != 0:
            return
        cost = self.cost_model
        taus = [cost.tau(k, acc[k], self.samples[k]) for k in range(self.K)]
        t_o = cost.overhead(acc)
        k_min = [self._k_min(k) for k in range(self.K)]
        n_g = [len(a) for a in acc]
        cfg = self.ctx.config
        self.t_a = budget.full_training_target(t_o, taus, n_g)
        # --t-star-bracket: published [0.5 min tau, 2 max tau] x 4 steps (below T_o when communication
        # dominates: every k_n = k_min); contains-overhead (ours) shifts it by T_o, still 4 steps, so T_f
        # can sit well above the smallest T that fits; widened is the authors' bracket with hi_mult 1000
        # and 30 steps, which converges on it (budget.py; SPAR fast tier 43-88 against 38-78)
        self.t_f = budget.search_t_star(t_o, taus, k_min, n_g, bracket=cfg.t_star_bracket)
        self.t_star = budget.interpolate_t_star(self.lam, self.t_a, self.t_f)

    def _k_min(self, k: int) -> int:
        return len(self.mandatory[k]) if self.preset.mandatory else 1

    def _budgets(self, acc: list[list[int]]) -> np.ndarray:
        """k_n = max(k_min, floor((T* - T_o) / tau_n)) under the run's cost model."""
        cost = self.cost_model
        t_o = cost.overhead(acc)
        return np.array([budget.elastic_budget(self.t_star, t_o, cost.tau(k, acc[k], self.samples[k]), self._k_min(k))
                         for k in range(self.K)], np.int64)

    def _allocate(self, r: int, acc: list[list[int]]) -> tuple[list[list[int]], np.ndarray]:
        d_bar = {j: float(v) for j, v in enumerate(self.d_bar)}
        budgets = self._budgets(acc)
        chosen = []
        for k in range(self.K):
            req = self.mandatory[k] if self.preset.mandatory else []
            last = {j: int(self.last_trained[k, j]) for j in range(len(self.ctx.groups))}
            # fixed-order ranks by age (rounds since last trained) where RELIEF ranks by divergence
            score = {j: float(r - t) for j, t in last.items()} if self.preset.allocation == "fixed" else d_bar
            if self.preset.allocation == "random":
                sel = budget.random_selection(acc[k], req, int(budgets[k]), self.rng)
            else:
                sel = budget.greedy_selection(acc[k], req, score, int(budgets[k]))
            chosen.append(sorted(budget.round_robin_floor(sel, acc[k], req, last, r, self.q, score)))
        return chosen, budgets

    def _deadline_steps(self, acc: list[list[int]], budgets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """fedavg-deadline: every accessible group for floor(E-epoch steps x min(k_n, |G_n|) / |G_n|)
        steps (at least 1), i.e. the compute the budget k_n allots, spent on fewer steps instead of
        fewer groups; the analytic model is charged the samples those steps process."""
        steps, samples = self.steps.copy(), self.samples.copy()
        for k in range(self.K):
            n_g = len(acc[k])
            if self.steps[k] == 0 or n_g == 0:
                continue
            steps[k] = max(1, int(self.steps[k]) * min(int(budgets[k]), n_g) // n_g)
            samples[k] = self.samples[k] * steps[k] / self.steps[k]
        return steps, samples

    def coefficients(self, alloc: np.ndarray) -> np.ndarray:
        """The published aggregation weights of every (client, group) that trained (0 = not uploaded)."""
        g, fleet = self.ctx.groups, self.ctx.fleet
        n = self.K
        counts = np.array([len(s) for s in fleet.modality_sets], float)
        coef = np.zeros(alloc.shape)
        for j in range(len(g)):
            trainers = np.flatnonzero(alloc[:, j])
            if trainers.size == 0:
                continue
            m = g.modality[j]
            if g.kinds[j] == "B" and m is None and self.preset.aggregation != "samples":
                if self.preset.b_aggregation == "uniform":
                    coef[trainers, j] = 1.0 / n
                else:
                    coef[trainers, j] = counts[trainers] / counts.sum()
            elif self.preset.aggregation == "samples":
                coef[trainers, j] = 1.0  # the client multiplies by its samples (recipe.sample_weighted)
            elif self.preset.aggregation == "fedavg" or m is None:
                coef[trainers, j] = 1.0 / n
            else:
                owners = [k for k in trainers if m in fleet.modality_sets[k]]
                if owners:
                    coef[owners, j] = 1.0 / len(owners)
        return coef

    def notes(self, plan: RoundPlan) -> PlanNotes:
        return self._notes

    def aggregate(self, rnd: int, plan: RoundPlan, groups: list[np.ndarray], sums: dict[int, GroupSums],
                  samples: np.ndarray) -> Aggregated:
        new = list(groups)
        div = np.zeros(len(groups))
        by_samples = self.preset.aggregation == "samples"
        for j in range(len(groups)):
            s = sums.get(j)
            if by_samples:
                # theta += sum n d / sum n over the uploaders; divergence: their sample-weighted variance
                if s is not None and s.weight > 0:
                    new[j] = weighted_mean_update(groups[j], s)
                    div[j] = weighted_divergence(s, self.ctx.groups.n_params[j])
                continue
            if s is not None and s.authors is not None:  # --rng authors: theta + delta in float32, as theirs
                new[j] = groups[j].astype(np.float32) + s.authors
            elif s is not None and s.count > 0:
                new[j] = (groups[j].astype(np.float64) + s.weighted.astype(np.float64)).astype(np.float32)
            div[j] = self.divergence(j, s)
        div[self.cohort_size == 0] = np.nan
        self.d_prev = np.nan_to_num(div, nan=0.0)
        if rnd == 1:
            self.d_bar = self.d_prev.copy()
        return Aggregated(new, div)

    def divergence(self, j: int, s: GroupSums | None) -> float:
        """[sum ||d - mean||^2 + (|C| - T) ||mean||^2] / |C| with mean = sum d / |C| over the cohort C
        (non-uploaders count as zero deltas) = sum ||d||^2 / |C| - ||sum d / |C| ||^2."""
        if s is None or s.count <= 0:
            return 0.0
        n_p = self.ctx.groups.n_params[j]
        c = max(float(self.cohort_size[j]), s.count)
        mean = s.unweighted()[:n_p] / c
        return max(0.0, s.plain_sq / c - float(mean @ mean))

    # -- checkpoint ------------------------------------------------------------------------------
    def state(self) -> dict[str, np.ndarray]:
        return {"last_trained": self.last_trained.copy(), "d_bar": self.d_bar.copy(), "d_prev": self.d_prev.copy(),
                "t": np.array([self.t_star, self.t_a, self.t_f]),
                "rng": np.frombuffer(repr(self.rng.bit_generator.state).encode(), np.uint8).copy()}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self.last_trained = np.array(state["last_trained"], np.int64)
        self.d_bar = np.array(state["d_bar"], float)
        self.d_prev = np.array(state["d_prev"], float)
        self.t_star, self.t_a, self.t_f = (float(v) for v in np.asarray(state["t"]))
        self.rng.bit_generator.state = ast.literal_eval(bytes(np.asarray(state["rng"], np.uint8)).decode())


def preset_class(preset_name: str, preset: Preset, doc: str = "") -> type[PublishedRelief]:
    """The strategy class of one preset (its name, preset and zero-fill policy as class attributes)."""
    return type(f"Preset_{preset_name.replace('-', '_')}", (PublishedRelief,),
                {"name": preset_name, "preset": preset, "zero_fill": preset.zero_fill,
                 "__doc__": doc or f"Preset {preset_name}.", "__module__": __name__})


PUBLISHED: dict[str, type[PublishedRelief]] = {n: preset_class(n, p) for n, p in PRESETS.items()}
