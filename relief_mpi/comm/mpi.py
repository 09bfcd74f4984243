"""MPI transport: cohort communicators, nonblocking collectives, sleeping waits, no pickle.

Communicators are keyed by their member set (always including the server, rank 0) and created
with Comm.Create_group, which only the members call. Cohort communicators (server + owners of a
block) are built once and pinned; per-round trainer communicators come from the same cache, so a
client that did not train block b takes no part in b's Reduce and sends none of its bytes.
Every rank receives the full allocation, so every rank replays the same cache history (creation
order, LRU eviction): members agree on which communicators exist without any extra messages.

The plan, each client's acknowledgement of it and each client's report travel point to point
between the server and that client, not through collectives: a collective can be held up by any
one of its members, a point-to-point message only by its two ends. So when a round overruns its
deadline (the round watchdog), the server knows which ranks never acknowledged the plan (they
stopped answering) and which never reported (stopped, or held up by one that did).
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
from mpi4py import MPI

from relief_mpi.comm import wire
from relief_mpi.comm.transport import ClientTransport, Handshake, RoundExchange, ServerTransport
from relief_mpi.comm.wait import WaitTimeout, wait_all
from relief_mpi.rounds import GroupSums, RoundPlan, zero_update
from relief_mpi.stops import RoundTimeout

Key = tuple[int, ...]
TAG_HEADER, TAG_BODY, TAG_ACK, TAG_REPORT = 11, 12, 13, 14
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

    def __init__(self, world: MPI.Comm, capacity: int = 64) -> None:
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


def members(column: np.ndarray) -> Key | None:
    """Server + the clients flagged in a [K] column; None if no client is flagged."""
    clients = tuple(int(k) + 1 for k in np.flatnonzero(column))
    return (0, *clients) if clients else None


class _MpiBase:
    def __init__(self, ownership: np.ndarray, sizes: tuple[int, ...], comm: MPI.Comm | None = None,
                 cache_capacity: int = 64) -> None:
        self.world = comm if comm is not None else MPI.COMM_WORLD
        self.rank = self.world.Get_rank()
        self.ownership = ownership
        self.sizes = sizes
        self.k, self.b = ownership.shape
        if self.world.Get_size() != self.k + 1:
            raise RuntimeError(f"{self.k} clients need {self.k + 1} ranks, world has {self.world.Get_size()}")
        self.cache = CommCache(self.world, cache_capacity)
        self.cohort_keys = [members(ownership[:, b]) for b in range(self.b)]

    def _build_cohorts(self) -> None:
        self.cache.ensure([k for k in self.cohort_keys if k is not None], pin=True)

    def _trainer_keys(self, plan: RoundPlan) -> list[Key | None]:
        """Per group: server + the clients that upload it this round."""
        up = plan.uploads
        keys = [members(up[:, b]) for b in range(self.b)]
        self.cache.ensure([k for k in keys if k is not None])
        return keys


class MpiServerTransport(_MpiBase, ServerTransport):
    atomic_rounds = True  # a round started on every rank must end on every rank (or the job is ended)
    hosts: list[str]  # by rank, from the handshakes (to name a rank that stops answering)

    def start(self, base: np.ndarray, me: Handshake) -> list[Handshake]:
        recv = np.zeros((self.k + 1, _HS_LEN), np.uint8)
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
        header, body = wire.plan_header(plan, self.k, self.b), wire.plan_body(plan)
        acks = np.zeros((self.k, 1), np.int64)
        reports = np.zeros((self.k, len(wire.REPORT_FIELDS)), np.float64)
        reqs = []
        for c in range(1, self.k + 1):
            reqs += [self.world.Isend(header, c, TAG_HEADER), self.world.Isend(body, c, TAG_BODY)]
        ack_reqs = [self.world.Irecv(acks[c - 1], c, TAG_ACK) for c in range(1, self.k + 1)]
        report_reqs = [self.world.Irecv(reports[c - 1], c, TAG_REPORT) for c in range(1, self.k + 1)]
        keys = self._trainer_keys(plan)
        for b, key in enumerate(self.cohort_keys):
            if key is not None:
                reqs.append(self.cache.get(key).Ibcast(np.ascontiguousarray(blocks[b], np.float32), root=0))
        recv: dict[int, np.ndarray] = {}
        for b, key in enumerate(keys):
            if key is not None:
                recv[b] = zero_update(self.sizes[b], bool(plan.plain[b]))
                reqs.append(self.cache.get(key).Ireduce(MPI.IN_PLACE, recv[b], op=MPI.SUM, root=0))
        all_reqs = ack_reqs + report_reqs + reqs
        try:
            wait_all(all_reqs, deadline=self.deadline)
        except WaitTimeout as e:
            raise self._timeout(plan.round, [i for i in e.pending if i < self.k],
                                [i - self.k for i in e.pending if self.k <= i < 2 * self.k]) from None
        sums = {b: GroupSums.unpack(v, self.sizes[b], bool(plan.plain[b])) for b, v in recv.items()}
        return RoundExchange(sums, reports)

    def _timeout(self, rnd: int, no_ack: list[int], no_report: list[int]) -> RoundTimeout:
        """Name the ranks that stopped answering: first those that never acknowledged the plan
        (only they themselves can be the cause), else those that never reported."""
        def named(clients: list[int]) -> str:
            ranks = [c + 1 for c in clients]
            return ", ".join(f"rank {r} on {self.hosts[r] if r < len(self.hosts) else '?'}" for r in ranks)

        if no_ack:
            who, what = named(no_ack), "did not answer"
        elif no_report:
            who, what = named(no_report), "did not finish"
        else:
            who, what = "every client reported but", "a block exchange did not complete"
        e = RoundTimeout(f"round {rnd}: {who} {what} within the round timeout of {self.timeout_s:.0f} s "
                         "(--round-timeout); the job was ended")
        e.ranks = [c + 1 for c in (no_ack or no_report)]
        return e

    def stop(self) -> None:
        header = wire.plan_header(None, self.k, self.b)
        wait_all([self.world.Isend(header, c, TAG_HEADER) for c in range(1, self.k + 1)])
        self.cache.close()


class MpiClientTransport(_MpiBase, ClientTransport):
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
        header = np.zeros(wire.HEADER_LEN, np.int64)
        wait_all([self.world.Irecv(header, 0, TAG_HEADER)])
        if header[1]:
            self.cache.close()
            return None
        body = np.zeros((self.k + 1, 2 * self.b + 2), np.float64)
        wait_all([self.world.Irecv(body, 0, TAG_BODY)])
        wait_all([self.world.Isend(header[:1].copy(), 0, TAG_ACK)])
        plan = wire.decode_plan(header, body)
        self._keys = self._trainer_keys(plan)
        return plan

    def receive_blocks(self, plan: RoundPlan) -> dict[int, np.ndarray]:
        me = self.rank - 1
        out: dict[int, np.ndarray] = {}
        reqs = []
        for b, key in enumerate(self.cohort_keys):
            if key is not None and self.ownership[me, b]:
                out[b] = np.zeros(self.sizes[b], np.float32)
                reqs.append(self.cache.get(key).Ibcast(out[b], root=0))
        wait_all(reqs)
        return out

    def send(self, plan: RoundPlan, updates: dict[int, np.ndarray], report: np.ndarray) -> None:
        reqs = [self.cache.get(self._keys[b]).Ireduce(updates[b], None, op=MPI.SUM, root=0)
                for b in sorted(updates)]
        reqs.append(self.world.Isend(np.ascontiguousarray(report, np.float64), 0, TAG_REPORT))
        wait_all(reqs)
