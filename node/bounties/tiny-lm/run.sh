#!/bin/sh
# The example bounty's candidate phase: train on the public corpus, write the model to out/.
# The validator's harness (not this script) scores out/model.safetensors on the held-out set.
set -eu
exec "$L402_NODE" bounty train --config train.toml --out out
