#!/usr/bin/env python3
"""Drive a running reference server with the official Anthropic Python SDK.

Usage (with the server running, e.g. `cargo run --release -p worklease-server -- --token
secret`):

    pip install anthropic
    WORKLEASE_TOKEN=secret python3 scripts/sdk_smoke.py [http://127.0.0.1:8080]

or, building and starting the server itself on a free port and stopping it at the end:

    python3 scripts/sdk_smoke.py --spawn PATH/TO/worklease-server [--server-arg=ARG ...]

where each `--server-arg=ARG` is passed on to the server (e.g.
`--server-arg=--data-dir=DIR` runs it in durable mode).

Every call goes through `client.beta.environments` on the `/v1` prefix with `auth_token`
(a bearer token). The one call the SDK has no method for, creating a work item (a real
deployment's session service does that), goes through the SDK's generic `client.post`.
Exits non-zero on the first unexpected answer.
"""

import asyncio
import os
import sys

import anthropic
from anthropic.lib.environments import _worker, iter_work
from anthropic.types.beta.environments import BetaSelfHostedWork


def check(condition, message):
    if not condition:
        sys.exit(f"FAILED: {message}")
    print(f"ok: {message}")


def main():
    if len(sys.argv) > 2 and sys.argv[1] == "--spawn":
        extra = sys.argv[3:]
        unknown = [arg for arg in extra if not arg.startswith("--server-arg=")]
        if unknown:
            sys.exit(f"unknown arguments {unknown!r}: only --server-arg=ARG may follow --spawn")
        return spawned(sys.argv[2], [arg.removeprefix("--server-arg=") for arg in extra])
    base_url = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8080"
    smoke(base_url)


def spawned(binary, server_args=()):
    """Runs the smoke test against a server this script starts on 127.0.0.1:0, with
    `server_args` added to its command line."""
    import subprocess

    token = "sdk-smoke-token"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKLEASE_")}
    server = subprocess.Popen(
        [binary, "--listen", "127.0.0.1:0", "--token", token, *server_args],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True,
    )
    try:
        first = server.stdout.readline().strip()
        if not first.startswith("listening on "):
            sys.exit(f"FAILED: the server said {first!r}")
        os.environ["WORKLEASE_TOKEN"] = token
        smoke(first.removeprefix("listening on "))
    finally:
        server.terminate()
        server.wait(timeout=10)


def smoke(base_url):
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
    heartbeat_loop_on_a_stopping_item(client, base_url, env.id, create_work)
    environment_lifecycle(client)
    print("all SDK calls behaved as documented")


def environment_lifecycle(client):
    """Every `client.beta.environments` method (docs/contract.md §9)."""
    environments = client.beta.environments
    work = environments.work
    cloud = environments.create(
        name="sdk-cloud",
        config={"type": "cloud", "networking": {"type": "unrestricted"}},
        description="a cloud one",
        metadata={"team": "ml", "tier": "gold"},
    )
    check(cloud.config.type == "cloud" and cloud.description == "a cloud one", "environments.create (cloud, description, metadata)")
    fetched = environments.retrieve(cloud.id)
    check(fetched.id == cloud.id and fetched.metadata == {"team": "ml", "tier": "gold"}, "environments.retrieve")
    renamed = environments.update(cloud.id, name="sdk-cloud-2", description=None, metadata={"team": None, "tier": ""})
    check(renamed.name == "sdk-cloud-2" and renamed.description is None and renamed.metadata == {}, "environments.update renames, clears the description, deletes keys with null and \"\"")

    hosted = environments.create(name="sdk-hosted", config={"type": "self_hosted"}, metadata={"k": "v"})
    extra = [environments.create(name=f"sdk-page-{i}") for i in range(3)]
    everything = [e.id for e in environments.list(limit=2)]
    check(hosted.id in everything and all(e.id in everything for e in extra) and everything == sorted(everything), f"environments.list auto-paginates with limit=2 -> {len(everything)}")

    def create_work(session):
        return client.post(
            f"/v1/environments/{hosted.id}/work",
            body={"data": {"type": "session", "id": session}},
            cast_to=BetaSelfHostedWork,
        )

    create_work("sess_env1")
    item = work.poll(hosted.id, anthropic_worker_id="sdk-env")
    work.ack(item.id, environment_id=hosted.id, extra_headers={"anthropic-worker-id": "sdk-env"})
    beat = work.heartbeat(item.id, environment_id=hosted.id, expected_last_heartbeat="NO_HEARTBEAT")

    archived = environments.archive(hosted.id)
    check(archived.archived_at is not None, "environments.archive")
    listed = [e.id for e in environments.list(limit=2)]
    check(hosted.id not in listed, "archived environments are not listed by default")
    with_archived = [e.id for e in environments.list(limit=2, include_archived=True)]
    check(hosted.id in with_archived, "include_archived=True lists them")
    try:
        create_work("sess_env2")
        check(False, "creating work in an archived environment must be refused")
    except anthropic.BadRequestError as error:
        check(type(error).__name__ == "BetaEnvironmentArchivedError", f"creating work there -> {type(error).__name__}")
    again = work.heartbeat(item.id, environment_id=hosted.id, expected_last_heartbeat=beat.last_heartbeat)
    check(again.state == "active", "an active item's heartbeats still succeed in an archived environment")

    try:
        environments.delete(hosted.id)
        check(False, "deleting with a live lease must be refused")
    except anthropic.APIStatusError as error:
        check(error.status_code == 409, f"delete with a live lease -> {error.status_code}")
    work.stop(item.id, environment_id=hosted.id, force=True)
    deleted = environments.delete(hosted.id)
    check(deleted.id == hosted.id and deleted.type == "environment_deleted", "environments.delete -> environment_deleted")
    try:
        environments.retrieve(hosted.id)
        check(False, "a deleted environment must be gone")
    except anthropic.NotFoundError:
        check(True, "a deleted environment -> NotFoundError")


