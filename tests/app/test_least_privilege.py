"""Least privilege on real parts: the dev stack's node, web and Celery workers of two pools, each service as
its own broker user (permissions derived by infra/plan/permissions.py), then every forbidden operation tried
by hand and refused by the broker.

What the services do is what Celery 5.7 / kombu 5.7 need: the flow runs with no `access_refused` in the
node's log; what they may not do is each refused with ACCESS_REFUSED (403) or, for a user with no access
to the vhost, NOT_ALLOWED at connection open."""

from __future__ import annotations

import socket
import subprocess
from urllib.parse import quote

import pika
import pytest
import requests
from celery import Celery

from config.topology import celery_settings
from infra.definition.load import load_definition, require
from infra.plan.plan import APP_TLS_FILES, BROKER_TLS_FILES, build_plan
from infra.render import files as render
from infra.render.compose import compose_file
from tests.app.deployment import APP_DIR, WaitTimeout, celery_argv, deploy
from tests.app.test_reliability import riot  # noqa: F401 (the module's fake Riot API)
from tests.support.rabbit_node import port_open


@pytest.fixture(scope="module")
def app(riot):
    """Web (as `web`) and the sync and matches pools (as `worker-sync`, `worker-matches`)."""
    deployment, cleanup = deploy(riot)
    try:
        deployment.start_worker("sync")
        deployment.start_worker("matches")
        yield deployment
    finally:
        cleanup()


def node_log(app) -> str:
    return "".join(p.read_text(errors="replace") for p in (app.node.base / "log").glob("*.log"))


def connect(app, user: str, password: str | None = None) -> pika.BlockingConnection:
    password = app.rendered.password(user) if password is None else password
    return pika.BlockingConnection(
        pika.ConnectionParameters(
            "127.0.0.1",
            app.node.ports.amqp,
            app.rendered.celery["broker_vhost"],
            pika.PlainCredentials(user, password),
            connection_attempts=1,
        )
    )


def refusal(app, user: str, operation) -> tuple[int, str]:
    """(reply code, text) with which the broker closes the channel that tries `operation` as `user`."""
    connection = connect(app, user)
    try:
        channel = connection.channel()
        channel.confirm_delivery()  # a refused publish is then reported, not lost
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
            operation(channel)
        return refused.value.reply_code, refused.value.reply_text
    finally:
        if connection.is_open:
            connection.close()


def consume(queue):
    return lambda ch: ch.basic_consume(queue, lambda *args: None)


def get(queue):
    return lambda ch: ch.basic_get(queue)


def purge(queue):
    return lambda ch: ch.queue_purge(queue)


def delete(queue):
    return lambda ch: ch.queue_delete(queue)


def declare(queue, queue_type="classic"):
    return lambda ch: ch.queue_declare(queue, durable=True, arguments={"x-queue-type": queue_type})


def declare_exchange(exchange):
    return lambda ch: ch.exchange_declare(exchange, "topic", durable=True)


def publish(exchange, routing_key="anything"):
    return lambda ch: ch.basic_publish(exchange, routing_key, b"{}")


def bind(queue, exchange, routing_key="#"):
    return lambda ch: ch.queue_bind(queue, exchange, routing_key)


