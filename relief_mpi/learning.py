"""A run that is not learning: one warning line per occurrence, recorded in the log's /warnings.

`--lr 10` (the largest allowed) reached a training loss of 1.5e8 with accuracy at chance every
round, and the run ended `complete` without a word. The model is still finite, so the divergence
stop (stops.Diverged, exit 3) does not apply and the exit code stays 0; but the user is told, once
when it starts and again if it comes back after a recovery:

- loss exploding: the clients' mean training loss is over LOSS_FACTOR times round 1's;
- at chance: the headline macro-F1 is at most CHANCE_FACTOR / classes (a model that guesses, or
  always says one class) in CHANCE_ROUNDS evaluated rounds in a row after round 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

LOSS_FACTOR = 10.0
CHANCE_FACTOR = 1.5
CHANCE_ROUNDS = 3
KINDS = ("loss_exploding", "chance_accuracy")


@dataclass
class LearningWatch:
    """Fed every round's row (log.hdf5.ROUND_FIELDS), it returns the warnings that round starts."""

    n_classes: int
    first_loss: float | None = None
    chance_streak: int = 0
    active: set[str] = field(default_factory=set)

    def observe(self, row: dict[str, float]) -> list[tuple[str, str]]:
        """(kind, line) for each not-learning state that begins with this round; a round that says
        nothing about a state (no finite loss, no evaluation) leaves it as it was."""
        rnd = int(row["round"])
        lines: dict[str, str] = {}
        now = set(self.active)
        loss = float(row.get("train_loss", math.nan))
        if math.isfinite(loss):
            if self.first_loss is None:
                self.first_loss = loss
            exploding = self.first_loss > 0 and loss > LOSS_FACTOR * self.first_loss
            now.discard("loss_exploding")
            if exploding:
                now.add("loss_exploding")
                lines["loss_exploding"] = (f"warning: round {rnd}: the training loss {loss:.3g} is over "
                                           f"{LOSS_FACTOR:g}x round 1's ({self.first_loss:.3g}): the training is not "
                                           "learning (a lower --lr may help)")
        f1 = float(row.get("macro_f1", math.nan))
        if math.isfinite(f1) and rnd > 1:
            chance = 1.0 / max(1, self.n_classes)
            self.chance_streak = self.chance_streak + 1 if f1 <= CHANCE_FACTOR * chance else 0
            now.discard("chance_accuracy")
            if self.chance_streak >= CHANCE_ROUNDS:
                now.add("chance_accuracy")
                lines["chance_accuracy"] = (f"warning: round {rnd}: macro-F1 {f1:.3f} is at chance "
                                            f"({self.n_classes} classes) for {self.chance_streak} evaluated rounds "
                                            "in a row: the training is not learning (a lower --lr may help)")
        new = [(k, lines[k]) for k in KINDS if k in now and k not in self.active]
        self.active = now
        return new
