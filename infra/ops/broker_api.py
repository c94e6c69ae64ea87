"""The live side of `verify`: a broker's topology read from its management HTTP API, as a drift.Snapshot.

A thin adapter: GETs and reshaping only; what counts as drift is decided in `drift.py`.
"""
from __future__ import annotations

import requests

from infra.ops.drift import Snapshot


class BrokerAPIError(Exception):
    """The API could not be read: unreachable, refused the credentials, or answered an error."""


def _tags(raw) -> tuple[str, ...]:
    # 3.10+ returns a list; older nodes a comma-separated string.
    return tuple(sorted(raw if isinstance(raw, list) else filter(None, str(raw).split(","))))


def _reason(response: requests.Response) -> str:
    try:
        return str(response.json().get("reason", "")) or "wrong user or password"
    except ValueError:
        return "wrong user or password"


def read_snapshot(url: str, user: str, password: str, timeout: float = 30, ca_cert: str | None = None) -> Snapshot:
    """Every vhost, user, permission, exchange, queue, binding and policy the broker holds. `ca_cert`: the
    CA an https:// URL is verified with (the stack's own); without it, the system's CAs."""
    session = requests.Session()
    session.auth = (user, password)
    base = url.rstrip("/") + ("" if url.rstrip("/").endswith("/api") else "/api")

    def get(path: str, **params):
        try:
            # verify per request: a session's is overridden by $REQUESTS_CA_BUNDLE
            response = session.get(f"{base}/{path}", params=params, timeout=timeout, verify=ca_cert or True)
        except requests.exceptions.SSLError as exc:
            raise BrokerAPIError(f"{base}: TLS verification failed ({exc.__class__.__name__}): pass the stack's "
                                 f"CA with --ca-cert") from None
        except requests.RequestException as exc:
            raise BrokerAPIError(f"cannot reach {base}: {exc.__class__.__name__}") from None
        if response.status_code == 401:
            # The broker says why: bad credentials, or (for /users, /permissions) "Not administrator user".
            reason = _reason(response)
            hint = "; verify needs a user with the administrator tag" if "administrator" in reason else ""
            raise BrokerAPIError(f"{base}/{path}: user {user!r} was refused (401): {reason}{hint}")
        if response.status_code != 200:
            raise BrokerAPIError(f"{base}/{path}: HTTP {response.status_code}")
        return response.json()

    return Snapshot(
        vhosts={v["name"]: {"description": v.get("description") or ""}
                for v in get("vhosts", columns="name,description")},
        users={u["name"]: (_tags(u["tags"]), u.get("password_hash", ""), u.get("hashing_algorithm", ""))
               for u in get("users")},
        permissions={(p["user"], p["vhost"]): {k: p[k] for k in ("configure", "write", "read")}
                     for p in get("permissions")},
        exchanges={(e["vhost"], e["name"]): {"type": e["type"], "durable": e["durable"],
                                             "auto_delete": e["auto_delete"], "internal": e["internal"],
                                             "arguments": e.get("arguments") or {}}
                   for e in get("exchanges", columns="vhost,name,type,durable,auto_delete,internal,arguments")},
        queues={(q["vhost"], q["name"]): {"durable": q["durable"], "auto_delete": q["auto_delete"],
                                          "arguments": q.get("arguments") or {}}
                for q in get("queues", columns="vhost,name,durable,auto_delete,arguments")},
        bindings={(b["vhost"], b["source"], b["destination"], b["destination_type"], b["routing_key"])
                  for b in get("bindings")},
        policies={(p["vhost"], p["name"]): {"pattern": p["pattern"], "apply-to": p["apply-to"],
                                            "priority": p["priority"], "definition": p["definition"]}
                  for p in get("policies")},
    )
