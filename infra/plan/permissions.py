"""Least privilege: each Celery service's user and its permissions in the Celery vhost, derived from the
definition (pure; `plan.py` adds them to the topology).

The regexes are what Celery 5.7 / kombu 5.7 declare and use at run time, found with real workers on a real
broker (tests/broker/test_least_privilege.py). The task queues, their exchanges and the parking queues are
the deployer's: no Celery service declares them (celery.json marks them `no_declare`), so none needs
`configure` on them, and none can delete them. RabbitMQ checks, per operation (rabbitmq.com/access-control):
declare/delete → configure on the resource; queue.bind → write on the queue, read on the exchange; exchange
binding → write on the destination, read on the source; publish → write on the exchange; consume, get,
purge → read on the queue.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from infra.definition.model import StackDefinition

# Celery's own objects (names as Celery 5.7 makes them; `drift.py` knows the same names as not drift):
PIDBOX = (r"celery\.pidbox", r"reply\.celery\.pidbox")  # remote control (`inspect ping`), mingle: exchanges
REPLY_QUEUES = r"[^.@]+\.reply\.celery\.pidbox"  # `<uuid>.reply.celery.pidbox`: an inspect's or mingle's replies
EVENTS = (r"celeryev", r"celeryev\.[^.]+")  # the event exchange and gossip's `celeryev.<uuid>` queues
# Native delayed delivery: `celery_delayed_0…27` exchanges and queues of the same names, and
# `celery_delayed_delivery`, declared by every worker at start; a countdown is published to celery_delayed_27.
DELAYED = r"celery_delayed_(\d+|delivery)"
DELAYED_ENTRY = r"celery_delayed_27"


def node_queue(pool: str) -> str:
    """A pool's workers are named `<pool>@<host>`: their pidbox queues are `<pool>@<host>.celery.pidbox`."""
    return re.escape(pool) + r"@.+\.celery\.pidbox"


def anchored(patterns) -> str:
    """One regex matching exactly these names (already escaped); empty (nothing) for none."""
    patterns = list(dict.fromkeys(patterns))
    return f"^({'|'.join(patterns)})$" if patterns else ""


@dataclass(frozen=True)
class ServiceAccess:
    service: str  # web, beat, worker-<pool>: the name of its container
    user: str
    configure: str
    write: str
    read: str


def service_access(d: StackDefinition) -> tuple[ServiceAccess, ...]:
    """What each Celery service may do in `celery.vhost`, and no more."""
    c = d.celery
    vhost = d.vhosts[c.vhost]
    task_queues = sorted(n for n, q in vhost.queues.items() if not q.parking)
    parking = sorted(n for n, q in vhost.queues.items() if q.parking)

    def exchange_of(qname: str) -> str:
        return re.escape(vhost.queues[qname].exchange or vhost.default_exchange)

    task_exchanges = sorted({exchange_of(q) for q in task_queues})
    # Publishers: write on the task exchanges, and on delayed delivery's entry for countdowns.
    publish = task_exchanges + [DELAYED_ENTRY]
    access = [
        # `manage.py dead_letters list|replay` runs in web's container: it gets and acks parked messages.
        ServiceAccess("web", c.web_user, "", anchored(publish), anchored(re.escape(q) for q in parking)),
    ] + ([ServiceAccess("beat", c.beat_user, "", anchored(publish), "")] if d.app.beat else [])
    for name, pool in sorted(c.workers.items()):
        own = [re.escape(q) for q in pool.queues]
        runtime = [*PIDBOX, node_queue(name), REPLY_QUEUES, *EVENTS, DELAYED]
        access.append(
            ServiceAccess(
                f"worker-{name}",
                pool.user,
                configure=anchored(runtime),
                # its own queues: the delayed-delivery binding `#.<key>` to them; its queues' exchanges: the
                # destination of the exchange binding from celery_delayed_delivery
                write=anchored(task_exchanges + own + runtime),
                read=anchored(own + sorted({exchange_of(q) for q in pool.queues}) + runtime),
            )
        )
    return tuple(access)
