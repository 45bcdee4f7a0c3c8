#!/usr/bin/env python3
"""The "idle pollers" rows of scripts/service-bench.sh.

    python3 scripts/idle_pollers.py ADDRESS TOKEN WORKERS SECONDS [PID...]

A fresh environment with no work, and WORKERS named workers long-polling it (block_ms=999)
for SECONDS, each on its own connection. Reads GET /cluster's last_applied_index before and
after. With PIDs (the server's, or every cluster member's), counts the fsync and fdatasync
calls those processes make while the workers poll, with strace attached once the environment
exists. Prints "POLLS_PER_S ENTRIES ENTRIES_PER_S FSYNCS FSYNCS_PER_S" (the last two "-"
without PIDs).
"""
import http.client, json, os, signal, subprocess, sys, tempfile, threading, time

address, token = sys.argv[1], sys.argv[2]
workers, seconds = int(sys.argv[3]), float(sys.argv[4])
pids = sys.argv[5:]


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


# strace -c counts the calls of every thread (-f) of each process until it is interrupted.
tracers = []
for pid in pids:
    out = tempfile.NamedTemporaryFile(prefix="idle-fsyncs-", suffix=".txt", delete=False).name
    tracer = subprocess.Popen(["strace", "-f", "-qq", "-c", "-e", "trace=fsync,fdatasync", "-o", out, "-p", pid],
                              stderr=subprocess.DEVNULL)
    tracers.append((tracer, out))
if tracers:
    time.sleep(1)  # attached to every thread
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
fsyncs = 0
for tracer, out in tracers:
    tracer.send_signal(signal.SIGINT)
    tracer.wait()
    with open(out) as summary:
        # "% time  seconds  usecs/call  calls  [errors]  syscall"
        for line in summary:
            fields = line.split()
            if fields and fields[-1] in ("fsync", "fdatasync"):
                fsyncs += int(fields[3])
    os.unlink(out)
counted = f"{fsyncs} {fsyncs / elapsed:.2f}" if tracers else "- -"
print(f"{sum(polls) / elapsed:.0f} {entries} {entries / elapsed:.2f} {counted}")
