"""A fake Riot API on 127.0.0.1, serving app/sample_riot/data in account-v1 and match-v5's shapes: the tests'
fake, and with `python -m sample_riot` the local stack's sample Riot API.

URLs are the real paths under a routing prefix: RIOT_API_BASE_URL=http://127.0.0.1:PORT/{routing}.
The test scripts failures per path pattern: `fail(pattern, (500,), (429, {"Retry-After": "3"}))` answers the
next two matching requests so, then the fixtures again; `fail_always(pattern, 503)` until `recover(pattern)`;
`slow(pattern, seconds)`; `on_request(pattern, callback)`. Every request is logged with its time.

Rate limits as Riot enforces them: per routing region (the application limit, `app_limit`) and per region
and method (`method_limits`), in sliding windows, announced on every answer in X-App-Rate-Limit /
X-Method-Rate-Limit and their -Count headers. A request past a limit is answered 429 with Retry-After and
X-Rate-Limit-Type, and counted in `violations`. The default is a production key's application limit; a
test may give any, e.g. a development key's with the 2-minute window shortened (`20:1,100:12`).
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable
from urllib.parse import unquote, urlsplit

FIXTURES = Path(__file__).resolve().parent / "data"
ROUTINGS = {"americas", "asia", "europe", "sea"}
DEV_KEY_LIMIT = "20:1,100:120"
PRODUCTION_KEY_LIMIT = "500:10,30000:600"  # the default: tests that are not about rate limits stay clear of it
# Riot's documented method limits of the methods served here (generous next to a development key's).
METHOD_LIMITS = {
    "account-v1.getByRiotId": "1000:60",
    "match-v5.getMatchIdsByPUUID": "2000:10",
    "match-v5.getMatch": "2000:10",
    "match-v5.getTimeline": "2000:10",
}


def method_of(path: str) -> str:
    if path.startswith("/riot/account/"):
        return "account-v1.getByRiotId"
    if path.endswith("/ids"):
        return "match-v5.getMatchIdsByPUUID"
    return "match-v5.getTimeline" if path.endswith("/timeline") else "match-v5.getMatch"


def parse_limits(value: str) -> list[tuple[int, float]]:
    """'20:1,100:120' → [(20, 1.0), (100, 120.0)]: (count, window seconds)."""
    return [(int(c), float(w)) for c, w in (part.split(":") for part in value.split(",") if part)]


class Limiter:
    """Riot's side: accepted requests per key, in sliding windows."""

    def __init__(self, limits: str):
        self.limits = parse_limits(limits)
        self.accepted: list[float] = []

    @property
    def header(self) -> str:
        return ",".join(f"{count}:{window:g}" for count, window in self.limits)

    def counts(self, now: float) -> list[int]:
        return [sum(1 for at in self.accepted if at > now - window) for _, window in self.limits]

    def retry_after(self, now: float) -> float | None:
        """None if a request now is within every window; else seconds until it would be."""
        waits = []
        for (count, window), seen in zip(self.limits, self.counts(now)):
            if seen >= count:
                inside = sorted(at for at in self.accepted if at > now - window)
                waits.append(inside[seen - count] + window - now)
        return max(waits) if waits else None


def fixture(name: str):
    return json.loads((FIXTURES / name).read_text())


@dataclass(frozen=True)
class Request:
    at: float  # time.monotonic()
    routing: str
    path: str
    status: int


