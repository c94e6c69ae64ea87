"""The fake Riot API as a container on the stack's network (alias `fake-riot`): tests/app/fake_riot.py on
0.0.0.0:8080, with the players and delays of the JSON file given as argument. Runs in the app image."""
import json
import sys
import time

sys.path.insert(0, "/fake")  # tests/app, mounted read-only
from fake_riot import FakeRiot  # noqa: E402

config = json.loads(open(sys.argv[1]).read())
riot = FakeRiot(host="0.0.0.0", port=8080)
for player in config["players"]:
    riot.add_player(player["game_name"], player["tag_line"], player["puuid"], player["match_ids"])
for pattern, seconds in config.get("slow", {}).items():
    riot.slow(pattern, seconds)
riot.start()
print("fake Riot API on :8080", flush=True)
while True:
    time.sleep(3600)
