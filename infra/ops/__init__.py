"""Day-two operations on a running or changing system: what a change does (`diff`), drift (`verify`),
a definition at a git ref.
"""
