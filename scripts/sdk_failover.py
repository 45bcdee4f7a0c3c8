#!/usr/bin/env python3
"""The official Anthropic Python SDK's worker loop across a leader kill (docs/contract.md §8).

Usage (the SDK pinned as .ci/run pins it, the server built with `cargo build -p
worklease-server`):

    pip install 'anthropic==2.14.0'
    python3 scripts/sdk_failover.py --spawn PATH/TO/worklease-server

Unlike scripts/sdk_smoke.py, this script drives private names of the SDK's worker module
(`anthropic.lib.environments._worker`: `_heartbeat_loop`, `_LeaseEndReason`), which the
2.x releases have up to 2.15.0 (checked: 2.10.0, 2.14.0; 2.16.0 replaced them with
`_lease.Lease`), hence the pin.

starts a three-node replicated cluster on free loopback ports (data directories in a
temporary directory, `--default-ttl-seconds 10`, `--log-level info`, each node's stderr kept
in a file), waits for a leader and points the SDK at a FOLLOWER (`/v1` prefix, `auth_token`,
the SDK's default retries, which retry a 503). Then:

1. it creates an environment and work items (`client.post` for the items, as
   scripts/sdk_smoke.py does);
2. the SDK's own worker loop serves them: `iter_work` (in its drain-and-dispatch shape,
   `auto_stop=False`) claims and acks each item and hands it to the SDK's heartbeat loop
   (`_heartbeat_loop`, a private function of `anthropic.lib.environments._worker`, the one
   `EnvironmentWorker` runs), which beats every ttl/2 = 5 s (the loop takes no interval: it
   derives it from the TTL the server answers, here the lowest default the server accepts);
3. while every item is held and has been heartbeated twice, it `kill -9`s the leader while
   heartbeats are in flight: a third of a heartbeat round trip after the SDK sent the beat of
   the middle item (the items were claimed ~0.1 s apart, so the beats before it have just
   been answered, it is being committed at the leader, and the ones after it arrive during
   the election), checks that one was in flight and reports how each in-flight beat was
   answered (its `last_heartbeat` tells whether the old leader had stamped it), times the
   election, and keeps the loop running until every item has had two more successful beats
   after it;
4. it checks that no lease was lost: no heartbeat loop ended, no request met a 412, every item
   is still `active` with the `lease_epoch` it had before the kill (`work.retrieve`), and the
   SDK saw no 5xx but the 503 + `Retry-After` a node answers while no leader is known (a
   heartbeat in flight at the leader as it died is answered once, 200: the follower replays
   it to the new leader with its origin id, docs/clustering.md, "Forwarding"); that
   the poller claims items created after the failover; and that every item then stops
   normally (`work.stop` -> stopping, the heartbeat loop's stop signal, the worker's
   confirming stop -> stopped);
5. it stops the two remaining nodes with SIGTERM (checking that they exit 0), and removes the
   temporary directory, also on failure, when it first prints the SDK's last requests, its
   log and the tail of every node's log.

Exits non-zero with `FAILED: ...` on the first unexpected answer.
"""

import asyncio
import datetime
import json
import logging
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

import anthropic
from anthropic.lib.environments import _worker, iter_work
from anthropic.types.beta.environments import BetaSelfHostedWork

TOKEN = "sdk-failover-token"
# What the members present to each other (--cluster-secret); never the token.
CLUSTER_SECRET = "sdk-failover-cluster-secret-0123456789abcdef"
TTL_SECONDS = 10  # the lowest default TTL the server accepts: the SDK's loop beats every 5 s
HELD_BEFORE = 12  # items claimed and heartbeated before the kill
CREATED_AFTER = 2  # items created after the new leader is elected
BEATS_AFTER = 2  # successful beats every held item must make after the election
STAGGER_SECONDS = 0.05  # between claims: a round of beats is ~1 s long, beats tens of ms apart
STARTED = time.monotonic()
REPLAYED = "replaying it"  # a follower's log line when a forward broke and it replays the change


