#!/usr/bin/env python3
"""Drive a running reference server with the official Anthropic Python SDK.

Supported SDK releases: `anthropic` >= 0.103.0, the first release with the self-hosted
environments worker (`client.beta.environments.work.worker`, `anthropic.lib.environments`);
.ci/run runs this script against 0.103.0 and against the newest release (2.17.0 when this
was written), each in its own virtualenv. Only the SDK's public API is used.

Usage (with the server running, e.g. `cargo run --release -p worklease-server -- --token
secret --default-ttl-seconds 10`):

    pip install anthropic
    WORKLEASE_TOKEN=secret python3 scripts/sdk_smoke.py [http://127.0.0.1:8080]

or, starting the server itself on a free port (with `--default-ttl-seconds 10`, so the SDK's
lease loop beats every 5 s) and stopping it at the end:

    python3 scripts/sdk_smoke.py --spawn PATH/TO/worklease-server [--server-arg=ARG ...]

where each `--server-arg=ARG` is passed on to the server (e.g.
`--server-arg=--data-dir=DIR` runs it in durable mode).

Every call goes through `client.beta.environments` on the `/v1` prefix with `auth_token`
(a bearer token). The one call the SDK has no method for, creating a work item (a real
deployment's session service does that), goes through the SDK's generic `client.post`.

The last check runs the SDK's own worker (`client.beta.environments.work.worker(...).run()`:
its poller, its lease loop, its session runner) on one item, and stops the item gracefully
while the worker serves it: the worker must stop serving within two heartbeat intervals
(the SDK beats every ttl/2, at most 30 s) and the item must end `stopped`. The worker also
reads the item's session from the sessions API, which this server does not have: the
client's HTTP transport answers those few requests itself (a running session with no
events, whose event stream stays open while the worker serves it) and passes everything
else to the server.

Exits non-zero on the first unexpected answer.
"""

import asyncio
import json
import os
import sys
import tempfile
import time

import anthropic
from anthropic.lib.environments import iter_work
from anthropic.types.beta.environments import BetaSelfHostedWork


def http_library():
    """The HTTP library under the SDK's default client (`httpx`; `httpx2` in the 2.x releases),
    whose transport interface the fake sessions API below implements."""
    client = next(c for c in anthropic.DefaultAsyncHttpxClient.__mro__ if c.__name__ == "AsyncClient")
    return sys.modules[client.__module__.split(".")[0]]


httpx = http_library()

# The lowest TTL the server accepts: the SDK's lease loop then beats every 5 s.
TTL_SECONDS = 10


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
        [
            binary,
            "--listen", "127.0.0.1:0",
            "--token", token,
            "--default-ttl-seconds", str(TTL_SECONDS),
            *server_args,
        ],
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
        code = error.body["error"]["details"]["error_code"]
        check(code == "heartbeat_precondition_failed", f"error.details.error_code = {code}")
        # Releases that model this error (2.x) raise it typed, with the code as an attribute.
        typed = getattr(anthropic.types.beta.environments, "BetaHeartbeatPreconditionFailedError", None)
        if typed is not None:
            check(
                isinstance(error, typed) and error.error_code == code,
                f"the SDK raises {type(error).__name__} with error_code {getattr(error, 'error_code', None)}",
            )
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
    environment_lifecycle(client)
    asyncio.run(worker_drains_on_a_graceful_stop(base_url))
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
        # Releases that model this error (2.x) raise it typed.
        typed = getattr(anthropic.types.beta, "BetaEnvironmentArchivedError", None)
        check(
            typed is None or isinstance(error, typed),
            f"creating work there -> {error.status_code} {type(error).__name__}",
        )
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


async def worker_drains_on_a_graceful_stop(base_url):
    """Issue 19 (docs/contract.md §3.3): the SDK's own worker holds an item through its lease
    loop; a graceful stop while it serves must end the serving within two heartbeat intervals,
    and the item must end `stopped` (the worker confirms with its stop on exit)."""
    token = os.environ["WORKLEASE_TOKEN"]
    sessions = FakeSessions()
    async with anthropic.AsyncAnthropic(
        base_url=base_url,
        auth_token=token,
        api_key=None,
        max_retries=0,
        http_client=anthropic.DefaultAsyncHttpxClient(transport=sessions),
    ) as client:
        environments = client.beta.environments
        work = environments.work
        env = await environments.create(name="sdk-drain", config={"type": "self_hosted"})
        created = await client.post(
            f"/v1/environments/{env.id}/work",
            body={"data": {"type": "session", "id": "sess_drain"}},
            cast_to=BetaSelfHostedWork,
        )
        with tempfile.TemporaryDirectory(prefix="sdk-smoke-") as workdir:
            worker = work.worker(
                environment_id=env.id,
                environment_key=token,
                tools=[],
                workdir=workdir,
            )
            running = asyncio.create_task(worker.run())
            try:
                await drain(work, env.id, created.id, sessions, running)
            finally:
                running.cancel()
                try:
                    await running
                except (asyncio.CancelledError, Exception):
                    pass


