#!/usr/bin/env bash
# Tutorial: train, resume, evaluate and sample from the command line (docs/command_line.md).
# Run: bash examples/tutorials/command_line.sh [RUN_DIR]   (a test runs it in a temporary directory)
set -euo pipefail
RUN=${1:-runs/tutorial}
BLACKBOX_VAE=${BLACKBOX_VAE:-blackbox-vae}

# --8<-- [start:walkthrough]
# 1. Train a two-layer SBN with VIMCO on the bundled 8x8 digits, stopping at step 300 of a longer plan
#    (--overwrite replaces the run of an earlier go at this tutorial; without it, train refuses to).
$BLACKBOX_VAE train --model sbn --layers 32,16 --loss vimco --n-samples 5 --steps 300 \
    --eval-every 100 --log-every 100 --checkpoint-every 100 --out "$RUN" --overwrite

# 2. Resume from the checkpoint and carry on to step 600, with the run's saved settings: the result is the
#    run that never stopped.
$BLACKBOX_VAE train --out "$RUN" --resume --steps 600

# 3. Estimate the test log-likelihood with a 1000-sample importance-weighted bound.
$BLACKBOX_VAE evaluate "$RUN" --k 1000

# 4. Draw 64 samples from the model into a PNG grid.
$BLACKBOX_VAE sample "$RUN" -n 64 --out "$RUN/samples.png"
# --8<-- [end:walkthrough]

test -f "$RUN/evaluation.json" && test -f "$RUN/samples.png" && test -f "$RUN/metrics.csv"