def check(condition, message):
    if not condition:
        sys.exit(f"FAILED: {message}")
    print(f"ok: {message}")


def since_start(at=None):
    return (time.monotonic() if at is None else at) - STARTED


def wait_until(what, condition, timeout, healthy=lambda: None):
    """Waits until `condition()` holds, calling `healthy()` (which exits on a failure) between
    tries; exits with `FAILED: what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        healthy()
        if condition():
            return
        if time.monotonic() > deadline:
            sys.exit(f"FAILED: {what} (waited {timeout} s)")
        time.sleep(0.05)


def main():
    if len(sys.argv) != 3 or sys.argv[1] != "--spawn":
        sys.exit("usage: python3 scripts/sdk_failover.py --spawn PATH/TO/worklease-server")
    spawned(sys.argv[2])


def spawned(binary):
    """Runs the failover against a cluster this script starts, and always stops it."""
    work_dir = tempfile.mkdtemp(prefix="sdk-failover-")
    cluster = Cluster(binary, work_dir)
    trace = Trace()
    running = {}
    try:
        cluster.start()
        failover(cluster, trace, running)
        running.pop("worker").close()
        running.pop("client").close()
        survivors = sorted(cluster.live())
        stopping = time.monotonic()
        codes = cluster.stop()
        check(
            all(code == 0 for code in codes.values()),
            f"SIGTERM stops the remaining nodes {survivors} in {time.monotonic() - stopping:.2f} s: exit codes {codes}",
        )
        print("the SDK's worker loop kept every lease across a leader kill")
    except BaseException:
        trace.dump(sys.stderr)
        if "worker" in running:
            running["worker"].log.dump(sys.stderr)
        cluster.dump_logs(sys.stderr)
        raise
    finally:
        if "worker" in running:
            running.pop("worker").close()
        if "client" in running:
            running.pop("client").close()
        cluster.stop()
        shutil.rmtree(work_dir, ignore_errors=True)


def failover(cluster, trace, running):
    leader, status = cluster.wait_for_leader(timeout=20)
    check(True, f"node {leader} leads (term {status['term']}) {since_start():.2f} s after the start")
    follower = min(n for n in cluster.live() if n != leader)
    base_url = cluster.url(follower)
    print(f"the SDK talks to node {follower} (a follower) at {base_url}")
    client = running["client"] = anthropic.Anthropic(
        base_url=base_url,
        auth_token=TOKEN,
        api_key=None,
        http_client=anthropic.DefaultHttpxClient(
            event_hooks={"request": [trace.request_hook], "response": [trace.hook]}
        ),
    )
    environments = client.beta.environments
    work = environments.work

    env = environments.create(name="sdk-failover", config={"type": "self_hosted"})
    check(env.id.startswith("env_") and env.config.type == "self_hosted", f"environments.create -> {env.id}")

    def create_work(session):
        return client.post(
            f"/v1/environments/{env.id}/work",
            body={"data": {"type": "session", "id": session}, "metadata": {"origin": "sdk-failover"}},
            cast_to=BetaSelfHostedWork,
        )

    # The items are claimed STAGGER_SECONDS apart, so that their beats (every 5 s) are spread out and
    # some fall into the election whenever the leader dies.
    worker = running["worker"] = Worker(client, base_url, env.id, trace, HELD_BEFORE + CREATED_AFTER)
    created = []
    for i in range(HELD_BEFORE):
        created.append(create_work(f"sess_before{i}"))
        wait_until(
            f"iter_work claims {created[-1].id} and the heartbeat loop beats it",
            lambda: created[-1].id in worker.held and worker.held[created[-1].id].beats,
            30,
            worker.healthy,
        )
        time.sleep(STAGGER_SECONDS)
    check(all(w.state == "queued" for w in created), f"created {len(created)} work items (client.post)")
    wait_until(
        f"the heartbeat loop beats each of the {HELD_BEFORE} items twice",
        lambda: all(len(h.beats) >= 2 for h in worker.held.values()),
        30,
        worker.healthy,
    )
    held = list(worker.held.values())
    interval = held[0].beats[1][0] - held[0].beats[0][0]
    check(
        sorted(h.id for h in held) == sorted(w.id for w in created),
        f"iter_work claimed and acked the {HELD_BEFORE} items; the SDK heartbeat loop beats each "
        f"(ttl {held[0].beats[-1][1]:g} s, interval {interval:.2f} s)",
    )

    before = {h.id: work.retrieve(h.id, environment_id=env.id) for h in held}
    epochs = {w.lease_epoch for w in before.values()}
    check(
        all(w.state == "active" and isinstance(w.lease_epoch, int) and w.lease_epoch >= 1 for w in before.values()),
        f"before the kill (work.retrieve): every item active, lease_epoch {sorted(epochs)}",
    )
    cluster.print_status()

    # Kill the leader while heartbeats are in flight at it. A beat the leader committed but did
    # not answer has an ambiguous outcome; the server resolves it: the follower that forwarded
    # it replays it to the new leader under the same origin id, and the new leader answers it
    # from its record of applied origins, so the SDK's loop sees one 200 (it used to see a 503,
    # retry with its old token and take the 412 that followed for a lost lease; docs/clustering.md,
    # "Forwarding"). So the kill follows the SDK's sending of
    # the middle item's beat by a third of the median heartbeat round trip measured so far:
    # that beat has reached the leader, which has stamped it and is committing it (its answer
    # tells: a `last_heartbeat` before the kill is the old leader's), the earlier items' beats
    # have just been answered, and the later ones arrive during the election.
    round_trip = statistics.median(trace.round_trips("/heartbeat"))
    middle = sorted(held, key=lambda h: h.beats[-1][0])[len(held) // 2]
    due = middle.beats[-1][0] + interval
    time.sleep(max(0.0, due - 0.3 - time.monotonic()))
    sent = trace.arm(f"/work/{middle.id}/heartbeat")
    if not sent.wait(interval + 5):
        sys.exit(f"FAILED: the SDK sent no heartbeat for {middle.id} within {interval + 5:.0f} s")
    time.sleep(max(0.0, sent.at + round_trip / 3 - time.monotonic()))
    killed_at, killed_wall = time.monotonic(), time.time()
    cluster.kill(leader)
    print(
        f"kill -9 node {leader} (the leader) while {len(held)} leases are held, {1000 * (killed_at - sent.at):.1f} ms "
        f"after the SDK sent the beat of {middle.id} (median heartbeat round trip {1000 * round_trip:.1f} ms)"
    )
    new_leader, status = cluster.wait_for_leader(exclude=leader, newer_than=status["term"], timeout=20)
    elected_at = time.monotonic()
    election = elected_at - killed_at
    check(new_leader != leader, f"node {new_leader} leads (term {status['term']}) {election:.2f} s after the kill")
    cluster.print_status()

    wait_until(
        f"every held item makes {BEATS_AFTER} successful heartbeats after the election",
        lambda: all(sum(t > elected_at for t, _ in h.beats) >= BEATS_AFTER for h in held),
        30,
        worker.healthy,
    )
    print(f"the SDK's answers from the kill (t={killed_at - STARTED:.2f}) until every item beat after the election:")
    until = max(min(t for t, _ in h.beats if t > elected_at) for h in held)
    trace.dump(sys.stdout, since=killed_at - STARTED, until=until - STARTED)
    in_flight = trace.in_flight("/heartbeat", killed_at - STARTED, killed_wall)
    for line in in_flight:
        print(f"in flight at the kill: {line}")
    check(
        in_flight,
        f"{len(in_flight)} heartbeat(s) were in flight (sent, not yet answered) when the leader died; "
        f"node {follower} logged {cluster.log_count(follower, REPLAYED)} replay(s) of a forwarded change",
    )
    first_after = min(t for h in held for t, _ in h.beats if t > killed_at) - killed_at
    gaps = [
        max(b - a for (a, _), (b, _) in zip(h.beats, h.beats[1:]) if b > killed_at) for h in held
    ]
    check(
        not any(h.lease.ended for h in held),
        f"every heartbeat loop kept its lease: {BEATS_AFTER}+ successful beats per item after the "
        f"election (the first {first_after:.2f} s after the kill); the longest gap between two "
        f"successful beats of one item across the kill {max(gaps):.2f} s",
    )

    after = {h.id: work.retrieve(h.id, environment_id=env.id) for h in held}
    check(
        all(after[i].state == "active" and after[i].lease_epoch == before[i].lease_epoch for i in after),
        "after the failover (work.retrieve): every item still active with the lease_epoch it had before the kill",
    )
    check(
        all(after[i].latest_heartbeat_at > before[i].latest_heartbeat_at for i in after),
        "latest_heartbeat_at advanced on every item: heartbeats after the failover succeed",
    )
    unexpected = trace.unexpected()
    check(
        not unexpected,
        f"no request met a 412 or a 5xx other than 503 + Retry-After ({trace.count(503)} 503 answers, "
        f"which the SDK retried){'' if not unexpected else ': ' + '; '.join(unexpected)}",
    )

    later = [create_work(f"sess_after{i}") for i in range(CREATED_AFTER)]
    wait_until(
        f"iter_work claims the {CREATED_AFTER} items created after the failover",
        lambda: all(w.id in worker.held and worker.held[w.id].beats for w in later),
        30,
        worker.healthy,
    )
    worker.poller.join(5)
    check(
        not worker.poller.is_alive() and not worker.errors,
        f"iter_work claimed the {CREATED_AFTER} items created after the failover, and the heartbeat loop beats them",
    )

    everything = list(worker.held.values())
    stopping = [work.stop(h.id, environment_id=env.id) for h in everything]
    check(all(s.state == "stopping" for s in stopping), f"work.stop -> stopping ({len(stopping)} items)")
    wait_until(
        "every heartbeat loop ends with its stop signal and the worker confirms the stop",
        lambda: all(h.future.done() for h in everything),
        30,
    )
    reasons = {str(h.lease._end_reason) for h in everything}
    check(
        all(h.lease._end_reason is _worker._LeaseEndReason.HEARTBEAT_STOP and not h.lease.lost for h in everything),
        f"every heartbeat loop ended with its stop signal ({sorted(reasons)})",
    )
    errors = [f"{h.id}: {h.error}" for h in everything if h.error]
    check(
        not errors and all(h.confirmed is not None and h.confirmed.state == "stopped" for h in everything),
        f"the worker's confirming stop -> stopped{': ' + '; '.join(errors) if errors else ''}",
    )
    final = {work.retrieve(h.id, environment_id=env.id).state for h in everything}
    check(final == {"stopped"}, f"work.retrieve: every item stopped ({sorted(final)})")
    unexpected = trace.unexpected()
    check(not unexpected, f"no unexpected answer in {len(trace.entries)} requests{': ' + '; '.join(unexpected) if unexpected else ''}")
    for line in worker.log_lines(logging.WARNING):
        print(f"note: the SDK logged {line}")
    print(
        f"timings: {len(in_flight)} heartbeat(s) in flight at the kill; election {election:.2f} s; "
        f"first successful heartbeat {first_after:.2f} s after the kill; "
        f"longest heartbeat gap {max(gaps):.2f} s; {trace.count(503)} 503 answers retried by the SDK"
    )


class Held:
    """One claimed item: its lease as the SDK's heartbeat loop sees it, every successful beat
    (monotonic time, the TTL answered), and the worker's confirming stop."""

    def __init__(self, item):
        self.id = item.id
        self.lease = _worker._Lease()
        self.beats = []
        self.confirmed = None
        self.error = None
        self.future = None


