#!/usr/bin/env python3
"""Drive a running reference server with the official Anthropic Python SDK.

Usage (with the server running, e.g. `cargo run --release -p worklease-server -- --token
secret`):

    pip install anthropic
    WORKLEASE_TOKEN=secret python3 scripts/sdk_smoke.py [http://127.0.0.1:8080]

Every call goes through `client.beta.environments` on the `/v1` prefix with `auth_token`
(a bearer token). The one call the SDK has no method for, creating a work item (a real
deployment's session service does that), goes through the SDK's generic `client.post`.
Exits non-zero on the first unexpected answer.
"""

import os
import sys

import anthropic
from anthropic.lib.environments import iter_work
from anthropic.types.beta.environments import BetaSelfHostedWork


def check(condition, message):
    if not condition:
        sys.exit(f"FAILED: {message}")
    print(f"ok: {message}")


def main():
    base_url = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8080"
    client = anthropic.Anthropic(
        base_url=base_url, auth_token=os.environ["WORKLEASE_TOKEN"], api_key=None, max_retries=0
    )
    environments = client.beta.environments
    work = environments.work

    env = environments.create(name="sdk-smoke", config={"type": "self_hosted"})
    check(env.id.startswith("env_") and env.config.type == "self_hosted", f"environments.create -> {env.id}")

    def create_work(session):
        return client.post(
            f"/v1/environments/{env.id}/work",
            body={"data": {"type": "session", "id": session}, "metadata": {"origin": "sdk"}},
            cast_to=BetaSelfHostedWork,
        )

    created = create_work("sess_sdk1")
    check(created.state == "queued", f"create work (client.post) -> {created.id}")

    item = work.poll(env.id, block_ms=500, anthropic_worker_id="sdk-worker-1")
    check(item is not None and item.id == created.id, "work.poll delivers the queued item")
    empty = work.poll(env.id, block_ms=200)
    check(empty is None, "an empty long poll returns None")

    acked = work.ack(item.id, environment_id=env.id, extra_headers={"anthropic-worker-id": "sdk-worker-1"})
    check(acked.state == "starting", "work.ack -> starting")

    beat = work.heartbeat(item.id, environment_id=env.id, expected_last_heartbeat="NO_HEARTBEAT", desired_ttl_seconds=60)
    check(beat.type == "work_heartbeat" and beat.state == "active" and beat.lease_extended, f"work.heartbeat NO_HEARTBEAT -> {beat.last_heartbeat}")
    again = work.heartbeat(item.id, environment_id=env.id, expected_last_heartbeat=beat.last_heartbeat)
    check(again.last_heartbeat > beat.last_heartbeat, "work.heartbeat echoing the token renews the lease")

    try:
        work.heartbeat(item.id, environment_id=env.id, expected_last_heartbeat=beat.last_heartbeat)
        check(False, "a stale token must be refused")
    except anthropic.APIStatusError as error:
        check(error.status_code == 412, f"a stale token -> {error.status_code} {type(error).__name__}")
        check(getattr(error, "error_code", None) == "heartbeat_precondition_failed", f"error_code = {getattr(error, 'error_code', None)}")
        current = error.body["error"]["details"]["current_state"]
        check(current["last_heartbeat"] == again.last_heartbeat, "details.current_state carries the held token")

    updated = work.update(item.id, environment_id=env.id, metadata={"step": "build", "origin": None})
    check(updated.metadata == {"step": "build"}, "work.update merges the metadata patch")
    fetched = work.retrieve(item.id, environment_id=env.id)
    check(fetched.state == "active" and fetched.started_at is not None, "work.retrieve")

    stats = work.stats(env.id)
    check(stats.type == "work_queue_stats" and stats.workers_polling == 1, f"work.stats depth={stats.depth} pending={stats.pending} workers_polling={stats.workers_polling}")

    stopping = work.stop(item.id, environment_id=env.id)
    check(stopping.state == "stopping", "work.stop -> stopping")
    stopped = work.stop(item.id, environment_id=env.id)
    check(stopped.state == "stopped", "work.stop again confirms -> stopped")

    for i in range(3):
        create_work(f"sess_page{i}")
    listed = [w.id for w in work.list(env.id, limit=2)]
    check(len(listed) == 4 and listed == sorted(listed), f"work.list auto-paginates with limit=2 -> {len(listed)} items")

    drained = []
    for claimed in iter_work(work, environment_id=env.id, drain=True, block_ms=None):
        drained.append(claimed.id)
    check(len(drained) == 3, f"the SDK's own poller (iter_work, drain) claimed, acked and stopped {len(drained)} items")
    states = {w.state for w in work.list(env.id)}
    check(states == {"stopping", "stopped"} or states == {"stopped"}, f"after the poller: states {sorted(states)}")

    try:
        work.poll("env_missing")
        check(False, "an unknown environment must be refused")
    except anthropic.NotFoundError as error:
        check(error.status_code == 404, "an unknown environment -> NotFoundError")
    bad = anthropic.Anthropic(base_url=base_url, auth_token="wrong", api_key=None, max_retries=0)
    try:
        bad.beta.environments.work.stats(env.id)
        check(False, "a wrong token must be refused")
    except anthropic.AuthenticationError as error:
        check(error.status_code == 401, "a wrong token -> AuthenticationError")
    print("all SDK calls behaved as documented")


if __name__ == "__main__":
    main()
