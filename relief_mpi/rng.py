"""Where a client's local randomness comes from: its batch order and its dropout masks.

`--rng ours` (the default): client k's round r draws from its own stream, seeded by
(seed, r, k): a private generator for the batch order and the global torch generator reseeded for
dropout. A client draws the same numbers wherever it runs, so in-process and MPI runs are equal
bit for bit, and one client's draws never depend on another's.

`--rng authors` (in-process only): the single global torch generator in the order the authors'
simulator consumes it (RELIEF/main.py, fl/server.py, fl/client.py at cb76893), so an in-process run
repeats their run of the same seed draw for draw:
1. torch.manual_seed(seed), then the model's initialisation (the same layers in the same order,
   so the same draws as their build_model);
2. every round, the clients train one after another in client order; each local epoch starts a
   DataLoader iterator (shuffle=True, no generator of its own): one int64 draw for the
   iterator's base seed, one int64 draw that seeds the RandomSampler's private generator, whose
   randperm gives the epoch's batches (drop_last when the client has more windows than a
   batch); the dropout masks of the epoch's forward passes draw from the global generator;
3. a client with nothing to train does not start its loader (no draw);
4. after each round, the evaluation of the global model starts one DataLoader iterator over the
   test set (shuffle=False): one int64 draw.
Nothing else in their loop draws from torch's generator (their numpy generators drive the split
and the random ablation; ours reproduce those apart from this module). One stream is shared by
every client of the process, so this cannot run under MPI, where each client rank owns its
generator: `train` refuses it there (cli/train.py, check_rng). It holds the CPU generator's state
(their run on the CPU); on a GPU, dropout would draw from the device's generator, so run_setup
refuses a non-CPU device with it.

Their arithmetic too, where it decides the numbers: the prepared data's per-subject z-score in
float32 (data/preprocess.authors_zscore, DataConfig.zscore_dtype) and the server's sum of each
group's uploads in a float32 buffer, client after client (AuthorsStream.add_upload), where ours
sums float32 terms exactly in float64. Both differ from ours by rounding only, but Adam turns
ulps into a different run within a few rounds (docs/bench.md 3.7).

Our own code between the authors' draws (the server's model, evaluation, strategies) may use the
global generator too: the authors' stream keeps its own state and puts it in place only while a
client trains, so nothing else shifts it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch

__all__ = ["AuthorsStream", "ClientStream", "OursStream", "authors_stream", "shuffled_batches"]


def shuffled_batches(n: int, batch: int, gen: torch.Generator) -> Iterator[torch.Tensor]:
    """Batch indices without end: a fresh permutation of the n windows whenever the current one
    cannot fill a whole batch."""
    order = torch.randperm(n, generator=gen)
    pos = 0
    while True:
        if pos + batch > n:
            order = torch.randperm(n, generator=gen)
            pos = 0
        yield order[pos:pos + batch]
        pos += batch


class OursStream:
    """Per (seed, round, client) streams: the same draws in-process and under MPI."""

    name = "ours"

    def batches(self, seed: int, rnd: int, client: int, n: int, batch: int) -> Iterator[torch.Tensor]:
        s = int(np.random.SeedSequence([seed, rnd, client]).generate_state(1)[0])
        gen = torch.Generator().manual_seed(s)
        torch.manual_seed(s)  # dropout draws from the global generator: same stream in-process and under MPI
        return shuffled_batches(n, batch, gen)

    def done(self) -> None:
        """Nothing to keep: the next client reseeds."""


def _int64_draw() -> int:
    """One draw of a DataLoader's seeds: an int64 `random_()` on the global generator."""
    return int(torch.empty((), dtype=torch.int64).random_().item())


class AuthorsStream:
    """The authors' global-generator order (module docstring), for every client of one process.

    `state` is the generator's state right after the model's initialisation; `evaluated` counts
    the per-round evaluation draws (one per finished round) already taken."""

    name = "authors"

    def __init__(self, state: torch.Tensor) -> None:
        self.state = state
        self.evaluated = 0
        self._live = False
        self.sums: dict[int, torch.Tensor] = {}  # this round's float32 sum of w delta per group

    def add_upload(self, group: int, delta: torch.Tensor, w: float) -> None:
        """Add one client's upload to its group's sum as the authors' aggregator does
        (RELIEF/algorithm/aggregation.py at cb76893): a float32 buffer of zeros, then
        `delta.add_(upload, alpha=w_n)` client after client (here: in training order, the clients'
        order, as their loop), one fused multiply-add in float32 per value. A client with w = 0 is
        not among their weights: skipped. Flat over the group's tensors: add_ is elementwise."""
        if w == 0.0:
            return
        flat = delta.detach().reshape(-1).to("cpu", torch.float32)
        acc = self.sums.get(group)
        if acc is None:
            acc = self.sums[group] = torch.zeros(flat.numel(), dtype=torch.float32)
        acc.add_(flat, alpha=w)

    def pop_sums(self) -> dict[int, np.ndarray]:
        """The round's sums (float32 arrays), handed over once; the next round starts from zero."""
        out = {g: t.numpy() for g, t in self.sums.items()}
        self.sums = {}
        return out

    def batches(self, seed: int, rnd: int, client: int, n: int, batch: int) -> Iterator[torch.Tensor]:
        """The client's epochs of batches from the shared stream; nothing is drawn until the first
        batch is asked for (a client that trains nothing draws nothing). `rnd` is our round (1 =
        the published round 0): the evaluations of rounds 1..rnd-1 come first."""
        del seed, client  # one stream for the whole run: the seed is in `state`, the order is the calls'
        return self._epochs(rnd, n, batch)

    def _epochs(self, rnd: int, n: int, batch: int) -> Iterator[torch.Tensor]:
        torch.set_rng_state(self.state)
        self._live = True
        while self.evaluated < rnd - 1:  # each finished round's test-set DataLoader iterator
            _int64_draw()
            self.evaluated += 1
        keep = n - n % batch if n > batch else n  # drop_last = (windows > batch), as their Client sets it
        while True:
            _int64_draw()  # the DataLoader iterator's base seed
            gen = torch.Generator()
            gen.manual_seed(_int64_draw())  # RandomSampler without a generator seeds its own from the global one
            order = torch.randperm(n, generator=gen)
            for pos in range(0, keep, batch):
                yield order[pos:pos + batch]

    def done(self) -> None:
        """After a client's steps: keep the generator's state for the next client."""
        if self._live:
            self.state = torch.get_rng_state()
            self._live = False


ClientStream = OursStream | AuthorsStream


def authors_stream(seed: int, build_model: Callable[[], object]) -> AuthorsStream:
    """The authors' stream of run `seed`: seeded as their set_seed does, advanced by one model
    initialisation (`build_model`, which must draw exactly as their build_model: ours does, layer
    for layer); the process's own generator is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        build_model()
        return AuthorsStream(torch.get_rng_state())
