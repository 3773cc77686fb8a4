#!/usr/bin/env bash
# The command-line contract of `gpt inspect`: the text tables, --json (one object whose shape follows
# the model: layers, heads, lens positions, top-k), --svg (a heat map file), GPT-1 post-LN and GPT-3
# banded models, and bad input (one "gpt: error:" line, non-zero exit, no stdout). The numbers are
# checked by tests/test_inspect.cpp against the model's own logits and a float64 forward.
#
# Usage: bash tests/test_cli_inspect.sh PATH_TO_gpt
#
# Prints one line per check ("ok - NAME" or "not ok - NAME: DETAILS") and ends with
# "N passed, M failed"; exits 1 if any check failed. Needs bash, coreutils, grep and python3.

source "$(dirname "${BASH_SOURCE[0]}")/cli_lib.sh"
cli_gpt_arg "$@"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} # tiny models: threads only add overhead
cli_tmpdir gpt_cli_inspect

# expect_error NAME SUBSTRING ARGS...: exactly one stderr line "gpt: error: ...", no stdout.
expect_error() {
  local name=$1 sub=$2 why
  shift 2
  x "$TMP/e.out" "$TMP/e.err" "$@"
  why=$(why_error $RC "$TMP/e.err" "$sub")
  [[ -z $why && -s $TMP/e.out ]] && why="stdout is not empty: $(excerpt "$TMP/e.out")"
  report "$name" "$why"
}

# py CODE FILE: runs a Python check on a JSON file; prints what failed, nothing when it passed.
py() { python3 -c "import json,sys; j=json.load(open(sys.argv[1])); $1" "$2" 2>&1; }

M=$TMP/gpt2
x "$TMP/i.out" "$TMP/i.err" init --n-layer 3 --n-head 2 --n-embd 32 --context 16 --seed 5 --out "$M"
report "init a pre-LN model" "$(why_ok $RC "$TMP/i.err")"
M1=$TMP/gpt1
x "$TMP/i.out" "$TMP/i.err" init --n-layer 2 --n-head 4 --n-embd 32 --context 16 --ln post --out "$M1"
report "init a post-LN model" "$(why_ok $RC "$TMP/i.err")"
M3=$TMP/gpt3
x "$TMP/i.out" "$TMP/i.err" init --n-layer 2 --n-head 2 --n-embd 32 --context 16 --attention banded --band 2 --out "$M3"
report "init a banded model" "$(why_ok $RC "$TMP/i.err")"

# The tables: a header naming the model and tokens, one row per layer in each table, the lens at
# the last position with --top-k entries per row.
x "$TMP/t.out" "$TMP/t.err" inspect --model "$M" --prompt "Hello world, hello" --top-k 2
why=$(why_run "$TMP/t.err")
[[ -z $why && $(head -1 "$TMP/t.out") != '3 layers, 2 heads, pre-LN; 4 prompt tokens: 0:"Hello" 1:" world" 2:"," 3:" hello"' ]] &&
  why="header: $(excerpt "$TMP/t.out")"
[[ -z $why ]] && ! grep -q '^logit lens at position 3 (" hello"): top 2' "$TMP/t.out" && why="no lens header: $(excerpt "$TMP/t.out")"
[[ -z $why && $(grep -c '^    [0-2]  ' "$TMP/t.out") -ne 9 ]] && why="expected 3 rows in each of 3 tables: $(excerpt "$TMP/t.out")"
[[ -z $why && $(tail -1 "$TMP/t.out" | grep -oE '" [0-9]\.[0-9]+(e-[0-9]+)?' | wc -l) -ne 2 ]] && why="lens row: $(tail -1 "$TMP/t.out")"
report "text tables" "$why"

