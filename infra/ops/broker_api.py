"""A broker's management HTTP API: the session `verify` reads a drift.Snapshot with and `migrate` acts through.

A thin adapter: requests and reshaping only; what counts as drift is decided in `drift.py`, what a
migration does in `migration.py` and `migrator.py`.
"""

from __future__ import annotations

from urllib.parse import quote

import requests

from infra.ops.drift import Snapshot


class BrokerAPIError(Exception):
    """The API could not be read: unreachable, refused the credentials, or answered an error."""


def api_path(*parts: str) -> str:
    """A management API path of names, each quoted whole (a vhost "/" is "%2F")."""
    return "/".join(quote(part, safe="") for part in parts)


def _tags(raw) -> tuple[str, ...]:
    # 3.10+ returns a list; older nodes a comma-separated string.
    return tuple(sorted(raw if isinstance(raw, list) else filter(None, str(raw).split(","))))


def _reason(response: requests.Response) -> str:
    try:
        return str(response.json().get("reason", "")) or "wrong user or password"
    except ValueError:
        return "wrong user or password"


def answers(url: str, timeout: float = 5) -> bool:
    """Whether anything serves `url` (any HTTP answer, a TLS handshake failure included): a first deploy has no
    broker yet."""
    try:
        requests.get(url, timeout=timeout, verify=False)
    except requests.exceptions.SSLError:
        return True
    except requests.RequestException:
        return False
    return True


class ManagementClient:
    """A management HTTP API session as one user; errors worded for the user as BrokerAPIError. `ca_cert`:
    the CA an https:// URL is verified with (the stack's own); without it, the system's CAs."""

    def __init__(self, url: str, user: str, password: str, timeout: float = 30, ca_cert: str | None = None):
        self.session = requests.Session()
        self.session.auth = (user, password)
        self.user, self.timeout, self.ca_cert = user, timeout, ca_cert
        self.base = url.rstrip("/") + ("" if url.rstrip("/").endswith("/api") else "/api")

    def call(
        self, method: str, path: str, ok: tuple[int, ...] = (200, 201, 204), json=None, **params
    ) -> requests.Response:
        """The response to a request whose status is one of `ok`; anything else is a BrokerAPIError."""
        try:
            # verify per request: a session's is overridden by $REQUESTS_CA_BUNDLE
            response = self.session.request(
                method,
                f"{self.base}/{path}",
                params=params,
                json=json,
                timeout=self.timeout,
                verify=self.ca_cert or True,
            )
        except requests.exceptions.SSLError as exc:
            raise BrokerAPIError(
                f"{self.base}: TLS verification failed ({exc.__class__.__name__}): pass the stack's CA with --ca-cert"
            ) from None
        except requests.RequestException as exc:
            raise BrokerAPIError(f"cannot reach {self.base}: {exc.__class__.__name__}") from None
        if response.status_code == 401:
            # The broker says why: bad credentials, or (for /users, /permissions) "Not administrator user".
            reason = _reason(response)
            hint = "; this needs a user with the administrator tag" if "administrator" in reason else ""
            raise BrokerAPIError(f"{self.base}/{path}: user {self.user!r} was refused (401): {reason}{hint}")
        if response.status_code not in ok:
            detail = response.text[:300].strip()
            raise BrokerAPIError(
                f"{method} {self.base}/{path}: HTTP {response.status_code}"
                + (f": {detail}" if detail and method != "GET" else "")
            )
        return response

    def get(self, path: str, **params):
        return self.call("GET", path, **params).json()


def read_snapshot(url: str, user: str, password: str, timeout: float = 30, ca_cert: str | None = None) -> Snapshot:
    """Every vhost, user, permission, exchange, queue, binding and policy the broker holds."""
    get = ManagementClient(url, user, password, timeout, ca_cert).get

    return Snapshot(
        vhosts={
            v["name"]: {"description": v.get("description") or ""} for v in get("vhosts", columns="name,description")
        },
        users={
            u["name"]: (_tags(u["tags"]), u.get("password_hash", ""), u.get("hashing_algorithm", ""))
            for u in get("users")
        },
        permissions={
            (p["user"], p["vhost"]): {k: p[k] for k in ("configure", "write", "read")} for p in get("permissions")
        },
        exchanges={
            (e["vhost"], e["name"]): {
                "type": e["type"],
                "durable": e["durable"],
                "auto_delete": e["auto_delete"],
                "internal": e["internal"],
                "arguments": e.get("arguments") or {},
            }
            for e in get("exchanges", columns="vhost,name,type,durable,auto_delete,internal,arguments")
        },
        queues={
            (q["vhost"], q["name"]): {
                "durable": q["durable"],
                "auto_delete": q["auto_delete"],
                "arguments": q.get("arguments") or {},
            }
            for q in get("queues", columns="vhost,name,durable,auto_delete,arguments")
        },
        bindings={
            (b["vhost"], b["source"], b["destination"], b["destination_type"], b["routing_key"])
            for b in get("bindings")
        },
        policies={
            (p["vhost"], p["name"]): {
                "pattern": p["pattern"],
                "apply-to": p["apply-to"],
                "priority": p["priority"],
                "definition": p["definition"],
            }
            for p in get("policies")
        },
    )