def heartbeat_loop_on_a_stopping_item(client, base_url, env_id, create_work):
    """Issue 12: the SDK's own heartbeat loop (`EnvironmentWorker`'s `_heartbeat_loop`, a private
    function of `anthropic.lib.environments._worker`) pointed at a stopping item with a stale
    precondition must end with its stop signal (HEARTBEAT_STOP), not a lost lease (LEASE_LOST,
    after which the worker would leave the item without confirming the stop). As a control,
    the same loop on an active item with a stale token does end with LEASE_LOST."""
    work = client.beta.environments.work
    sentinel = _worker._NO_HEARTBEAT_SENTINEL

    def claimed(session):
        item = create_work(session)
        work.ack(item.id, environment_id=env_id)
        first = work.heartbeat(item.id, environment_id=env_id, expected_last_heartbeat="NO_HEARTBEAT")
        work.heartbeat(item.id, environment_id=env_id, expected_last_heartbeat=first.last_heartbeat)
        return item.id, first.last_heartbeat  # the first token is stale now

    def run_loop(work_id, start_with):
        # The loop starts from `_NO_HEARTBEAT_SENTINEL`; pointing it at a stale token makes it
        # start as a worker whose previous answer was lost would.
        _worker._NO_HEARTBEAT_SENTINEL = start_with
        lease = _worker._Lease()

        async def loop():
            # An async client per event loop: its connections belong to the loop.
            async with anthropic.AsyncAnthropic(
                base_url=base_url, auth_token=os.environ["WORKLEASE_TOKEN"], api_key=None, max_retries=0
            ) as async_client:
                await asyncio.wait_for(
                    _worker._heartbeat_loop(
                        async_client.beta.environments.work, work_id=work_id, environment_id=env_id, lease=lease
                    ),
                    20,
                )

        try:
            asyncio.run(loop())
            return lease
        finally:
            _worker._NO_HEARTBEAT_SENTINEL = sentinel

    for label, start_with in (("a stale token", None), ("NO_HEARTBEAT", sentinel)):
        work_id, stale = claimed(f"sess_stopping{len(label)}")
        stopping = work.stop(work_id, environment_id=env_id)
        check(stopping.state == "stopping", f"work.stop -> stopping ({label})")
        lease = run_loop(work_id, start_with or stale)
        check(
            lease._end_reason is _worker._LeaseEndReason.HEARTBEAT_STOP and not lease.lost,
            f"the SDK heartbeat loop with {label} on a stopping item ends with its stop signal "
            f"({lease._end_reason})",
        )
        stopped = work.stop(work_id, environment_id=env_id)
        check(stopped.state == "stopped", f"the worker's confirming stop -> stopped ({label})")

    work_id, stale = claimed("sess_activecontrol")
    lease = run_loop(work_id, stale)
    check(
        lease._end_reason is _worker._LeaseEndReason.LEASE_LOST and lease.lost,
        f"control: the same loop with a stale token on an active item ends with a lost lease ({lease._end_reason})",
    )


if __name__ == "__main__":
    main()
