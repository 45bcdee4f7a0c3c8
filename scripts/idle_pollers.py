#!/usr/bin/env python3
"""The "idle pollers" row of scripts/service-bench.sh.

    python3 scripts/idle_pollers.py ADDRESS TOKEN WORKERS SECONDS

A fresh environment with no work, and WORKERS named workers long-polling it (block_ms=999)
for SECONDS, each on its own connection. Reads GET /cluster's last_applied_index before and
after: every log entry is part of one fsync (group commit), so entries per second bound the
fsyncs per second the pollers cause from above. Prints "POLLS_PER_S ENTRIES ENTRIES_PER_S".
"""
import http.client, json, sys, threading, time

address, token = sys.argv[1], sys.argv[2]
workers, seconds = int(sys.argv[3]), float(sys.argv[4])


def call(connection, method, path, body=None, headers=None):
    headers = {"Authorization": f"Bearer {token}", "content-type": "application/json", **(headers or {})}
    connection.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    response = connection.getresponse()
    data = response.read()
    if response.status != 200:
        sys.exit(f"{method} {path}: {response.status} {data!r}")
    return json.loads(data)


setup = http.client.HTTPConnection(address)
env = call(setup, "POST", "/v1/environments", {"name": "idle", "config": {"type": "self_hosted"}})["id"]
applied = lambda: call(setup, "GET", "/cluster")["last_applied_index"]
polls = [0] * workers
until = time.monotonic() + seconds


def poll(n):
    connection = http.client.HTTPConnection(address)
    while time.monotonic() < until:
        got = call(connection, "GET", f"/v1/environments/{env}/work/poll?block_ms=999",
                   headers={"Worker-ID": f"idle-{n}"})
        if got is not None:
            sys.exit(f"an idle poll got work: {got}")
        polls[n] += 1


before = applied()
started = time.monotonic()
threads = [threading.Thread(target=poll, args=(n,)) for n in range(workers)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
elapsed = time.monotonic() - started
entries = applied() - before
print(f"{sum(polls) / elapsed:.0f} {entries} {entries / elapsed:.2f}")
