"""Multi-host test: three hosts emulated as Linux network namespaces joined by veth links.

Topology (all addresses live inside the namespaces; nothing is routed anywhere else):

    <p>h0 (ws01, 10.200.0.10) --veth--+
    <p>h1 (orin-agx-01, 10.200.0.11) --veth--+-- bridge in <p>sw
    <p>h2 (orin-agx-02, 10.200.0.12) --veth--+

Ranks: 0 (the server) and 1 on ws01, 2 on orin-agx-01, 3 on orin-agx-02. The shipped
hostfiles/workstation-2orin.* put two clients on ws01; one is enough for a host whose ranks talk
over shared memory beside hosts reached over the veth links, and saves a process.

Each host namespace has only `lo` and `rmv0` (its end of the veth) with a /24 address and no
default route, so MPI traffic can reach the other namespaces and nothing else. Every host gets
its own UTS namespace too (`unshare --uts` + `hostname`), so socket.gethostname() differs per
host and the fleet file keyed by host name (hostfiles/workstation-2orin.fleet.toml) applies.

MPICH's Hydra runs inside h0 (`-localhost 10.200.0.10`, `-iface rmv0`) and starts the proxies of
the other hosts with `-launcher ssh -launcher-exec <script>`, where the script runs
`ip netns exec <ns> unshare --uts sh -c "hostname <name> && exec <proxy command>"`. The pip MPICH
is ch4:ucx (ofi as the alternative): UCX would reach the other namespaces through shared
memory (same kernel, same /dev/shm), so UCX_TLS=tcp,self and UCX_NET_DEVICES=rmv0 (FI_PROVIDER=tcp,
FI_TCP_IFACE=rmv0 for ofi) make every inter-host byte cross the veth links; ranks within one
namespace still use MPICH's shared memory, as on a real host.

The test skips where namespaces cannot be made (not root, no `ip`/`unshare`, EPERM), gives every
subprocess a timeout, and deletes its namespaces (and kills what runs in them) in a finally.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py
import pytest

from tests.helpers import FAST, REPO, is_open_mpi, mpi_env, mpiexec

pytestmark = pytest.mark.mpi

PREFIX = f"rmt{os.getpid() % 100000}"
SUBNET = "10.200.0"
IFACE = "rmv0"
HOSTNAMES = ("ws01", "orin-agx-01", "orin-agx-02")  # as in hostfiles/workstation-2orin.*
SLOTS = (2, 1, 1)  # rank 0 (server) + 1 client on ws01, one client per Orin: 4 ranks, 3 hosts
CMD_TIMEOUT = 30


@dataclass(frozen=True)
class Host:
    ns: str
    name: str
    addr: str
    slots: int


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=CMD_TIMEOUT)
    if check and r.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {r.stderr.strip()}")
    return r


def _skip_reason() -> str | None:
    if sys.platform != "linux":
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "creating network namespaces needs root (run the test suite as root, e.g. in CI's container)"
    for tool in ("ip", "unshare"):
        if shutil.which(tool) is None:
            return f"no `{tool}` on PATH (apt-get install iproute2 util-linux)"
    if mpiexec() is None:
        return "no mpiexec (pip install mpich)"
    if is_open_mpi():
        return "the netns test drives MPICH's Hydra launcher; this mpiexec is Open MPI"
    return None


def _teardown(hosts: list[Host], switch: str) -> None:
    """Kill whatever still runs in our namespaces (only processes this test started), delete them."""
    for ns in [h.ns for h in hosts] + [switch]:
        r = _ip("netns", "pids", ns, check=False)
        for pid in r.stdout.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        _ip("netns", "del", ns, check=False)
    for i in range(len(hosts)):  # a veth pair left in the root namespace by a half-done setup
        _ip("link", "del", f"{PREFIX}v{i}a", check=False)


def _traffic(host: Host) -> dict[str, int]:
    r = _ip("-j", "-s", "-n", host.ns, "link", "show", IFACE)
    stats = json.loads(r.stdout)[0]["stats64"]
    return {"rx_bytes": stats["rx"]["bytes"], "tx_bytes": stats["tx"]["bytes"],
            "rx_packets": stats["rx"]["packets"], "tx_packets": stats["tx"]["packets"]}


@pytest.fixture(scope="module")
def netns_hosts() -> Iterator[list[Host]]:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    hosts = [Host(f"{PREFIX}h{i}", HOSTNAMES[i], f"{SUBNET}.{10 + i}", SLOTS[i]) for i in range(3)]
    switch = f"{PREFIX}sw"
    previous = signal.getsignal(signal.SIGTERM)

    def on_term(signum: int, frame: object) -> None:  # a killed test run still cleans up
        raise SystemExit(f"terminated by signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    try:
        try:
            _ip("netns", "add", switch)
        except RuntimeError as e:
            pytest.skip(f"cannot create a network namespace here ({e})")
        try:
            _ip("-n", switch, "link", "add", "br0", "type", "bridge")
            _ip("-n", switch, "link", "set", "br0", "up")
            for i, h in enumerate(hosts):
                a, b = f"{PREFIX}v{i}a", f"{PREFIX}v{i}b"
                _ip("netns", "add", h.ns)
                _ip("link", "add", a, "type", "veth", "peer", "name", b)
                _ip("link", "set", a, "netns", h.ns)
                _ip("link", "set", b, "netns", switch)
                _ip("-n", h.ns, "link", "set", a, "name", IFACE)
                _ip("-n", h.ns, "addr", "add", f"{h.addr}/24", "dev", IFACE)
                _ip("-n", h.ns, "link", "set", IFACE, "up")
                _ip("-n", h.ns, "link", "set", "lo", "up")
                _ip("-n", switch, "link", "set", b, "master", "br0")
                _ip("-n", switch, "link", "set", b, "up")
        except RuntimeError as e:
            pytest.skip(f"cannot build the veth/bridge topology here ({e})")
        yield hosts
    finally:
        _teardown(hosts, switch)
        signal.signal(signal.SIGTERM, previous)
        left = [ns for ns in _ip("netns", "list", check=False).stdout.split() if ns.startswith(PREFIX)]
        assert not left, f"namespaces left behind: {left}"


def _launcher(tmp: Path, hosts: list[Host]) -> Path:
    """Hydra's ssh launcher stand-in: `<script> -x HOST <proxy command>` -> run it in HOST's namespace."""
    cases = "\n".join(f'    {h.addr}) ns={h.ns}; name={h.name} ;;' for h in hosts)
    script = tmp / "netns-launcher.sh"
    script.write_text(f"""#!/bin/sh
