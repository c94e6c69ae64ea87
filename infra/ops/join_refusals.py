"""Why a node is not in its cluster, read from the nodes' logs: with inter-node TLS a peer that cannot
join is refused in the TLS handshake, the node then boots alone, and only the logs say why (Erlang's TLS
distribution logs the alert of every refused connection). Pure: log text in, reasons out.
"""

from __future__ import annotations

import re

# Erlang's ssl logs `TLS server: In state … SERVER ALERT: Fatal - Unknown CA` (or CLIENT ALERT) on the node
# that refused or was refused, then the reason: ` - {bad_cert,hostname_check_failed}` on Erlang 25,
# ` - {bad_cert,\n {hostname_check_failed,\n …` with its details on Debian trixie's (RabbitMQ 4.0).
_ALERT = re.compile(
    r"TLS (?:server|client): In state \S+.*?(?:SERVER|CLIENT) ALERT: Fatal - ([A-Za-z ]+?)\s*(?:\x1b\[0m)?$"
    r"(?:\s*- \{bad_cert,\s*\{?(\w+))?",
    re.MULTILINE,
)

# What each alert means for a node joining (seen with Debian's Erlang 25 and RabbitMQ 3.10; trixie's Erlang
# and RabbitMQ 4.0 send Bad Certificate where Erlang 25 sent Handshake Failure for a host name).
MEANINGS = {
    "Unknown CA": "a node's certificate is not signed by the stack's CA (it has another CA)",
    "Unexpected Message": "a node speaks plaintext Erlang distribution to a TLS node (inter-node TLS is off on it)",
    "Bad Certificate": "a node presented a certificate its peer refused (wrong use, or not yet valid)",
    "Certificate Expired": "a node's certificate has expired",
    "Handshake Failure": "the TLS handshake failed: a certificate not for the host name connected to "
    "(hostname_check_failed), or no common TLS version",
    "hostname_check_failed": "a node's certificate is not for its host name (the part of its node name after @)",
}


def join_refusals(logs: dict[str, str]) -> list[str]:
    """From each node's log (node name → text): one line per node and distinct alert, `<node>: TLS alert
    '<alert>': <meaning>`. Empty: no refusal logged."""
    found: list[str] = []
    for node, text in logs.items():
        alerts = dict.fromkeys((m.group(1).strip(), m.group(2)) for m in _ALERT.finditer(text))
        found += [
            f"{node}: TLS alert {a!r}{f' ({why})' if why else ''}: {MEANINGS.get(why or a, 'the TLS handshake failed')}"
            for a, why in alerts
        ]
    return found
