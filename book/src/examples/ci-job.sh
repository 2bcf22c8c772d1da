#!/bin/sh
# The envkit steps of a CI job, for any CI system: run from the project folder, with envkit's
# `env` first on PATH. Each step prints plain progress lines (no terminal, no bars), never asks
# a question, and fails the job with its exit code.
set -eu

# The committed env.lock still matches env.kdl: if not, the reasons are printed and the job
# stops (run `env lock` and commit the lock).
env lock --check

# The image, from the committed lock only: every layer the store lacks is taken from the team
# cache (ENVKIT_TEAM_CACHE) when it is there, built otherwise, and what was built is sent to
# the cache for the next job and for every laptop.
env build --locked --push-cache

# The tests, in the environment: pytest's exit code is the job's.
env run --locked -- python3 -m pytest -q