class Worker:
    """The SDK's worker loop: `iter_work` (in a poller thread) claims and acks items and hands
    each to the SDK's heartbeat loop, which runs on an asyncio loop in a second thread. When the
    heartbeat loop ends with its stop signal, the worker confirms the stop, as
    `EnvironmentWorker` does after the session run."""

    def __init__(self, client, base_url, environment_id, trace, expected):
        self.work = client.beta.environments.work
        self.environment_id = environment_id
        self.expected = expected
        self.held = {}
        self.errors = []
        self.log = SdkLog()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="heartbeats", daemon=True)
        self.thread.start()
        self.async_client = self.call(self._client(base_url, trace))
        self.poller = threading.Thread(target=self._poll, name="poller", daemon=True)
        self.poller.start()

    def call(self, coroutine, timeout=30):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    async def _client(self, base_url, trace):
        # An async client per event loop: its connections belong to the loop.
        return anthropic.AsyncAnthropic(
            base_url=base_url,
            auth_token=TOKEN,
            api_key=None,
            http_client=anthropic.DefaultAsyncHttpxClient(
                event_hooks={"request": [trace.async_request_hook], "response": [trace.async_hook]}
            ),
        )

    def _poll(self):
        try:
            claimed = iter_work(
                self.work, environment_id=self.environment_id, worker_id="sdk-failover-worker", auto_stop=False
            )
            for item in claimed:
                held = Held(item)
                held.future = asyncio.run_coroutine_threadsafe(self._serve(held), self.loop)
                self.held[item.id] = held
                if len(self.held) == self.expected:
                    claimed.close()
                    return
        except Exception as error:
            self.errors.append(f"iter_work raised {error!r}")

    async def _serve(self, held):
        work = self.async_client.beta.environments.work
        try:
            await _worker._heartbeat_loop(
                work,
                work_id=held.id,
                environment_id=self.environment_id,
                lease=held.lease,
                on_lease_ttl=lambda ttl: held.beats.append((time.monotonic(), ttl)),
            )
            if held.lease._end_reason is _worker._LeaseEndReason.HEARTBEAT_STOP:
                held.confirmed = await work.stop(held.id, environment_id=self.environment_id)
        except Exception as error:
            held.error = repr(error)

    def healthy(self):
        """Exits with FAILED once iter_work raised or a lease ended before its stop."""
        if self.errors:
            sys.exit(f"FAILED: {self.errors[0]}")
        for held in list(self.held.values()):
            if held.lease.ended or held.error:
                sys.exit(
                    f"FAILED: the heartbeat loop of {held.id} ended while the item was held: "
                    f"{held.lease._end_reason} {held.error or ''}"
                )

    def log_lines(self, level=logging.DEBUG):
        return [line for lvl, line in self.log.lines if lvl >= level]

    def close(self):
        """Cancels the heartbeat loops still running and closes the async client."""
        for held in list(self.held.values()):
            held.future.cancel()
        try:
            self.call(self.async_client.close(), timeout=10)
        except Exception:
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.log.detach()


