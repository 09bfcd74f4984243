"""Ours, on the published recipe: a corrected FedAvg and controls that each isolate one RELIEF mechanism.

All four run exactly as the published presets do (Adam created fresh every round, --local-epochs
E over the client's windows, the paper model's parameter groups, the round-1 seeding round, the
same T* search and --cost-model), and differ from a published preset in the one way named:

- fedavg-fair: the published FedAvg made fair to clients that lack sensors (issue 16).
- skip-absent: fedavg-fair without running the encoders of absent sensors at all.
- fedavg-deadline: fedavg-fair under RELIEF's budget, spent on fewer steps instead of fewer groups.
- fixed-order: RELIEF with groups chosen by a fixed rule instead of by divergence.

So against `relief`: fedavg-fair -> fedavg-deadline isolates the deadline, fedavg-deadline ->
fixed-order trading steps for groups (and cohort weights), fixed-order -> relief divergence
guidance; fedavg-fair vs skip-absent what running zero-filled encoders costs and changes.
"""

from __future__ import annotations

from relief_mpi.strategy.relief import Preset, PublishedRelief, preset_class

__all__ = ["CONTROLS", "CONTROL_CLASSES"]


_DOCS = {
    "fedavg-fair": """Sample-weighted FedAvg in which a client never updates a group of a sensor it lacks.

Every round every client trains all its accessible groups G_n (A_m and E_m.l of its own sensors,
B, the head: relief-acc's set) and no others; each group is averaged over the clients that
trained it with weights = samples processed: theta_g += sum_n s_n delta_n / sum_n s_n. Absent
sensors are zero-filled as in the published FedAvg (their encoders run forward), but in eval
mode (ClientRecipe.freeze_absent_bn), so neither their weights nor their BatchNorm running
statistics change; the published FedAvg trains them on zeros with 1/N weights.""",
    "skip-absent": """fedavg-fair that neither runs nor trains the encoders of absent sensors.

An absent modality is not encoded (h_m = 0 exactly, ClientRecipe.zero_fill False): no forward,
no backward, and the client downloads only the groups of its own sensors plus B and the head.
Training and evaluation see the same h_m = 0. Otherwise identical to fedavg-fair (all of G_n every
round, sample weights over the trainers).""",
    "fedavg-deadline": """fedavg-fair under the deadline RELIEF's budget implies: fewer steps instead of fewer groups.

T* and k_n = max(k_min, floor((T* - T_o) / tau_n)) are computed exactly as for `relief` (same
accessible sets, k_min = the client's A groups, --lam, --t-star-bracket, --cost-model, recalibrated
every 50 rounds). Client n then trains every group of G_n for
floor(S_n x min(k_n, |G_n|) / |G_n|) steps (at least one), S_n = its E-epoch step count: the compute
k_n groups take in the analytic model, since a group is charged tau_n per E epochs. The seeding
round (round 1) is a full round, as in RELIEF. Weights and the zero-fill policy are fedavg-fair's.""",
    "fixed-order": """RELIEF with the published budget k_n but groups chosen by a fixed rule, not by divergence.

Each client trains its mandatory A groups, then its other accessible groups ordered by the
rounds since it last trained them (oldest first, ties in the model's group order: B, encoder
stages, head), up to k_n; the round-robin floor replaces the most recently trained pick. With a
constant budget this cycles through G_n in a fixed order. Everything else (T*, k_n, cohort
weights, zero-filled inputs) is `relief`'s; divergence is measured and logged, never used.""",
}

CONTROLS: dict[str, Preset] = {
    "fedavg-fair": Preset(lam=0.0, aggregation="samples", freeze_absent_bn=True),
    "skip-absent": Preset(lam=0.0, aggregation="samples", zero_fill=False),
    "fedavg-deadline": Preset(aggregation="samples", budget_unit="steps", freeze_absent_bn=True),
    "fixed-order": Preset(allocation="fixed"),
}

CONTROL_CLASSES: dict[str, type[PublishedRelief]] = {n: preset_class(n, p, _DOCS[n]) for n, p in CONTROLS.items()}
