#!/usr/bin/env python3
"""The "idle pollers" rows of scripts/service-bench.sh.

    python3 scripts/idle_pollers.py ADDRESS TOKEN WORKERS SECONDS [MEMBER...]

A fresh environment with no work, and WORKERS named workers long-polling it at ADDRESS
(block_ms=999) for SECONDS, each on its own connection. Reads ADDRESS's GET /cluster
last_applied_index before and after, and the sum of log_syncs (the fdatasync calls each node
made on its write-ahead log) over the MEMBER addresses (every member of a cluster; ADDRESS
alone without any), once the environment is written everywhere and again at the end. Prints
"POLLS_PER_S ENTRIES ENTRIES_PER_S SYNCS SYNCS_PER_S", and each member's syncs on stderr.
"""
import http.client, json, sys, threading, time

address, token = sys.argv[1], sys.argv[2]
workers, seconds = int(sys.argv[3]), float(sys.argv[4])
members = sys.argv[5:] or [address]


def call(connection, method, path, body=None, headers=None):
    headers = {"Authorization": f"Bearer {token}", "content-type": "application/json", **(headers or {})}
    connection.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    response = connection.getresponse()
    data = response.read()
    if response.status != 200:
        sys.exit(f"{method} {path}: {response.status} {data!r}")
    return json.loads(data)


def status(member):
    connection = http.client.HTTPConnection(member, timeout=10)
    try:
        return call(connection, "GET", "/cluster")
    finally:
        connection.close()


setup = http.client.HTTPConnection(address)
env = call(setup, "POST", "/v1/environments", {"name": "idle", "config": {"type": "self_hosted"}})["id"]
applied = lambda: call(setup, "GET", "/cluster")["last_applied_index"]


def counts():
    """Each member's (last_applied_index, log_syncs)."""
    return [(state["last_applied_index"], state["log_syncs"]) for state in map(status, members)]


def settled():
    """Each member's counts once the environment's writes are done everywhere: every member at
    the same last_applied_index and nothing changed over 200 ms. (GET /cluster's index counts a
    command a moment after its answer, so "as far as ADDRESS" alone can start the count while
    a follower still writes the environment.)"""
    previous, deadline = None, time.monotonic() + 10
    while True:
        now = counts()
        if now == previous and len({index for index, _ in now}) == 1:
            return now
        if time.monotonic() > deadline:
            sys.exit(f"idle pollers: the members did not settle within 10 s: {now}")
        previous = now
        time.sleep(0.2)


polls = [0] * workers
failures = []


def poll(n, until):
    try:
        connection = http.client.HTTPConnection(address, timeout=30)
        while time.monotonic() < until:
            got = call(connection, "GET", f"/v1/environments/{env}/work/poll?block_ms=999",
                       headers={"Worker-ID": f"idle-{n}"})
            if got is not None:
                failures.append(f"an idle poll got work: {got}")
                return
            polls[n] += 1
    except (Exception, SystemExit) as failure:  # a thread's sys.exit ends only the thread
        failures.append(f"worker {n}: {failure!r}")


synced = [syncs for _, syncs in settled()]
before = applied()
started = time.monotonic()
threads = [threading.Thread(target=poll, args=(n, started + seconds)) for n in range(workers)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
elapsed = time.monotonic() - started
if failures or sum(polls) == 0:
    sys.exit(f"idle pollers: {sum(polls)} polls; {failures[:3]}")
entries = applied() - before
grown = [syncs - then for (_, syncs), then in zip(counts(), synced)]
print(f"idle pollers: log syncs by member {' '.join(f'{m} +{n}' for m, n in zip(members, grown))}", file=sys.stderr)
syncs = sum(grown)
print(f"{sum(polls) / elapsed:.0f} {entries} {entries / elapsed:.2f} {syncs} {syncs / elapsed:.2f}")
