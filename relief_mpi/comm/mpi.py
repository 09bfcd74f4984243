"""MPI transport: cohort communicators, persistent (else nonblocking) collectives, sleeping waits, no pickle.

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

Groups with the same member set share one collective: their blocks travel in one broadcast and
their update buffers in one reduce (FedAvg: one of each per round, whatever the number of groups).
Each is a Collective bound to its communicator and buffer: persistent (MPI-4) where the library
has them, built once and started every round, else a fresh Ibcast / Ireduce on the same buffer.
The plan and ack buffers are reused every round too.

The plan (header and body in one message), each client rank's acknowledgement of it and its
clients' reports travel point to point between the server and that rank, not through
collectives: a collective can be held up by any one of its members, a point-to-point message only
by its two ends. So when a round overruns its deadline (the round watchdog), the server knows
which ranks never acknowledged the plan (they stopped answering) and which never reported
(stopped, or held up by one that did).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
from mpi4py import MPI

from relief_mpi.comm import wire
from relief_mpi.comm.placement import Key, buckets, by_rank, check_fits, clients_of, members, split
from relief_mpi.comm.transport import ClientTransport, Handshake, RoundExchange, ServerTransport
from relief_mpi.comm.wait import WaitTimeout, wait_all
from relief_mpi.comm.watchdog import ServerWatch
from relief_mpi.errors import RoundTimeout, StartupRefused
from relief_mpi.rounds import UPDATE_DTYPE, GroupSums, RoundPlan, update_len

__all__ = ["Collective", "CommCache", "MpiClientTransport", "MpiServerTransport", "decode_handshake",
           "encode_handshake", "persistent_supported"]

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


def persistent_supported() -> bool:
    """Whether this MPI has MPI-4 persistent collectives (MPICH >= 4, Open MPI >= 5). Every rank
    runs the same library, so every rank finds the same answer."""
    try:
        req = MPI.COMM_SELF.Bcast_init(np.zeros(1), root=0)
    except (AttributeError, NotImplementedError, MPI.Exception):
        return False
    req.Free()
    return True


class Collective:
    """A collective on one communicator with its buffer: `start()` posts it, then wait on `req`.

    Persistent (MPI-4 Bcast_init / Reduce_init, created once, started every round) where the MPI
    has them: a nonblocking collective builds its schedule at every post, which measured 45 us of
    a 130 us 5-rank Reduce of 1 KB on 2 cores. Otherwise a fresh Ibcast / Ireduce per start, on the
    same buffer. The root of a reduce takes part in place with nothing of its own (zeros)."""

    def __init__(self, comm: MPI.Comm, kind: str, length: int, dtype: type, root: bool, persistent: bool) -> None:
        self.buf: np.ndarray = np.zeros(length, dtype)
        self._zero = kind == "reduce" and root
        init: Callable[..., MPI.Prequest]
        post: Callable[..., MPI.Request]
        if kind == "bcast":
            init, post = comm.Bcast_init, comm.Ibcast
            args: tuple[Any, ...] = (self.buf,)
            kw: dict[str, Any] = {"root": 0}
        else:
            init, post = comm.Reduce_init, comm.Ireduce
            args = (MPI.IN_PLACE, self.buf) if root else (self.buf, None)
            kw = {"op": MPI.SUM, "root": 0}
        self._req = init(*args, **kw) if persistent else None
        self.req: MPI.Request = self._req if self._req is not None else MPI.REQUEST_NULL
        self._post = partial(post, *args, **kw)

    def start(self) -> MPI.Request:
        """Post the collective on the current contents of `buf`."""
        if self._zero:
            self.buf.fill(0)
        if self._req is not None:
            self._req.Start()
        else:
            self.req = self._post()
        return self.req

    def free(self) -> None:
        if self._req is not None:
            self._req.Free()


class CommCache:
    """Communicators by member set, with a deterministic LRU bound (MPI context ids are finite),
    and the collectives bound to each (freed with it)."""

    def __init__(self, world: MPI.Intracomm, capacity: int = 64, persistent: bool | None = None) -> None:
        self.world = world
        self.rank = world.Get_rank()
        self.capacity = capacity
        self.comms: OrderedDict[Key, MPI.Comm | None] = OrderedDict()
        self.pinned: set[Key] = set()
        self.created = 0
        self.persistent = persistent_supported() if persistent is None else persistent
        self.bound: dict[Key, dict[str, Collective]] = {}

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
            self._free(victim)

    def _free(self, key: Key) -> None:
        for c in self.bound.pop(key, {}).values():
            c.free()
        comm = self.comms.pop(key)
        if comm is not None:
            comm.Free()

    def close(self) -> None:
        """Free every communicator, in LRU order (the same on every rank), at the end of a run:
        a long bench runs many jobs in one MPI world and context ids are finite."""
        for key in list(self.comms):
            self._free(key)
        self.pinned.clear()

    def collective(self, key: Key, kind: str, length: int) -> Collective:
        """The `kind` ("bcast" of float32 blocks, "reduce" of float64 update buffers) of `length`
        on communicator `key`: one of each kind per communicator, replaced (the old one freed) when
        a plan asks for another length, so memory stays one buffer per kind and communicator
        although RELIEF changes which groups share a member set every round. Creating one is a
        collective call on that communicator: every member asks for the same ones in the same
        order (the plan every rank receives decides them); freeing an inactive one is local."""
        per = self.bound.setdefault(key, {})
        c = per.get(kind)
        if c is None or c.buf.size != length:
            if c is not None:
                c.free()
            dtype = np.float32 if kind == "bcast" else UPDATE_DTYPE
            c = per[kind] = Collective(self.get(key), kind, length, dtype, self.rank == 0, self.persistent)
        return c

    def get(self, key: Key) -> MPI.Comm:
        comm = self.comms[key]
        if comm is None:
            raise RuntimeError(f"rank {self.rank} is not in communicator {key}")
        return comm


class _MpiBase:
    def __init__(self, ownership: np.ndarray, sizes: tuple[int, ...], comm: MPI.Intracomm | None = None,
                 cache_capacity: int = 64, persistent: bool | None = None) -> None:
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
        self.cache = CommCache(self.world, cache_capacity, persistent)
        self.owners = by_rank(ownership, self.n_ranks)  # [R, G]: rank r+1 hosts an owner of group g
        self.cohorts = buckets([members(self.owners[:, b]) for b in range(self.b)])
        self._reduces_body = b""
        self._reduces: list[_Reduce] = []

    def _build_cohorts(self) -> list[_Bcast]:
        """The cohort communicators (pinned) and their block broadcasts, for the cohorts this rank is in."""
        self.cache.ensure([key for key, _ in self.cohorts], pin=True)
        out = []
        for key, groups in self.cohorts:
            if self.rank in key:
                sizes = [self.sizes[b] for b in groups]
                op = self.cache.collective(key, "bcast", sum(sizes))
                out.append(_Bcast(groups, op, dict(zip(groups, split(op.buf, sizes), strict=True))))
        return out

    def reduces_for(self, plan: RoundPlan, body: bytes) -> list[_Reduce]:
        """This rank's update reduces for a plan (`body`: wire.body_bytes of its message), one per
        member set: server + the ranks hosting an uploader of the groups that share it (where this
        rank is a member). Every rank calls it for every plan whose body differs from the last one's,
        before the round's collectives start (the server: before its broadcasts; a client: in
        next_plan), so every rank creates the same communicators and persistent reduces in the same
        order. A plan with the same body as last round's (FedAvg: every round) reuses last round's
        answer: ensure() would find every communicator and leave the cache as it is, on every rank
        alike. A membership not cached yet costs a blocking Create_group here, as before."""
        if body != self._reduces_body:
            up = by_rank(plan.uploads, self.n_ranks)
            trainers = buckets([members(up[:, b]) for b in range(self.b)])
            self.cache.ensure([key for key, _ in trainers])
            self._reduces = []
            for key, groups in trainers:
                if self.rank in key:
                    plain = [bool(plan.plain[b]) for b in groups]
                    lengths = [update_len(self.sizes[b], p) for b, p in zip(groups, plain, strict=True)]
                    starts = np.cumsum([0, *lengths[:-1]]).tolist()
                    parts = tuple(zip(groups, starts, [self.sizes[b] for b in groups], plain, strict=True))
                    self._reduces.append(_Reduce(groups, self.cache.collective(key, "reduce", sum(lengths)), parts))
            self._reduces_body = body
        return self._reduces


@dataclass(frozen=True)
class _Bcast:
    """One cohort's block broadcast: its groups (in buffer order) and a view of each in the buffer."""

    groups: tuple[int, ...]
    op: Collective
    views: dict[int, np.ndarray]