# (user, what it tries) for each thing a service may not do. player_sync is the sync pool's queue,
# match_processing the matches pool's, dead_letters the parking queue, dlx the dead-letter exchange.
FORBIDDEN = [
    ("web", "consume a task queue", consume("player_sync")),
    ("web", "get from a task queue", get("match_processing")),
    ("web", "purge a task queue", purge("player_sync")),
    ("web", "delete a task queue", delete("player_sync")),
    ("web", "declare a task queue (the deployer's)", declare("player_sync", "quorum")),
    ("web", "declare a queue of its own", declare("web-scratch")),
    ("web", "publish a remote-control command", publish("celery.pidbox")),
    ("web", "publish to the dead-letter exchange", publish("dlx", "dead_letters")),
    ("worker-sync", "consume the matches pool's queue", consume("match_processing")),
    ("worker-sync", "get from the matches pool's queue", get("match_processing")),
    ("worker-sync", "purge the matches pool's queue", purge("match_processing")),
    ("worker-sync", "delete its own queue", delete("player_sync")),
    ("worker-sync", "delete the matches pool's queue", delete("match_processing")),
    ("worker-sync", "declare its own queue (the deployer's)", declare("player_sync", "quorum")),
    ("worker-sync", "declare a queue outside its regex", declare("scratch")),
    ("worker-sync", "declare the matches pool's remote-control queue", declare("matches@host.celery.pidbox")),
    ("worker-sync", "declare the task exchange", declare_exchange("tasks")),
    ("worker-sync", "bind the matches pool's queue", bind("match_processing", "tasks")),
    ("worker-sync", "consume the parking queue", consume("dead_letters")),
    ("worker-sync", "publish to the dead-letter exchange", publish("dlx", "dead_letters")),
    ("worker-matches", "consume the sync pool's queue", consume("player_sync")),
    ("beat", "consume a task queue", consume("player_sync")),
    ("beat", "get from the parking queue", get("dead_letters")),
    ("beat", "declare a queue", declare("beat-scratch")),
    ("beat", "publish a remote-control command", publish("celery.pidbox")),
]