class SdkLog(logging.Handler):
    """Keeps what the SDK's worker helpers log (claims, transient failures, lost leases)."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.lines = []
        self.logger = logging.getLogger("anthropic.lib.environments")
        self.logger.setLevel(logging.INFO)
        self.logger.addHandler(self)
        self.logger.propagate = False

    def emit(self, record):
        self.lines.append((record.levelno, f"t={since_start():.2f} {record.levelname} {record.name}: {record.getMessage()}"))

    def detach(self):
        self.logger.removeHandler(self)

    def dump(self, out):
        print("\n-- the SDK's log --", file=out)
        for _, line in self.lines:
            print(line, file=out)


class Trace:
    """Every request the SDK's clients sent and every answer they received (both clients,
    through httpx request and response hooks), including the ones its retries hid."""

    def __init__(self):
        self.entries = []
        self.pending = {}  # id -> (request, sent at): sent, not answered (yet)
        self.lock = threading.Lock()
        self.armed = None

    def arm(self, fragment):
        """An event set (its `at`: monotonic time) when the SDK next sends a request whose path
        contains `fragment`."""
        event = threading.Event()
        event.at = None
        with self.lock:
            self.armed = (fragment, event)
        return event

    def request_hook(self, request):
        at = time.monotonic()
        with self.lock:
            self.pending[id(request)] = (request, at)
            if self.armed and self.armed[0] in request.url.path:
                event = self.armed[1]
                self.armed = None
                event.at = at
                event.set()

    async def async_request_hook(self, request):
        self.request_hook(request)

    def _record(self, response, body):
        request = response.request
        with self.lock:
            sent = self.pending.pop(id(request), (None, None))[1]
        self.entries.append(
            {
                "t": since_start(),
                "sent": since_start(sent) if sent is not None else None,
                "request": f"{request.method} {request.url.host}:{request.url.port}"
                f"{urllib.parse.unquote(request.url.raw_path.decode())}",
                "status": response.status_code,
                "retry_after": response.headers.get("retry-after"),
                "body": body[:500] if response.status_code >= 400 else "",
                "stamp": stamp(response.status_code, body),
            }
        )

    def round_trips(self, fragment):
        """Seconds from sending to the answer of every answered request matching `fragment`."""
        return [e["t"] - e["sent"] for e in self.entries if fragment in e["request"] and e["sent"] is not None]

    def in_flight(self, fragment, at, wall):
        """The requests matching `fragment` sent before `at` (seconds since the start, `wall` on
        the system clock) and not answered by then: how each was answered (a heartbeat's
        `last_heartbeat` is stamped by the leader that proposed it: one before the kill is the
        old leader's, answered after the election from the record of the replayed origin
        unless the old leader's own answer left just before it died), or that it got no
        answer."""

        def stamped(e):
            if e["stamp"] is None:
                return ""
            return (
                f" last_heartbeat {e['stamp']:%H:%M:%S.%f}, {abs(e['stamp'].timestamp() - wall):.3f} s "
                f"{'before the kill: stamped by the old leader' if e['stamp'].timestamp() < wall else 'after the kill: proposed by the new leader'}"
            )

        lines = [
            f"{e['request']} sent {1000 * (at - e['sent']):.1f} ms before, answered {e['status']} "
            f"{e['t'] - at:.2f} s after{stamped(e)} {e['body']}".rstrip()
            for e in self.entries
            if fragment in e["request"] and e["sent"] is not None and e["sent"] < at < e["t"]
        ]
        with self.lock:
            pending = list(self.pending.values())
        lines += [
            f"{request.method} {urllib.parse.unquote(request.url.raw_path.decode())} sent "
            f"{1000 * (at - since_start(sent)):.1f} ms before, no answer (a transport error)"
            for request, sent in pending
            if fragment in request.url.path and since_start(sent) < at
        ]
        return lines

    def hook(self, response):
        response.read()
        self._record(response, response.text)

    async def async_hook(self, response):
        await response.aread()
        self._record(response, response.text)

    def count(self, status):
        return sum(e["status"] == status for e in self.entries)

    def unexpected(self):
        return [
            f"{e['request']} -> {e['status']} {e['body']}"
            for e in self.entries
            if e["status"] == 412 or (e["status"] >= 500 and not (e["status"] == 503 and e["retry_after"]))
        ]

    def dump(self, out, last=60, since=None, until=None):
        if since is None:
            print(f"\n-- the SDK's last {last} answers (t: seconds since the start) --", file=out)
            entries = self.entries[-last:]
        else:
            entries = [e for e in self.entries if since <= e["t"] <= until + 0.01]
        for e in entries:
            extra = f" retry-after={e['retry_after']}" if e["retry_after"] else ""
            sent = f" (sent t={e['sent']:.3f})" if e["sent"] is not None else ""
            print(f"t={e['t']:.3f}{sent} {e['request']} -> {e['status']}{extra} {e['body']}", file=out)


class Cluster:
    """Three replicated nodes on loopback, started as scripts/cluster.sh starts them."""

    def __init__(self, binary, work_dir):
        self.binary = binary
        self.work_dir = work_dir
        self.ports = free_ports(3)
        self.peers = ",".join(f"{n}=127.0.0.1:{port}" for n, port in zip((1, 2, 3), self.ports))
        self.nodes = {}
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def url(self, n):
        return f"http://127.0.0.1:{self.ports[n - 1]}"

    def live(self):
        return [n for n, node in self.nodes.items() if node.poll() is None]

    def start(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("WORKLEASE_")}
        for n in (1, 2, 3):
            with open(self._file(n, "out"), "w") as out, open(self._file(n, "log"), "w") as err:
                self.nodes[n] = subprocess.Popen(
                    [
                        self.binary,
                        "--listen", f"127.0.0.1:{self.ports[n - 1]}",
                        "--token", TOKEN,
                        "--data-dir", os.path.join(self.work_dir, f"node{n}"),
                        "--node-id", str(n),
                        "--peers", self.peers,
                        "--cluster-secret", CLUSTER_SECRET,
                        "--default-ttl-seconds", str(TTL_SECONDS),
                        "--log-level", "info",
                    ],
                    stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env,
                )
        for n in (1, 2, 3):
            first = self._first_line(n)
            if first != f"listening on {self.url(n)}":
                sys.exit(f"FAILED: node {n} said {first!r}")
        print(f"started three nodes: --peers {self.peers} --default-ttl-seconds {TTL_SECONDS}")

    def _file(self, n, kind):
        return os.path.join(self.work_dir, f"node{n}.{kind}")

    def _first_line(self, n, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open(self._file(n, "out")) as out:
                line = out.readline()
            if line.endswith("\n"):
                return line.strip()
            if self.nodes[n].poll() is not None:
                return f"nothing: it exited with {self.nodes[n].returncode}"
            time.sleep(0.02)
        return f"nothing within {timeout} s"

    def status(self, n):
        """Node n's GET /cluster, or None."""
        request = urllib.request.Request(f"{self.url(n)}/cluster", headers={"Authorization": f"Bearer {TOKEN}"})
        try:
            with self.opener.open(request, timeout=1) as answer:
                return json.load(answer)
        except Exception:
            return None

    def wait_for_leader(self, exclude=None, newer_than=-1, timeout=20):
        """The id of a live node (not `exclude`) that reports itself leader in a term after
        `newer_than`, as a live node reports it, and its status."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for n in self.live():
                status = self.status(n)
                leader = status and status.get("leader_id")
                if not leader or leader == exclude or leader not in self.live():
                    continue
                own = self.status(leader)
                if own and own["role"] == "leader" and own["leader_id"] == leader and own["term"] > newer_than:
                    return leader, own
            time.sleep(0.02)
        sys.exit(f"FAILED: no leader among nodes {self.live()} within {timeout} s")

    def print_status(self):
        for n in (1, 2, 3):
            if n in self.live():
                print(f"  node {n} ({self.url(n)}): {json.dumps(self.status(n))}")
            else:
                print(f"  node {n}: down")

    def kill(self, n):
        self.nodes[n].kill()
        self.nodes[n].wait()

    def stop(self):
        """SIGTERMs every live node and waits for it; their exit codes."""
        live = self.live()
        for n in live:
            self.nodes[n].terminate()
        codes = {}
        for n in live:
            try:
                codes[n] = self.nodes[n].wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.nodes[n].kill()
                codes[n] = f"still running 10 s after SIGTERM (killed: {self.nodes[n].wait()})"
        return codes

    def log_count(self, n, text):
        """How many lines of node n's log contain `text`."""
        with open(self._file(n, "log"), errors="replace") as log:
            return sum(text in line for line in log)

    def dump_logs(self, out, last=80):
        for n in sorted(self.nodes):
            path = self._file(n, "log")
            if not os.path.exists(path):
                continue
            with open(path, errors="replace") as log:
                lines = log.readlines()
            print(f"\n-- node {n}'s log ({path}, last {last} of {len(lines)} lines) --", file=out)
            out.writelines(lines[-last:])
        out.flush()


def stamp(status, body):
    """A heartbeat answer's `last_heartbeat` (an aware datetime), or None."""
    try:
        value = json.loads(body)["last_heartbeat"] if status == 200 else None
        return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


if __name__ == "__main__":
    main()
