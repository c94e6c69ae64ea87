"""A sample Riot API (account-v1 and match-v5's shapes, a few players' matches): what the local stack's
`riot-sample` service serves when no Riot key is set, and the tests' fake Riot API (server.FakeRiot)."""
