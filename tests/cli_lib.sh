# The harness the CLI contract scripts (tests/test_cli*.sh) share. Source it after setting
# nothing; it gives:
#   cli_gpt_arg "$@"  G=PATH_TO_gpt, the script's one argument (else the usage line, exit 2)
#   cli_tmpdir NAME   a fresh $TMP (removed at exit; Ctrl-C exits 130)
#   report NAME WHY   "ok - NAME" when WHY is empty, else "not ok - NAME: WHY"; counts both
#   excerpt FILE      a one-line excerpt of a file for diagnostics
#   cli_finish        prints "N passed, M failed" and returns non-zero if any check failed
# and, for the checks (each prints why a check failed, nothing when it passed):
#   x OUT ERR ARGS...        runs "$G" ARGS (stdin empty) into OUT and ERR; sets RC
#   why_run ERR              the last x succeeded with nothing on stderr
#   why_ok RC ERR            a clean success
#   why_error RC ERR SUB     a clean failure: non-zero, not a signal, one line "gpt: error: ...SUB..."
#   why_error_re RC ERR RE   the same with an extended regular expression
#   losses METRICS           metrics.jsonl without the timing fields (which differ run to run)
export LC_ALL=C # byte semantics for ${#var}, grep and sort

PASS=0
FAIL=0

cli_gpt_arg() {
  if [[ $# -ne 1 ]]; then
    echo "usage: bash $0 PATH_TO_gpt" >&2
    exit 2
  fi
  G=$1
}

cli_tmpdir() {
  TMP=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX") || exit 1
  trap 'rm -rf "$TMP"' EXIT
  trap 'exit 130' INT TERM HUP
}

report() {
  if [[ -z $2 ]]; then
    echo "ok - $1"
    PASS=$((PASS + 1))
  else
    echo "not ok - $1: $2"
    FAIL=$((FAIL + 1))
  fi
}

excerpt() { head -c 300 "$1" | tr '\n\r\t' '   '; }

cli_finish() {
  echo "$PASS passed, $FAIL failed"
  [[ $FAIL -eq 0 ]]
}

x() {
  local out=$1 err=$2
  shift 2
  "$G" "$@" </dev/null >"$out" 2>"$err"
  RC=$?
}

why_run() {
  if [[ $RC -ne 0 ]]; then echo "exit status $RC, stderr: $(excerpt "$1")"; elif [[ -s $1 ]]; then echo "unexpected stderr: $(excerpt "$1")"; fi
}

why_ok() { [[ $1 -ne 0 ]] && echo "exit status $1, stderr: $(excerpt "$2")"; }

# cli_why_error GREP_MODE VERB RC ERR PATTERN: why_error (-F) and why_error_re (-E).
cli_why_error() {
  local mode=$1 verb=$2 rc=$3 err=$4 sub=$5
  if [[ $rc -eq 0 ]]; then echo "exit status 0, expected an error"; return; fi
  if [[ $rc -ge 128 ]]; then echo "killed by a signal ($rc): $(excerpt "$err")"; return; fi
  if [[ $(grep -c . "$err") -ne 1 ]]; then echo "expected one stderr line, got: $(excerpt "$err")"; return; fi
  if ! grep -q "^gpt: error: " "$err"; then echo "not a gpt: error line: $(excerpt "$err")"; return; fi
  if ! grep -q "$mode" -- "$sub" "$err"; then echo "error does not $verb '$sub': $(excerpt "$err")"; fi
}
why_error() { cli_why_error -F mention "$@"; }
why_error_re() { cli_why_error -E match "$@"; }

losses() { sed -E 's/"elapsed_s":[^,]*,//; s/,"tokens_per_s":[^,}]*//' "$1"; }