class FakeRiot:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        app_limit: str = PRODUCTION_KEY_LIMIT,
        method_limits: dict | None = None,
    ):
        """On loopback and a free port for the tests; in a container on 0.0.0.0:8080 as the sample Riot API."""
        self.app_limit = app_limit
        self.method_limits = {**METHOD_LIMITS, **(method_limits or {})}
        self.limiters: dict[str, Limiter] = {}  # region, or region:method
        self.violations: list[Request] = []
        self.players: dict[tuple[str, str], dict] = {}  # (game name lower, tag lower) → account
        self.match_ids: dict[str, list[str]] = {}  # puuid → ids
        self.requests: list[Request] = []
        self.arrivals: list[str] = []  # every request's path as it arrives, before its answer is worked out
        self._scripts: list[tuple[re.Pattern, list]] = []  # scripted answers, consumed in order
        self._always: dict[str, int] = {}
        self._slow: dict[str, float] = {}
        self._hooks: list[tuple[re.Pattern, Callable]] = []
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer((host, port), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    # -- life cycle --------------------------------------------------------------------------------
    def start(self) -> "FakeRiot":
        self.thread.start()
        return self

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/{{routing}}"

    # -- content -----------------------------------------------------------------------------------
    def add_player(self, game_name: str, tag_line: str, puuid: str, match_ids: list[str]) -> None:
        account = fixture("account.json")
        account.update(puuid=puuid, gameName=game_name, tagLine=tag_line)
        self.players[(game_name.lower(), tag_line.lower())] = account
        self.match_ids[puuid] = list(match_ids)

    def _owner(self, match_id: str) -> str | None:
        return next((puuid for puuid, ids in self.match_ids.items() if match_id in ids), None)

    def match(self, match_id: str) -> dict | None:
        owner = self._owner(match_id)
        if owner is None:
            return None
        data = fixture("match.json")
        number = int(match_id.split("_")[1])
        data["metadata"]["matchId"] = match_id
        data["metadata"]["participants"][0] = owner
        data["info"]["participants"][0]["puuid"] = owner
        data["info"]["gameId"] = number
        data["info"]["platformId"] = match_id.split("_")[0]
        data["info"]["gameCreation"] = int(time.time() * 1000) - 3_600_000  # recent: not purged
        return data

    def timeline(self, match_id: str) -> dict | None:
        owner = self._owner(match_id)
        if owner is None:
            return None
        data = fixture("timeline.json")
        data["metadata"]["matchId"] = match_id
        data["metadata"]["participants"][0] = owner
        data["info"]["participants"][0]["puuid"] = owner
        data["info"]["gameId"] = int(match_id.split("_")[1])
        return data

    # -- control -----------------------------------------------------------------------------------
    def fail(self, pattern: str, *answers) -> None:
        """The next len(answers) requests matching `pattern` get these (status, [headers]) answers."""
        with self._lock:
            self._scripts.append((re.compile(pattern), [a if isinstance(a, tuple) else (a,) for a in answers]))

    def fail_always(self, pattern: str, status: int) -> None:
        self._always[pattern] = status

    def recover(self, pattern: str) -> None:
        self._always.pop(pattern, None)

    def slow(self, pattern: str, seconds: float) -> None:
        self._slow[pattern] = seconds

    def on_request(self, pattern: str, callback) -> None:
        """callback(path) runs before the answer to each matching request."""
        self._hooks.append((re.compile(pattern), callback))

    def clear_hooks(self) -> None:
        self._hooks.clear()

    def seen(self, pattern: str) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if re.search(pattern, r.path)]

    def arrived(self, pattern: str) -> list[str]:
        """Matching requests as they arrived: `seen` logs one once answered (after any `slow` delay), and
        one whose client was killed meanwhile later still."""
        with self._lock:
            return [path for path in self.arrivals if re.search(pattern, path)]

    # -- rate limits -------------------------------------------------------------------------------
    def _limiter(self, key: str, limits: str) -> Limiter:
        if key not in self.limiters:
            self.limiters[key] = Limiter(limits)
        return self.limiters[key]

    def _admit(self, routing: str, path: str, now: float) -> tuple[dict, tuple | None]:
        """The rate-limit headers of a request arriving now, and a 429 answer if it is past a limit."""
        method = method_of(path)
        app = self._limiter(routing, self.app_limit)
        per_method = self._limiter(f"{routing}:{method}", self.method_limits[method])
        with self._lock:
            refused = [
                (kind, wait)
                for kind, limiter in (("application", app), ("method", per_method))
                if (wait := limiter.retry_after(now)) is not None
            ]
            if not refused:
                app.accepted.append(now)
                per_method.accepted.append(now)
            headers = {
                "X-App-Rate-Limit": app.header,
                "X-Method-Rate-Limit": per_method.header,
                "X-App-Rate-Limit-Count": ",".join(f"{n}:{w:g}" for n, (_, w) in zip(app.counts(now), app.limits)),
                "X-Method-Rate-Limit-Count": ",".join(
                    f"{n}:{w:g}" for n, (_, w) in zip(per_method.counts(now), per_method.limits)
                ),
            }
        if not refused:
            return headers, None
        kind, wait = max(refused, key=lambda r: r[1])
        return headers, (
            429,
            {"Retry-After": str(max(1, math.ceil(wait))), "X-Rate-Limit-Type": kind},
            {"status": {"message": "Rate limit exceeded", "status_code": 429}},
        )

    # -- serving -----------------------------------------------------------------------------------
    def _answer(self, routing: str, path: str, query: str) -> tuple[int, dict, object]:
        for rx, hook in list(self._hooks):
            if rx.search(path):
                hook(path)
        for pattern, seconds in list(self._slow.items()):
            if re.search(pattern, path):
                time.sleep(seconds)
        with self._lock:
            for rx, answers in self._scripts:
                if rx.search(path) and answers:
                    answer = answers.pop(0)
                    return answer[0], (answer[1] if len(answer) > 1 else {}), {"status": {"status_code": answer[0]}}
        for pattern, status in list(self._always.items()):
            if re.search(pattern, path):
                return status, {}, {"status": {"message": "Service unavailable", "status_code": status}}
        if routing not in ROUTINGS:
            return 404, {}, {"status": {"message": "Unknown routing", "status_code": 404}}
        m = re.fullmatch(r"/riot/account/v1/accounts/by-riot-id/([^/]+)/([^/]+)", path)
        if m:
            account = self.players.get((unquote(m.group(1)).lower(), unquote(m.group(2)).lower()))
            return (
                (200, {}, account)
                if account
                else (404, {}, {"status": {"message": "Data not found", "status_code": 404}})
            )
        m = re.fullmatch(r"/lol/match/v5/matches/by-puuid/([^/]+)/ids", path)
        if m:
            count = int(re.search(r"count=(\d+)", query).group(1)) if "count=" in query else 20
            return 200, {}, self.match_ids.get(unquote(m.group(1)), [])[:count]
        m = re.fullmatch(r"/lol/match/v5/matches/([A-Z0-9]+_\d+)(/timeline)?", path)
        if m:
            data = self.timeline(m.group(1)) if m.group(2) else self.match(m.group(1))
            return (200, {}, data) if data else (404, {}, {"status": {"message": "Data not found", "status_code": 404}})
        return 404, {}, {"status": {"message": "Not found", "status_code": 404}}

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes: with Nagle on, the body waited for the client's delayed
            # ACK, 40 ms on Linux, on every kept-alive request (bench/RESULTS.md, "Broker ceiling vs pipeline").
            disable_nagle_algorithm = True

            def do_GET(self):
                url = urlsplit(self.path)
                routing, _, rest = url.path.lstrip("/").partition("/")
                path = "/" + rest
                arrived = time.monotonic()
                with fake._lock:
                    fake.arrivals.append(path)
                limit_headers, refused = fake._admit(routing, path, arrived) if routing in ROUTINGS else ({}, None)
                try:
                    status, headers, body = refused or fake._answer(routing, path, url.query)
                except (BrokenPipeError, ConnectionResetError):
                    return
                headers = {**limit_headers, **headers}
                with fake._lock:
                    fake.requests.append(Request(arrived, routing, path, status))
                    if refused:
                        fake.violations.append(fake.requests[-1])
                payload = json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json;charset=utf-8")
                    self.send_header("Content-Length", str(len(payload)))
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args):
                pass

        return Handler