def test_each_service_runs_as_its_own_user_and_celery_is_refused_nothing(app, riot):
    """Web publishes, both pools consume and publish each other's tasks, a retry goes through native delayed
    delivery, `celery inspect ping` (the workers' health check) answers, dead letters are listed as web.
    First in the module, so the node's log holds only what the services did."""
    ids = ["EUW1_9001", "EUW1_9002"]
    riot.add_player("Least", "EUW", "puuid-least", ids)
    riot.fail(f"/matches/{ids[1]}$", 500)  # one retry, with a countdown, by the matches pool's user
    job = app.wait_job(app.sync("Least", "EUW", "euw1"), 90, matches_processed=2)
    assert (job["status"], job["matches_failed"]) == ("complete", 0)
    retried = app.query(
        "SELECT retries FROM players_taskattempt WHERE task_name = 'matches.tasks.process_match' "
        "AND argsrepr LIKE ? ORDER BY id",
        f"%{ids[1]}%",
    )
    assert retried == [(0,), (1,)]
    for pool in ("sync", "matches"):  # the container's health check, as the pool's own user
        env = {**app.env, "CELERY_BROKER_URL": app.broker_urls[f"worker-{pool}"]}
        name = f"{pool}@{socket.gethostname()}"  # the plan's `-n <pool>@%h`
        ping = subprocess.run(
            celery_argv(("celery", "-A", "config", "inspect", "ping", "-d", name, "--timeout", "10")),
            cwd=APP_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert ping.returncode == 0 and "pong" in ping.stdout, ping.stdout + ping.stderr
    assert app.parked() == []  # `dead_letters list`, as web

    assert "access_refused" not in node_log(app).lower()
    for process in app.processes:
        assert "ACCESS_REFUSED" not in process.output() and "Failed to" not in process.output(), process.log.name
    admin = app.node.api("admin", app.rendered.password("admin"))
    pools = {"worker-sync", "worker-matches"}
    # both pools' connections: the management API lists a connection a statistics interval after it opens
    connected = {c["user"] for c in admin.get_when("connections", lambda cs: pools <= {c["user"] for c in cs})}
    assert connected <= {"web", "worker-sync", "worker-matches"} and pools <= connected
    # each pool bound only its own queues to delayed delivery
    delayed = {
        b["destination"]
        for b in admin.get("bindings/%2F")
        if b["routing_key"].startswith("#.") and b["destination_type"] == "queue"
    }
    assert delayed == {
        f"{queue}{region}"
        for queue in ("player_sync", "match_processing", "timeline_processing")
        for region in ("", "_americas", "_asia", "_sea")
    }  # every region's


def test_web_and_beat_publish_tasks_and_countdowns_as_their_own_users(app):
    """beat's schedule is minutes apart: its publishes are made here with the app's settings and its user."""
    for service in ("web", "beat"):
        client = Celery(f"least-privilege-{service}", broker=app.broker_urls[service], set_as_current=False)
        client.conf.update(celery_settings(app.rendered.celery))
        client.conf.broker_transport_options = {"confirm_publish": True}
        client.send_task("players.tasks.recover_stale_jobs")  # to `recovery`: no worker of its pool runs here
        client.send_task("players.tasks.recover_stale_jobs", countdown=3600)  # to celery_delayed_27
        client.close()
    with connect(app, "admin") as connection:
        channel = connection.channel()
        waiting = channel.queue_declare("recovery", passive=True).method.message_count
        delayed = sum(
            channel.queue_declare(f"celery_delayed_{level}", passive=True).method.message_count for level in range(28)
        )
        channel.queue_purge("recovery")
        for level in range(28):
            channel.queue_purge(f"celery_delayed_{level}")
    assert (waiting, delayed) == (2, 2)


def alternatives(regex: str) -> list[str]:
    """The top-level alternatives of `^(a|b|...)$`."""
    parts, depth, current = [], 0, ""
    for char in regex[2:-2]:
        depth += (char == "(") - (char == ")")
        if char == "|" and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    return parts + [current]


POOL = "background"  # a pool the module's fixture does not run
POOL_ACCESS = next(
    p for p in build_plan(require(load_definition(stack="dev"))).topology.permissions if p.user == f"worker-{POOL}"
)
ELEMENTS = [
    (kind, element) for kind in ("configure", "write", "read") for element in alternatives(getattr(POOL_ACCESS, kind))
]


@pytest.mark.parametrize("kind, element", ELEMENTS, ids=[f"{k}: {e}" for k, e in ELEMENTS])
def test_every_element_of_a_pools_permissions_is_needed(app, kind, element):
    """Least, not just enough: without any one alternative of any of its three regexes, a real worker of the
    pool (started, then pinged) is refused something by the broker."""
    narrowed = {k: getattr(POOL_ACCESS, k) for k in ("configure", "write", "read")}
    narrowed[kind] = "^(" + "|".join(e for e in alternatives(narrowed[kind]) if e != element) + ")$"
    user = POOL_ACCESS.user
    app.node.ctl(
        "rabbitmqctl", "set_permissions", "-p", "/", user, narrowed["configure"], narrowed["write"], narrowed["read"]
    )
    log = app.node.base / "log" / "rabbit.log"
    before = len(log.read_text(errors="replace"))
    try:
        try:
            worker = app.start_worker(POOL)
        except (WaitTimeout, AssertionError):  # refused at start: it never became ready
            worker = app.processes[-1]
        else:
            env = {**app.env, "CELERY_BROKER_URL": app.broker_urls[f"worker-{POOL}"]}
            subprocess.run(
                celery_argv(
                    (
                        "celery",
                        "-A",
                        "config",
                        "inspect",
                        "ping",
                        "-d",
                        f"{POOL}@{socket.gethostname()}",
                        "--timeout",
                        "5",
                    )
                ),
                cwd=APP_DIR,
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
        worker.stop(timeout=15)
        app.processes.remove(worker)
    finally:
        app.node.ctl(
            "rabbitmqctl",
            "set_permissions",
            "-p",
            "/",
            user,
            POOL_ACCESS.configure,
            POOL_ACCESS.write,
            POOL_ACCESS.read,
        )
    assert f"refused for user '{user}'" in log.read_text(errors="replace")[before:]


@pytest.mark.parametrize("user, attempt, operation", FORBIDDEN, ids=[f"{u}: {a}" for u, a, _ in FORBIDDEN])
def test_forbidden_operation_is_refused(app, user, attempt, operation):
    code, text = refusal(app, user, operation)
    assert code == 403 and text.startswith("ACCESS_REFUSED") and f"user '{user}'" in text, text


def test_the_refusals_are_about_the_user_not_the_object(app):
    """The control: the deployer's admin may do what the services may not (on objects the tests own)."""
    with connect(app, "admin") as connection:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.queue_declare("scratch", durable=True, arguments={"x-queue-type": "classic"})
        channel.basic_publish("dlx", "nowhere", b"{}")
        assert channel.basic_get("match_processing") == (None, None, None)
        channel.queue_delete("scratch")


def test_the_monitoring_user_may_read_the_management_api_and_nothing_else(app):
    monitor = app.node.api("monitor", app.rendered.password("monitor"))
    assert {q["name"] for q in monitor.get("queues/%2F")} >= {"player_sync", "dead_letters"}
    assert monitor.get("nodes")  # node-level data: the monitoring tag
    base = f"http://127.0.0.1:{app.node.ports.management}/api"
    published = monitor.session.post(
        f"{base}/exchanges/%2F/tasks/publish",
        timeout=30,
        json={"properties": {}, "routing_key": "player_sync", "payload": "{}", "payload_encoding": "string"},
    )
    got = monitor.session.post(
        f"{base}/queues/%2F/dead_letters/get",
        timeout=30,
        json={"count": 1, "ackmode": "ack_requeue_true", "encoding": "auto"},
    )
    user = monitor.session.put(f"{base}/users/intruder", json={"password": "x", "tags": "administrator"}, timeout=30)
    assert not any(r.ok for r in (published, got, user)), (published.text, got.text, user.text)
    assert user.status_code == 401
    for attempt in (publish("tasks", "player_sync"), consume("player_sync"), get("dead_letters"), declare("scratch")):
        code, text = refusal(app, "monitor", attempt)
        assert code == 403 and text.startswith("ACCESS_REFUSED"), text


@pytest.mark.parametrize("user", ["web", "beat", "worker-sync", "worker-matches", "worker-background"])
def test_app_users_have_no_management_api(app, user):
    api = app.node.api(user, app.rendered.password(user))
    assert api.status("whoami") == 401 and api.status("queues") == 401


def test_there_is_no_guest_and_management_listens_on_loopback_only(app):
    assert "guest" not in {u["name"] for u in app.node.api("admin", app.rendered.password("admin")).get("users")}
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        connect(app, "guest", "guest")
    assert (
        requests.get(
            f"http://127.0.0.1:{app.node.ports.management}/api/whoami", auth=("guest", "guest"), timeout=30
        ).status_code
        == 401
    )
    conf = (app.rendered.config_dir / "rabbitmq.conf").read_text()
    assert "management.tcp.ip = 127.0.0.1\n" in conf  # a node on the host listens on `bind`...
    assert port_open("127.0.0.1", app.node.ports.management)
    assert not port_open("127.0.0.2", app.node.ports.management)  # ...not on every interface
    for stack in ("dev", "staging", "prod"):  # a container listens inside; Docker publishes on `bind` only
        plan = build_plan(require(load_definition(stack=stack)))
        listener = "ssl" if plan.broker.tls else "tcp"  # staging and prod: HTTPS management alone
        assert f"management.{listener}.ip = 0.0.0.0\n" in render.rabbitmq_conf(plan)
        tls = {f"tls/{name}": "" for name in (*BROKER_TLS_FILES, *APP_TLS_FILES)} if plan.broker.tls else {}
        broker = compose_file(plan, {**render.config_files(plan), "celery.json": "", **tls}, "app", None, "base")
        port = plan.broker.management_client_port
        assert f"127.0.0.1:{port}:{port}" in broker["services"]["rabbitmq"]["ports"]


def test_the_broker_url_of_each_service_names_its_own_user(app):
    users = app.rendered.celery["broker_users"]
    assert users == {
        "web": "web",
        "beat": "beat",
        "worker-background": "worker-background",
        "worker-matches": "worker-matches",
        "worker-sync": "worker-sync",
    }
    for service, user in users.items():
        assert app.broker_urls[service].startswith(f"amqp://{quote(user, safe='')}:")
