"""`python manage.py dead_letters list|replay [--queue Q] [--limit N]`: the tasks parked in the dead-letter
queue (task, arguments, reason, original queue from `x-death`), and moving them back to their queue.

Replay is at-least-once: a message is republished (persistent, with a publisher confirm) to its original
queue's exchange and routing key from celery.json before the parked copy is acknowledged. The tasks are
idempotent, so a replay interrupted between the two does no harm.
"""

from __future__ import annotations

import json

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from kombu import Connection

from config import topology
from config.tasks import SINCE_HEADER

# Headers the broker sets on dead-lettering and delivery; a replayed message starts afresh without them.
BROKER_HEADERS = {
    "x-death",
    "x-first-death-exchange",
    "x-first-death-queue",
    "x-first-death-reason",
    "x-last-death-exchange",
    "x-last-death-queue",
    "x-last-death-reason",
    "x-delivery-count",
}


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def describe(message) -> dict:
    """What a parked Celery message is: task, id, arguments, and its last death."""
    headers = dict(message.properties.get("application_headers") or {})
    deaths = headers.get("x-death") or []
    death = deaths[0] if deaths else {}
    args, kwargs = headers.get("argsrepr"), headers.get("kwargsrepr")
    if args is None:
        try:
            body = json.loads(message.body)
            args, kwargs = repr(body[0]), repr(body[1])
        except (ValueError, TypeError, IndexError, KeyError):
            args, kwargs = "?", "?"
    return {
        "task": _text(headers.get("task", "?")),
        "id": _text(headers.get("id", "?")),
        "args": _text(args),
        "kwargs": _text(kwargs),
        "queue": _text(death.get("queue", headers.get("x-first-death-queue", "?"))),
        "reason": _text(death.get("reason", headers.get("x-first-death-reason", "?"))),
        "count": int(death.get("count", 0) or 0),
        "time": _text(death.get("time", "")),
    }


class Command(BaseCommand):
    help = "List the tasks parked in the dead-letter queue, or replay them to their original queue."

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["list", "replay"])
        parser.add_argument("--queue", help="only messages that died in this queue")
        parser.add_argument("--limit", type=int, default=None, help="at most this many messages")
        parser.add_argument("--json", action="store_true", help="one JSON object a line")

    def handle(self, *args, action, queue, limit, json: bool, **options):
        import json as json_module

        if limit is not None and limit < 1:
            raise CommandError("--limit must be at least 1")
        declarations = topology.load(settings.CELERY_TOPOLOGY_FILE)
        parking = topology.dead_letter_queue(declarations)["name"]
        task_queues = {d["name"]: d for d in declarations["task_queues"]}
        if queue and queue not in task_queues:
            raise CommandError(f"--queue {queue}: not a task queue of celery.json ({', '.join(sorted(task_queues))})")
        done = 0
        with Connection(settings.CELERY_BROKER_URL, transport_options={"confirm_publish": True}) as conn:
            conn.ensure_connection(max_retries=3)
            reader = conn.channel()  # unacked until replayed; the rest go back to the queue on close
            publisher = conn.channel()
            try:
                while limit is None or done < limit:
                    message = reader.basic_get(queue=parking, no_ack=False)
                    if message is None:
                        break
                    info = describe(message)
                    if queue and info["queue"] != queue:
                        continue
                    if action == "replay":
                        target = task_queues.get(info["queue"])
                        if target is None:
                            self.stderr.write(f"skipped {info['id']}: {info['queue']} is not a task queue")
                            continue
                        self._republish(publisher, message, target)
                        reader.basic_ack(message.delivery_tag)
                    done += 1
                    line = (
                        json_module.dumps(info)
                        if json
                        else (
                            f"{info['task']}[{info['id']}] args={info['args']} kwargs={info['kwargs']} "
                            f"queue={info['queue']} reason={info['reason']} deaths={info['count']}"
                        )
                    )
                    self.stdout.write(("replayed " if action == "replay" and not json else "") + line)
            finally:
                reader.close()
                publisher.close()
        verb = "replayed" if action == "replay" else "parked"
        self.stderr.write(f"{done} message(s) {verb}" + (f" from queue {queue}" if queue else ""))

    @staticmethod
    def _republish(channel, message, target: dict) -> None:
        from amqp import Message

        properties = dict(message.properties)
        # ... and without the time of its first 429: a replay starts its rate-limit clock again
        headers = {
            k: v
            for k, v in (properties.pop("application_headers", None) or {}).items()
            if k not in BROKER_HEADERS and k != SINCE_HEADER
        }
        properties["delivery_mode"] = 2  # persistent
        # basic_publish waits for the broker's confirm (confirm_publish) and raises if it is refused
        channel.basic_publish(
            Message(message.body, application_headers=headers, **properties),
            exchange=target["exchange"],
            routing_key=target["routing_key"],
        )
