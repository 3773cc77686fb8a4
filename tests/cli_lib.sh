# The harness the CLI contract scripts (tests/test_cli*.sh) share. Source it after setting
# nothing; it gives:
#   cli_tmpdir NAME   a fresh $TMP (removed at exit; Ctrl-C exits 130)
#   report NAME WHY   "ok - NAME" when WHY is empty, else "not ok - NAME: WHY"; counts both
#   excerpt FILE      a one-line excerpt of a file for diagnostics
#   cli_finish        prints "N passed, M failed" and returns non-zero if any check failed
export LC_ALL=C # byte semantics for ${#var}, grep and sort

PASS=0
FAIL=0

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
