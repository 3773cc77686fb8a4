#!/usr/bin/env bash
# lm-evaluation-harness (EleutherAI's, pinned in requirements.txt) against `gpt serve`: its
# local-completions model over the OpenAI API, on the two local tasks in tasks/ (a HellaSwag-format
# multiple choice and a generate_until), then example by example against `gpt eval --choices` and
# `gpt generate --greedy`. See docs/serving.md ("Evaluation harnesses").
#
#   bash bench/lm_eval/run.sh [--model DIR] [--record]
#
# Installs lm-eval into its own venv, .venv-lmeval (system site packages visible, so Debian's torch
# is never replaced; lm-eval's API models do not import torch). Without --model it trains a small
# model on the bundled Tiny Shakespeare first (about a minute). --record rewrites
# tests/data/lm_eval/ (the tasks and the exact requests lm-eval sent), which the suite's
# lm_eval_replay test replays without lm-eval.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=.venv-lmeval
if [ ! -x "$VENV/bin/lm_eval" ]; then
  python3 -m venv --system-site-packages "$VENV"
  "$VENV/bin/pip" install --quiet --no-deps -r bench/lm_eval/requirements.txt
fi
[ -x build/gpt ] || ./setup.sh build
exec "$VENV/bin/python" bench/lm_eval/run.py --gpt build/gpt --lm-eval "$VENV/bin/lm_eval" "$@"
