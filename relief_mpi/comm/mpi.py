"""MPI transport: cohort communicators, nonblocking collectives, sleeping waits, no pickle.

A client rank hosts one or more clients (comm.placement: client k on rank 1 + k mod R) and trains
them in turn; it adds up its clients' update buffers per group (float32 terms in float64, exact:
rounds.UPDATE_DTYPE) and takes part in a group's exchange once, whatever its number of clients.

Communicators are keyed by their member set (always including the server, rank 0) and created
with Comm.Create_group, which only the members call. A group's cohort communicator holds the
server and the ranks hosting at least one owner of the group; it is built once and pinned.
Per-round trainer communicators (server + the ranks hosting at least one uploader of the group)
come from the same cache, so a rank none of whose clients trained group g takes no part in g's
Reduce and sends none of its bytes. Every rank receives the full allocation, so every rank
replays the same cache history (creation order, LRU eviction): members agree on which
communicators exist without any extra messages.

Groups with the same member set share one collective: their blocks travel in one Ibcast and their
update buffers in one Ireduce (FedAvg: one of each per round, whatever the number of groups).

The plan (header and body in one message), each client rank's acknowledgement of it and its
clients' reports travel point to point between the server and that rank, not through
collectives: a collective can be held up by any one of its members, a point-to-point message only
by its two ends. So when a round overruns its deadline (the round watchdog), the server knows
which ranks never acknowledged the plan (they stopped answering) and which never reported
(stopped, or held up by one that did).
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
from mpi4py import MPI

from relief_mpi.comm import wire
from relief_mpi.comm.placement import Bucket, Key, buckets, by_rank, check_fits, clients_of, members, split
from relief_mpi.comm.transport import ClientTransport, Handshake, RoundExchange, ServerTransport
from relief_mpi.comm.wait import WaitTimeout, wait_all
from relief_mpi.rounds import UPDATE_DTYPE, GroupSums, RoundPlan, update_len
from relief_mpi.stops import RoundTimeout

TAG_PLAN, TAG_ACK, TAG_REPORT = 11, 13, 14
_HS_FIELDS = (("version", 32), ("fingerprint", 32), ("host", 64))
_HS_LEN = sum(n for _, n in _HS_FIELDS)


def encode_handshake(h: Handshake) -> np.ndarray:
    return np.concatenate([wire.fixed_utf8(getattr(h, name), n) for name, n in _HS_FIELDS])


def decode_handshake(buf: np.ndarray) -> Handshake:
    vals, off = {}, 0
    for name, n in _HS_FIELDS:
        vals[name] = wire.utf8_text(buf[off:off + n])
        off += n
    return Handshake(**vals)


class CommCache:
    """Communicators by member set, with a deterministic LRU bound (MPI context ids are finite)."""

    def __init__(self, world: MPI.Intracomm, capacity: int = 64) -> None:
        self.world = world
        self.rank = world.Get_rank()
        self.capacity = capacity
        self.comms: OrderedDict[Key, MPI.Comm | None] = OrderedDict()
        self.pinned: set[Key] = set()
        self.created = 0

    def ensure(self, keys: list[Key], pin: bool = False) -> None:
        """Create missing communicators in the given order; every rank must pass the same keys."""
        for key in keys:
            if key in self.comms:
                self.comms.move_to_end(key)
        for key in keys:
            if key in self.comms:
                continue
            comm = None
            if self.rank in key:
                group = self.world.Get_group().Incl(list(key))
                comm = self.world.Create_group(group, tag=self.created % 32768)
                group.Free()
            self.created += 1
            self.comms[key] = comm
            if pin:
                self.pinned.add(key)
            self._evict(set(keys))

    def _evict(self, needed: set[Key]) -> None:
        """Free least recently used communicators beyond capacity, never one this round needs."""
        while len(self.comms) - len(self.pinned) > self.capacity:
            victim = next((k for k in self.comms if k not in self.pinned and k not in needed), None)
            if victim is None:
                return
            comm = self.comms.pop(victim)
            if comm is not None:
                comm.Free()

    def close(self) -> None:
        """Free every communicator, in creation order (the same on every rank), at the end of a run:
        a long bench runs many jobs in one MPI world and context ids are finite."""
        for comm in self.comms.values():
            if comm is not None:
                comm.Free()
        self.comms.clear()
        self.pinned.clear()

    def get(self, key: Key) -> MPI.Comm:
        comm = self.comms[key]
        if comm is None:
            raise RuntimeError(f"rank {self.rank} is not in communicator {key}")
        return comm


class _MpiBase:
    def __init__(self, ownership: np.ndarray, sizes: tuple[int, ...], comm: MPI.Intracomm | None = None,
                 cache_capacity: int = 64) -> None:
        self.world = comm if comm is not None else MPI.COMM_WORLD
        self.rank = self.world.Get_rank()
        self.ownership = ownership
        self.sizes = sizes
        self.k, self.b = ownership.shape
        self.n_ranks = self.world.Get_size() - 1
        try:
            check_fits(self.k, self.n_ranks)
        except ValueError as e:
            raise RuntimeError(str(e)) from None
        self.hosted = [clients_of(r, self.k, self.n_ranks) for r in range(1, self.n_ranks + 1)]
        self.cache = CommCache(self.world, cache_capacity)
        self.owners = by_rank(ownership, self.n_ranks)  # [R, G]: rank r+1 hosts an owner of group g
        self.cohorts = buckets([members(self.owners[:, b]) for b in range(self.b)])
        self._last_uploads = b""
        self._last_buckets: list[Bucket] = []

    def _build_cohorts(self) -> None:
        self.cache.ensure([key for key, _ in self.cohorts], pin=True)

    def _trainer_buckets(self, plan: RoundPlan) -> list[Bucket]:
        """Per member set: server + the ranks hosting an uploader of the groups that share it. The
        same uploads as last round (FedAvg: every round) reuse last round's answer: ensure() would
        find every communicator and leave the cache as it is, on every rank alike."""
        sig = plan.uploads.tobytes()
        if sig != self._last_uploads:
            up = by_rank(plan.uploads, self.n_ranks)
            self._last_buckets = buckets([members(up[:, b]) for b in range(self.b)])
            self.cache.ensure([key for key, _ in self._last_buckets])
            self._last_uploads = sig
        return self._last_buckets

    def _update_lengths(self, plan: RoundPlan, groups: tuple[int, ...]) -> list[int]:
        return [update_len(self.sizes[b], bool(plan.plain[b])) for b in groups]


class MpiServerTransport(_MpiBase, ServerTransport):
    atomic_rounds = True  # a round started on every rank must end on every rank (or the job is ended)
    hosts: list[str]  # by rank, from the handshakes (to name a rank that stops answering)

    def start(self, base: np.ndarray, me: Handshake) -> list[Handshake]:
        recv = np.zeros((self.n_ranks + 1, _HS_LEN), np.uint8)
        wait_all([self.world.Igather(encode_handshake(me), recv, root=0)])
        hands = [decode_handshake(r) for r in recv]
        self.hosts = [h.host for h in hands]
        bad = [(r, h) for r, h in enumerate(hands) if (h.version, h.fingerprint) != (me.version, me.fingerprint)]
        if bad:
            r, h = bad[0]
            msg = (f"rank {r} on {h.host} runs relief-mpi {h.version} with data fingerprint {h.fingerprint}, "
                   f"rank 0 runs {me.version} with {me.fingerprint}; all ranks must run the same version on "
                   "the same data")
            self.fail(msg)
            from relief_mpi.mpirun_types import StartupRefused

            raise StartupRefused(msg, printable=True)
        status = np.array([0, base.size], np.int64)
        wait_all([self.world.Ibcast(status, root=0)])
        if base.size:
            wait_all([self.world.Ibcast(np.ascontiguousarray(base, np.float32), root=0)])
        self._build_cohorts()
        return hands

    def fail(self, message: str) -> None:
        del message
        wait_all([self.world.Ibcast(np.array([1, 0], np.int64), root=0)])

    def run_round(self, plan: RoundPlan, blocks: list[np.ndarray]) -> RoundExchange:
        msg = wire.plan_message(plan, self.k, self.b)
        n = self.n_ranks
        acks = np.zeros((n, 1), np.int64)
        reports = [np.zeros((len(c), len(wire.REPORT_FIELDS)), np.float64) for c in self.hosted]
        reqs = [self.world.Isend(msg, r, TAG_PLAN) for r in range(1, n + 1)]
        ack_reqs = [self.world.Irecv(acks[r - 1], r, TAG_ACK) for r in range(1, n + 1)]
        report_reqs = [self.world.Irecv(reports[r - 1], r, TAG_REPORT) for r in range(1, n + 1)]
        for key, groups in self.cohorts:  # posted before any new trainer communicator is created
            out = np.concatenate([np.asarray(blocks[b], np.float32).ravel() for b in groups])
            reqs.append(self.cache.get(key).Ibcast(out, root=0))
        trainers = self._trainer_buckets(plan)
        recv: list[tuple[tuple[int, ...], list[int], np.ndarray]] = []
        for key, groups in trainers:
            lengths = self._update_lengths(plan, groups)
            buf = np.zeros(sum(lengths), UPDATE_DTYPE)
            recv.append((groups, lengths, buf))
            reqs.append(self.cache.get(key).Ireduce(MPI.IN_PLACE, buf, op=MPI.SUM, root=0))
        try:
            wait_all(ack_reqs + report_reqs + reqs, deadline=self.deadline)
        except WaitTimeout as e:
            raise self._timeout(plan.round, [i for i in e.pending if i < n],
                                [i - n for i in e.pending if n <= i < 2 * n]) from None
        sums = {}
        for groups, lengths, buf in recv:
            for b, part in zip(groups, split(buf, lengths), strict=True):
                sums[b] = GroupSums.unpack(part, self.sizes[b], bool(plan.plain[b]))
        table = np.zeros((self.k, len(wire.REPORT_FIELDS)), np.float64)
        for r in range(n):
            table[r::n] = reports[r]  # rank r+1 hosts clients r, r+n, ...: one strided copy per rank
        return RoundExchange(dict(sorted(sums.items())), table)

    def _timeout(self, rnd: int, no_ack: list[int], no_report: list[int]) -> RoundTimeout:
        """Name the ranks that stopped answering: first those that never acknowledged the plan
        (only they themselves can be the cause), else those that never reported (a client rank
        reports after its part of the block exchange, so this includes one stopped inside it)."""
        def named(indices: list[int]) -> str:
            ranks = [i + 1 for i in indices]
            return ", ".join(f"rank {r} on {self.hosts[r] if r < len(self.hosts) else '?'}" for r in ranks)

        if no_ack:
            who, what = named(no_ack), "did not answer"
        elif no_report:
            who, what = named(no_report), "did not finish"
        else:
            who, what = "every client reported but", "a block exchange did not complete"
        e = RoundTimeout(f"round {rnd}: {who} {what} within the round timeout of {self.timeout_s:.0f} s "
                         "(--round-timeout); the job was ended")
        e.ranks = [i + 1 for i in (no_ack or no_report)]
        return e

    def stop(self) -> None:
        msg = wire.plan_message(None, self.k, self.b)
        wait_all([self.world.Isend(msg, r, TAG_PLAN) for r in range(1, self.n_ranks + 1)])
        self.cache.close()


class MpiClientTransport(_MpiBase, ClientTransport):
    """One client rank: the exchange of all the clients it hosts (self.local, in training order)."""

    def __init__(self, ownership: np.ndarray, sizes: tuple[int, ...], comm: MPI.Intracomm | None = None,
                 cache_capacity: int = 64) -> None:
        super().__init__(ownership, sizes, comm, cache_capacity)
        self.local = self.hosted[self.rank - 1]
        self.owned = self.owners[self.rank - 1]

    def start(self, me: Handshake) -> np.ndarray | None:
        wait_all([self.world.Igather(encode_handshake(me), None, root=0)])
        status = np.zeros(2, np.int64)
        wait_all([self.world.Ibcast(status, root=0)])
        if status[0] != 0:
            return None
        base = np.zeros(int(status[1]), np.float32)
        if base.size:
            wait_all([self.world.Ibcast(base, root=0)])
        self._build_cohorts()
        return base

    def next_plan(self) -> RoundPlan | None:
        msg = np.zeros(wire.plan_len(self.k, self.b), np.float64)
        wait_all([self.world.Irecv(msg, 0, TAG_PLAN)])
        if wire.is_stop(msg):
            self.cache.close()
            return None
        self._ack = np.array([int(msg[0])], np.int64)
        self._ack_req = self.world.Isend(self._ack, 0, TAG_ACK)  # completed with the blocks' wait
        plan = wire.decode_plan(msg)
        self._trainers = self._trainer_buckets(plan)
        return plan

    def receive_blocks(self, plan: RoundPlan) -> dict[int, np.ndarray]:
        """The global value of every group one of this rank's clients owns (views of the received buffers)."""
        out: dict[int, np.ndarray] = {}
        reqs = [self._ack_req]
        for key, groups in self.cohorts:
            if self.owned[groups[0]]:
                buf = np.zeros(sum(self.sizes[b] for b in groups), np.float32)
                out.update(zip(groups, split(buf, [self.sizes[b] for b in groups]), strict=True))
                reqs.append(self.cache.get(key).Ibcast(buf, root=0))
        wait_all(reqs)
        return out

    def send(self, plan: RoundPlan, updates: dict[int, np.ndarray], report: np.ndarray) -> None:
        """Reduce this rank's summed update buffers (one per group its clients uploaded), then send its
        clients' reports (float64 [clients here, fields], in training order). The report goes only
        once this rank's part of every reduce is done, so a rank that stops mid-exchange is one the
        server has no report from, and the round watchdog can name it (as raw mpi4py would order
        it: Reduce, then Send)."""
        reqs = []
        for key, groups in self._trainers:
            if self.rank in key:
                buf = updates[groups[0]] if len(groups) == 1 else np.concatenate([updates[b] for b in groups])
                reqs.append(self.cache.get(key).Ireduce(buf, None, op=MPI.SUM, root=0))
        wait_all(reqs)
        wait_all([self.world.Isend(np.ascontiguousarray(report, np.float64), 0, TAG_REPORT)])