@dataclass(frozen=True)
class _Reduce:
    """One member set's update reduce: its groups (in buffer order) and where each one's buffer is."""

    groups: tuple[int, ...]
    op: Collective
    parts: tuple[tuple[int, int, int, bool], ...]  # (group, start, size, plain)


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
            raise StartupRefused(msg, printable=True)
        status = np.array([0, base.size], np.int64)
        wait_all([self.world.Ibcast(status, root=0)])
        if base.size:
            wait_all([self.world.Ibcast(np.ascontiguousarray(base, np.float32), root=0)])
        self._bcasts = self._build_cohorts()
        # reused every round (the last round's requests are all complete when the next starts)
        self._msg = np.zeros(wire.plan_len(self.k, self.b), np.float64)
        self._acks = np.zeros((self.n_ranks, 1), np.int64)
        self._reports = [np.zeros((len(c), len(wire.REPORT_FIELDS)), np.float64) for c in self.hosted]
        return hands

    def fail(self, message: str) -> None:
        del message
        wait_all([self.world.Ibcast(np.array([1, 0], np.int64), root=0)])

    def run_round(self, plan: RoundPlan, blocks: list[np.ndarray]) -> RoundExchange:
        n = self.n_ranks
        msg = wire.plan_message(plan, self.k, self.b, out=self._msg)
        acks, reports = self._acks, self._reports
        reqs = [self.world.Isend(msg, r, TAG_PLAN) for r in range(1, n + 1)]
        ack_reqs = [self.world.Irecv(acks[r - 1], r, TAG_ACK) for r in range(1, n + 1)]
        report_reqs = [self.world.Irecv(reports[r - 1], r, TAG_REPORT) for r in range(1, n + 1)]
        trainers = self.reduces_for(plan, wire.body_bytes(msg))
        reqs += self.start_exchange(trainers, blocks)
        try:
            wait_all(ack_reqs + report_reqs + reqs, deadline=self.deadline)
        except WaitTimeout as e:
            raise self._timeout(plan.round, [i for i in e.pending if i < n],
                                [i - n for i in e.pending if n <= i < 2 * n]) from None
        table = np.zeros((self.k, len(wire.REPORT_FIELDS)), np.float64)
        for r in range(n):
            table[r::n] = reports[r]  # rank r+1 hosts clients r, r+n, ...: one strided copy per rank
        return RoundExchange(self.sums(plan, trainers), table)

    def start_exchange(self, trainers: list[_Reduce], blocks: list[np.ndarray]) -> list[MPI.Request]:
        """The block exchange proper: every cohort's block broadcast and every trainer reduce,
        started together (the trainer communicators and their reduces were made before, in the
        order every client rank makes them: next_plan, before receive_blocks)."""
        reqs = []
        for bc in self._bcasts:
            for b, view in bc.views.items():
                view[:] = blocks[b].ravel()
            reqs.append(bc.op.start())
        return reqs + [red.op.start() for red in trainers]

    def sums(self, plan: RoundPlan, trainers: list[_Reduce]) -> dict[int, GroupSums]:
        """Every uploaded group's sums, from the completed reduces (copies: their buffers are the
        next round's too)."""
        out = {}
        for red in trainers:
            buf = red.op.buf.copy()
            for b, start, size, plain in red.parts:
                out[b] = GroupSums.unpack(buf[start:start + update_len(size, plain)], size, plain)
        return out if len(trainers) == 1 else dict(sorted(out.items()))  # one reduce: already in order

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
                 cache_capacity: int = 64, persistent: bool | None = None) -> None:
        super().__init__(ownership, sizes, comm, cache_capacity, persistent)
        self.local = self.hosted[self.rank - 1]
        self.owned = self.owners[self.rank - 1]
        self._msg = np.zeros(wire.plan_len(self.k, self.b), np.float64)  # every plan lands here
        self._ack = np.zeros(1, np.int64)
        self._plan_req = self._ack_req = self._report_req = MPI.REQUEST_NULL
        self._plan: RoundPlan | None = None  # last round's, reused while the body repeats
        self.watch: ServerWatch | None = None  # the bound on the server's silence (comm.watchdog); None: none

    def _wait(self, requests: list[MPI.Request]) -> None:
        """wait_all, bounded by the watch on the server: ServerSilent when it passes."""
        if self.watch is None:
            wait_all(requests)
            return
        try:
            wait_all(requests, deadline=self.watch.deadline())
        except WaitTimeout:
            raise self.watch.silent() from None

    def start(self, me: Handshake) -> np.ndarray | None:
        wait_all([self.world.Igather(encode_handshake(me), None, root=0)])
        status = np.zeros(2, np.int64)
        wait_all([self.world.Ibcast(status, root=0)])
        if status[0] != 0:
            return None
        base = np.zeros(int(status[1]), np.float32)
        if base.size:
            wait_all([self.world.Ibcast(base, root=0)])
        self._bcasts = self._build_cohorts()
        self._plan_req = self.world.Irecv(self._msg, 0, TAG_PLAN)
        return base

    def next_plan(self) -> RoundPlan | None:
        """The next round's plan (None: the server stopped), acknowledged at once. Its receive was
        posted when the last round's report went out (start(): before the first), so the plan lands
        in place whenever it comes."""
        self._wait([self._plan_req, self._report_req])
        if self.watch is not None:
            self.watch.plan_arrived()
        msg = self._msg
        if wire.is_stop(msg):
            self.cache.close()
            return None
        self._ack[0] = msg[0]
        self._ack_req = self.world.Isend(self._ack, 0, TAG_ACK)  # completed with the blocks' wait
        body = wire.body_bytes(msg)
        last = self._plan
        if last is not None and body == self._reduces_body:  # last round's plan but for its number (FedAvg)
            plan = RoundPlan(int(msg[0]), last.alloc, last.coef, last.steps, last.deadline_s, last.plain)
        else:
            plan = wire.decode_plan(msg)  # copies: the buffer receives the next plan
            self.reduces_for(plan, body)
        self._plan = plan
        return plan

    def receive_blocks(self, plan: RoundPlan) -> dict[int, np.ndarray]:
        """The global value of every group one of this rank's clients owns (views, valid for this
        round: see blocks())."""
        self._wait([self._ack_req] + self.start_blocks())
        return self.blocks()

    def send(self, plan: RoundPlan, updates: dict[int, np.ndarray], report: np.ndarray) -> None:
        """Reduce this rank's summed update buffers (one per group its clients uploaded), then send its
        clients' reports (float64 [clients here, fields], in training order) and post the receive of
        the next plan. The report goes only once this rank's part of every reduce is done, so a rank
        that stops mid-exchange is one the server has no report from, and the round watchdog can
        name it (as raw mpi4py would order it: Reduce, then Send). next_plan completes the send."""
        self._wait(self.start_updates(updates))
        self._report = np.array(report, np.float64)  # kept until the send completes
        self._report_req = self.world.Isend(self._report, 0, TAG_REPORT)
        self._plan_req = self.world.Irecv(self._msg, 0, TAG_PLAN)

    def start_blocks(self) -> list[MPI.Request]:
        """Start receiving the blocks of every cohort this rank is in."""
        return [bc.op.start() for bc in self._bcasts]

    def blocks(self) -> dict[int, np.ndarray]:
        """The received blocks by group: views of the receive buffers, valid until the next round's
        blocks arrive (a client reads them within its round)."""
        if len(self._bcasts) == 1:  # the common case (FedAvg) without the comprehension: a hot path
            return dict(self._bcasts[0].views)
        return {b: v for bc in self._bcasts for b, v in bc.views.items()}

    def start_updates(self, updates: dict[int, np.ndarray]) -> list[MPI.Request]:
        """Start this round's update reduces on the summed buffers (one per uploaded group)."""
        reqs = []
        for red in self._reduces:  # this plan's (next_plan called reduces_for)
            if len(red.groups) == 1:  # a copy, not a concatenate of one: measured on the 1-4 KB path
                red.op.buf[:] = updates[red.groups[0]]
            else:
                np.concatenate([updates[b] for b in red.groups], out=red.op.buf)
            reqs.append(red.op.start())
        return reqs