# --json --all-positions: the lens at every position, top-k sorted probabilities.
x "$TMP/a.json" "$TMP/a.err" inspect --model "$M" --prompt "Hello world, hello" --top-k 3 --all-positions --json
why=$(why_run "$TMP/a.err")
[[ -z $why ]] && why=$(py '
L = j["layers"]
assert j["n_layer"] == 3 and len(L) == 3 and j["ln"] == "pre" and j["lens_from"] == 0, "shape"
assert j["tokens"] == ["Hello", " world", ",", " hello"], j["tokens"]
for l in L:
    assert len(l["entropy"]) == 2 and all(e >= 0 for e in l["entropy"]), l["entropy"]
    assert [p["position"] for p in l["lens"]] == [0, 1, 2, 3]
    for p in l["lens"]:
        pr = [t["prob"] for t in p["top"]]
        assert len(pr) == 3 and pr == sorted(pr, reverse=True) and 0 < sum(pr) <= 1 + 1e-6, pr
    for k in ("ln_1", "ln_2"):
        for s in ("in", "out"):
            assert set(l[k][s]) == {"avg", "last"} and set(l[k][s]["avg"]) == {"mean", "std", "norm"}
    assert abs(l["ln_2"]["out"]["avg"]["std"] - 1) < 0.05, "a LayerNorm output has std ~1 (gains 1, bias 0)"
' "$TMP/a.json")
report "--json --all-positions" "$why"

# --ids gives the same as the text it encodes; the JSON is deterministic.
x "$TMP/b.json" "$TMP/b.err" inspect --model "$M" --ids "15496 995 11 23748" --top-k 3 --all-positions --json
why=$(why_run "$TMP/b.err")
[[ -z $why ]] && ! cmp -s "$TMP/a.json" "$TMP/b.json" && why="--ids differs from --prompt: $(excerpt "$TMP/b.json")"
report "--ids equals --prompt" "$why"

# --svg: a heat map file, and the tables still on stdout.
x "$TMP/s.out" "$TMP/s.err" inspect --model "$M" --prompt "Hello world, hello" --all-positions --svg "$TMP/lens.svg"
why=$(why_run "$TMP/s.err")
[[ -z $why && ! -s $TMP/lens.svg ]] && why="no SVG written"
[[ -z $why ]] && ! grep -q '^<svg ' "$TMP/lens.svg" && why="not an SVG: $(excerpt "$TMP/lens.svg")"
[[ -z $why ]] && ! grep -q 'Logit lens' "$TMP/lens.svg" && why="no title: $(excerpt "$TMP/lens.svg")"
[[ -z $why && $(grep -c '<rect [^>]*stroke="#ddd"' "$TMP/lens.svg") -ne 12 ]] && why="expected 3 x 4 cells"
[[ -z $why ]] && ! grep -q '^logit lens at position 0' "$TMP/s.out" && why="no tables on stdout: $(excerpt "$TMP/s.out")"
report "--svg heat map" "$why"

# GPT-1 (post-LN) and GPT-3 (banded) models.
x "$TMP/p.json" "$TMP/p.err" inspect --model "$M1" --prompt "one two three" --json
why=$(why_run "$TMP/p.err")
[[ -z $why ]] && why=$(py 'assert j["ln"] == "post" and len(j["layers"]) == 2 and len(j["layers"][0]["entropy"]) == 4, j["ln"]' "$TMP/p.json")
report "post-LN model" "$why"
x "$TMP/g.out" "$TMP/g.err" inspect --model "$M3" --prompt "one two three four five"
why=$(why_run "$TMP/g.err")
[[ -z $why && $(grep -c '(banded)$' "$TMP/g.out") -ne 1 ]] && why="layer 1 is not marked banded: $(excerpt "$TMP/g.out")"
report "banded model" "$why"

# Bad input.
expect_error "missing model" "$TMP/nope" inspect --model "$TMP/nope" --prompt "hi"
expect_error "empty prompt" "empty" inspect --model "$M" --prompt ""
expect_error "prompt longer than the context" "context of 16" inspect --model "$M" --prompt "$(printf 'a b c d e f g h i j k l m n o p q r')"
expect_error "top-k 0" "top-k" inspect --model "$M" --prompt "hi" --top-k 0
expect_error "top-k above the vocabulary" "top-k" inspect --model "$M" --prompt "hi" --top-k 50258
expect_error "top-k not a number" "top-k" inspect --model "$M" --prompt "hi" --top-k many
expect_error "both --prompt and --ids" "one of --prompt and --ids" inspect --model "$M" --prompt "hi" --ids "1"
expect_error "an id outside the vocabulary" "out of range" inspect --model "$M" --ids "1 60000"
expect_error "unwritable --svg" "$TMP/no/dir" inspect --model "$M" --prompt "hi" --svg "$TMP/no/dir/x.svg"

cli_finish