async def drain(work, env_id, work_id, sessions, running):
    async def until(what, condition, timeout):
        deadline = time.monotonic() + timeout
        while not condition():
            if running.done():
                error = running.exception() if not running.cancelled() else "cancelled"
                sys.exit(f"FAILED: the SDK worker ended while {what}: {error!r}")
            if time.monotonic() > deadline:
                sys.exit(f"FAILED: {what} within {timeout:.0f} s; heartbeats: {sessions.beats}")
            await asyncio.sleep(0.02)

    # Older releases open the session before their first heartbeat is answered.
    await until("serving the item", lambda: sessions.opened is not None and sessions.beats, 30)
    first = sessions.beats[0]
    interval = min(first["ttl_seconds"] / 2, 30)
    check(
        first["lease_extended"] and first["state"] == "active",
        f"the SDK worker claimed {work_id} with its lease loop (ttl {first['ttl_seconds']} s: a beat every "
        f"{interval:g} s) and serves its session",
    )
    await asyncio.sleep(1)
    stopping = await work.stop(work_id, environment_id=env_id)
    stop_asked_at = time.monotonic()
    check(stopping.state == "stopping", "a graceful work.stop while it serves -> stopping")
    await until(
        f"the worker stops serving after the graceful stop (2 heartbeat intervals, {2 * interval:g} s)",
        lambda: sessions.closed is not None,
        2 * interval,
    )
    after = [b for b in sessions.beats if b["at"] > stop_asked_at]
    check(
        after and after[-1]["state"] == "stopping" and not after[-1]["lease_extended"],
        f"the worker stopped serving {sessions.closed - stop_asked_at:.2f} s after the stop, on a heartbeat "
        f"answered {json.dumps({k: after[-1][k] for k in ('state', 'lease_extended')}) if after else 'never'}",
    )
    deadline = time.monotonic() + 10
    while (item := await work.retrieve(work_id, environment_id=env_id)).state != "stopped":
        if time.monotonic() > deadline:
            sys.exit(f"FAILED: the item is {item.state}, not stopped, 10 s after the worker stopped serving")
        await asyncio.sleep(0.1)
    confirmations = [body for at, body in sessions.stops if at > stop_asked_at]
    check(
        confirmations,
        f"the item ends stopped ({item.stopped_at}): the worker confirmed the stop ({confirmations[:1]})",
    )


class FakeSessions(httpx.AsyncBaseTransport):
    """The client's transport: answers the sessions API (`/v1/sessions/...`) itself, as a
    running session with no events whose event stream stays open, and passes every other
    request to the server. It records when the worker opened and closed the event stream
    (serving the item) and every heartbeat answer the server gave."""

    def __init__(self):
        self.server = httpx.AsyncHTTPTransport()
        self.opened = None
        self.closed = None
        self.beats = []
        self.stops = []

    async def handle_async_request(self, request):
        path = request.url.path
        if path.startswith("/v1/sessions/"):
            return self.session(request, path.removeprefix("/v1/sessions/").split("/"))
        if path.endswith("/stop"):
            self.stops.append((time.monotonic(), json.loads(request.content or b"{}")))
        response = await self.server.handle_async_request(request)
        if path.endswith("/heartbeat"):
            body = await response.aread()
            if response.status_code == 200:
                self.beats.append({"at": time.monotonic(), **json.loads(body)})
            return httpx.Response(response.status_code, headers=response.headers, content=body)
        return response

    def session(self, request, parts):
        session_id = parts[0]
        if parts[1:] == []:
            return httpx.Response(200, json=fake_session(session_id))
        if parts[1:] == ["events"]:
            return httpx.Response(
                200, json={"data": [], "has_more": False, "first_id": None, "last_id": None, "next_page": None}
            )
        if parts[1:] == ["events", "stream"]:
            if self.opened is None:
                self.opened = time.monotonic()
            return httpx.Response(
                200, headers={"content-type": "text/event-stream"}, stream=OpenEventStream(self)
            )
        return httpx.Response(404, json={"type": "error", "error": {"type": "not_found_error", "message": "fake"}})

    async def aclose(self):
        await self.server.aclose()


class OpenEventStream(httpx.AsyncByteStream):
    """An event stream that sends nothing but keep-alive comments until the client closes it."""

    def __init__(self, sessions):
        self.sessions = sessions

    async def __aiter__(self):
        while True:
            yield b": keep-alive\n\n"
            await asyncio.sleep(0.5)

    async def aclose(self):
        if self.sessions.closed is None:
            self.sessions.closed = time.monotonic()


def fake_session(session_id):
    return {
        "type": "session",
        "id": session_id,
        "status": "running",
        "title": None,
        "metadata": {},
        "resources": [],
        "agent": {"type": "agent", "id": "agent_fake", "version": 1, "name": "fake", "skills": [], "tools": [],
                  "mcp_servers": [], "multiagent": None, "model": {"id": "claude-fake"}, "system": None},
        "environment_id": None,
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
        "archived_at": None,
    }


if __name__ == "__main__":
    main()
