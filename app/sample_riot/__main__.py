"""`python -m sample_riot [--port 8080] [--config FILE]`: the sample Riot API on 0.0.0.0, in the app image.

Without --config it serves data/players.json; a JSON file of the same shape, {"players": [...], "slow":
{pattern: seconds}}, replaces them (the end-to-end tests' players and delays)."""

from __future__ import annotations

import argparse
import json
import threading
from pathlib import Path

from sample_riot.server import FakeRiot

SAMPLE = Path(__file__).resolve().parent / "data" / "players.json"  # a few players, each with a handful of matches


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sample_riot")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--config", help="JSON: players (and slow paths) to serve instead of the samples")
    args = parser.parse_args(argv)
    config = json.loads(Path(args.config or SAMPLE).read_text())
    riot = FakeRiot(host="0.0.0.0", port=args.port)
    for player in config["players"]:
        riot.add_player(player["game_name"], player["tag_line"], player["puuid"], player["match_ids"])
    for pattern, seconds in config.get("slow", {}).items():
        riot.slow(pattern, seconds)
    riot.start()
    names = ", ".join(f"{p['game_name']}#{p['tag_line']}" for p in config["players"])
    print(f"sample Riot API on :{args.port}: {names}", flush=True)
    threading.Event().wait()  # serve until the container stops


if __name__ == "__main__":
    main()
