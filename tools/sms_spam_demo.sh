#!/usr/bin/env bash
# The SMS Spam proof of `gpt finetune classify`: pretrain a small GPT with the GPT-2 vocabulary on
# Tiny Shakespeare, fine-tune it as a spam classifier on the fixed split in data/sms_spam
# (tools/split_sms_spam.py), print the test accuracy and confusion matrix.
#
# Usage: tools/sms_spam_demo.sh            (after ./setup.sh; run timed work under flock /tmp/cpu.lock)
# Environment: GPT (default build/gpt), WORK (default build/sms-demo), PRETRAIN_STEPS (default 200),
#              EPOCHS (default 2), THREADS (default: all cores).
set -euo pipefail
cd "$(dirname "$0")/.."
GPT=${GPT:-build/gpt}
WORK=${WORK:-build/sms-demo}
STEPS=${PRETRAIN_STEPS:-200}
EPOCHS=${EPOCHS:-2}
THREADS=(${THREADS:+--threads "$THREADS"})

log() { printf '== %s (%s)\n' "$*" "$(date -u +%H:%M:%S)"; }
mkdir -p "$WORK"

log "Tiny Shakespeare as GPT-2 token shards"
"$GPT" prepare --input data/tinyshakespeare.txt --out "$WORK/ts-gpt2" --force -q "${THREADS[@]}"

log "pretraining a 4-layer, 64-wide GPT for $STEPS steps (batch 8 x 64 tokens)"
rm -rf "$WORK/pretrained"
"$GPT" train --data "$WORK/ts-gpt2" --out "$WORK/pretrained" --n-layer 4 --n-head 4 --n-embd 64 --context 64 \
  -b 8 --steps "$STEPS" --lr 1e-3 --min-lr 1e-4 --warmup 30 --beta2 0.99 --shuffle --seed 1 \
  --eval-every "$STEPS" --eval-batches 10 -q "${THREADS[@]}"

log "fine-tuning it as a spam classifier ($EPOCHS epochs, whole model + head)"
rm -rf "$WORK/classifier"
"$GPT" finetune classify --model "$WORK/pretrained" --out "$WORK/classifier" \
  --train data/sms_spam/train.tsv --val data/sms_spam/val.tsv --test data/sms_spam/test.tsv \
  --text-field text --label-field label --trainable all --epochs "$EPOCHS" --batch-size 16 --lr 5e-4 \
  --max-len 64 --seed 1 --quiet "${THREADS[@]}"

log "classifying two new messages"
"$GPT" classify --model "$WORK/classifier" --text "WINNER!! You have won a 1000 cash prize. Call 09061701461 to claim now"
"$GPT" classify --model "$WORK/classifier" --text "Are we still meeting for lunch tomorrow?"
log "done; results in $WORK/classifier/results.json"