[ "$1" = "-x" ] && shift
host=$1
shift
case "$host" in
{cases}
    *) echo "netns-launcher: unknown host $host" >&2; exit 1 ;;
esac
exec ip netns exec "$ns" unshare --uts /bin/sh -c "hostname $name && exec $*"
""")
    script.chmod(0o755)
    return script


def _run_on_head(hosts: list[Host], tmp: Path, args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """launch/cluster.sh ARGS, started inside the head namespace (h0) with its own host name."""
    head = hosts[0]
    hostfile = tmp / "netns.mpich"
    hostfile.write_text("# three namespaces\n" + "".join(f"{h.addr}:{h.slots}\n" for h in hosts))
    env = mpi_env({
        "MPIEXEC": str(mpiexec()),
        "RELIEF_MPI_PYTHON": sys.executable,
        "MPIEXEC_ARGS": f"-launcher ssh -launcher-exec {_launcher(tmp, hosts)} -localhost {head.addr}",
        "UCX_TLS": "tcp,self", "UCX_NET_DEVICES": IFACE,  # ch4:ucx: no shared memory between "hosts"
        "FI_PROVIDER": "tcp", "FI_TCP_IFACE": IFACE,  # ch4:ofi builds
        # Every namespace sees all of the host's cores, so each client rank takes 2 torch threads
        # (its profile's threads, capped by the cores it got): 3 ranks' spinning OpenMP threads
        # on 2 cores made a round 5x slower. Idle threads that sleep change no number checked here.
        "OMP_WAIT_POLICY": "PASSIVE",
    })
    inner = [str(REPO / "launch" / "cluster.sh"), str(hostfile), "--iface", IFACE,
             "--fleet", str(REPO / "hostfiles" / "workstation-2orin.fleet.toml"),
             "--profiles", str(REPO / "hostfiles" / "profiles"), *args,
             "--device", "cpu"]  # the namespaces' "Jetsons" have no GPU; their native profiles say device = "cuda"
    cmd = ["ip", "netns", "exec", head.ns, "unshare", "--uts", "/bin/sh", "-c",
           f'hostname {head.name} && exec "$@"', "sh", *inner]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp, env=env,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=CMD_TIMEOUT)
        pytest.fail(f"the netns job did not finish within {timeout} s (a hang)\nstdout: {out}\nstderr: {err}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _strategy() -> str:
    from relief_mpi.strategy.registry import strategy_classes

    return "relief" if "relief" in strategy_classes() else "fedavg"


def test_hosts_check_across_namespaces(netns_hosts: list[Host], tmp_path: Path) -> None:
    r = _run_on_head(netns_hosts, tmp_path, ["hosts", "check"], timeout=240)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    print("\n" + r.stdout)
    for rank, host in [(0, "ws01 (10.200.0.10)"), (1, "ws01 (10.200.0.10)"), (2, "orin-agx-01 (10.200.0.11)"),
                       (3, "orin-agx-02 (10.200.0.12)")]:
        row = next(x for x in lines if x.startswith(f"rank {rank} "))
        assert host in row, row
    assert "jetson-agx-orin-native" in next(x for x in lines if x.startswith("rank 2 "))
    assert "raspberry-pi-4" in next(x for x in lines if x.startswith("rank 1 "))
    assert lines[-1] == "ok: 4 rank(s) on 3 host(s) agree"


def test_train_across_namespaces(netns_hosts: list[Host], tmp_path: Path) -> None:
    before = {h.ns: _traffic(h) for h in netns_hosts}
    out = tmp_path / "netns.h5"
    strategy = _strategy()
    r = _run_on_head(netns_hosts, tmp_path, ["--strategy", strategy, "--rounds", "2", "--local-steps", "3",
                                              *FAST, "--quiet", "--out", str(out)], timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    after = {h.ns: _traffic(h) for h in netns_hosts}
    delta = {h.name: {k: after[h.ns][k] - before[h.ns][k] for k in before[h.ns]} for h in netns_hosts}
    with h5py.File(out, "r") as f:
        hosts = json.loads(f.attrs["hosts"])
        down = f["clients/bytes_down"][()].sum(axis=0)  # per client (rank k = client k-1)
        up = f["clients/bytes_up"][()].sum(axis=0)
        profiles = f.attrs["profiles"]
    assert hosts == ["ws01", "ws01", "orin-agx-01", "orin-agx-02"], hosts
    assert len(set(hosts)) > 1
    assert "jetson-agx-orin-native" in str(profiles)
    # The Orin ranks' payload (rank 2 -> client 1, rank 3 -> client 2) crossed their veth links.
    for host, client in (("orin-agx-01", 1), ("orin-agx-02", 2)):
        assert down[client] > 0 and up[client] > 0
        assert delta[host]["rx_bytes"] >= down[client], (host, delta[host], down[client])
        assert delta[host]["tx_bytes"] >= up[client], (host, delta[host], up[client])
    report = {"strategy": strategy, "veth_bytes": delta,
              "logged_payload": {"orin-agx-01": {"down": down[1], "up": up[1]},
                                 "orin-agx-02": {"down": down[2], "up": up[2]}}}
    print("\nnetns traffic (ip -s link, this run):", json.dumps(report, indent=1, default=float))
    dest = os.environ.get("RELIEF_NETNS_REPORT")
    if dest:
        Path(dest).write_text(json.dumps(report, indent=1, default=float))


def test_skips_with_a_reason_when_not_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    reason = _skip_reason()
    assert reason and "needs root" in reason
