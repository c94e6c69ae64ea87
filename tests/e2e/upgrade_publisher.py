"""The upgrade test's live publisher, run in a container of the app image on the stack's network, so it reaches
the broker by the name the app uses (`rabbitmq`) and follows the switch as the web service does.

`rate` `migration.record` tasks a second, round-robin over the given queues, each confirmed by the broker
before its tag is written to sent.txt; a failed publish is tried again with the same tag. Stops when the
file `stop` appears beside sent.txt."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from celery import Celery

from config.topology import celery_settings

OUT = Path(os.environ.get("EFFECTS_DIR", "/e2e-effects"))


def main() -> None:
    queues, rate = sys.argv[1].split(","), float(sys.argv[2])
    app = Celery("upgrade-publisher", broker=os.environ["BROKER_URL"], set_as_current=False)
    app.conf.update(celery_settings(json.loads(Path(os.environ["CELERY_TOPOLOGY_FILE"]).read_text())))
    app.conf.broker_transport_options = {"confirm_publish": True}
    app.conf.broker_connection_timeout = 30
    sent, failures = 0, 0
    start = time.monotonic()
    with open(OUT / "sent.txt", "a", buffering=1) as log, app.producer_or_acquire() as producer:
        while not (OUT / "stop").exists():
            tag = f"live-{sent}"
            try:
                app.send_task("migration.record", args=[tag], queue=queues[sent % len(queues)], producer=producer)
                log.write(tag + "\n")
                sent += 1
            except Exception as exc:  # noqa: BLE001 — not confirmed: the same tag again, after a pause
                failures += 1
                print(f"publish of {tag} failed: {exc!r}", flush=True)
                time.sleep(0.5)
            delay = start + sent / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    print(f"sent {sent}, {failures} failed attempt(s)", flush=True)


if __name__ == "__main__":
    main()
