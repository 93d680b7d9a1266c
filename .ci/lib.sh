# Shared by the CI scripts: run a stage, print its one summary line, stop at the first failure.
# shellcheck shell=bash

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$ROOT/.venv/bin
# Summary lines of every stage of this run (nested scripts append to the same file).
if [ -z "${CI_SUMMARY:-}" ]; then
  CI_SUMMARY=$(mktemp)
  CI_OWNS_SUMMARY=1
  trap 'rm -f "$CI_SUMMARY" "$STAGE_NOTE"' EXIT
fi
export CI_SUMMARY
# A stage may write its own one-line result here; otherwise its last output line is used.
# Nested scripts write to their caller's file, so a stage that runs stages ends with the
# last of their results.
if [ -z "${STAGE_NOTE:-}" ]; then
  STAGE_NOTE=$(mktemp)
  export STAGE_NOTE
fi

summary() {
  [ -n "${CI_OWNS_SUMMARY:-}" ] || return 0
  printf '\n=== summary ===\n'
  cat "$CI_SUMMARY"
}

# stage NAME COMMAND...: run COMMAND with its output shown, then one line:
#   PASS|FAIL|SKIP  NAME  seconds  what it found
# A command exiting 75 (EX_TEMPFAIL) was skipped; its note says why.
stage() {
  local name=$1 log rc start=$SECONDS verdict detail line
  shift
  log=$(mktemp)
  : >"$STAGE_NOTE"
  printf '\n=== %s ===\n' "$name"
  set +e
  "$@" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  set -e
  case $rc in 0) verdict=PASS ;; 75) verdict=SKIP ;; *) verdict=FAIL ;; esac
  detail=$(cat "$STAGE_NOTE")
  [ -n "$detail" ] ||
    detail=$({ grep -v '^[[:space:]=]*$' "$log" || true; } | tail -n 1 | sed 's/^=* *//; s/ *=*$//')
  line=$(printf '%-4s  %-13s %5ss  %s' "$verdict" "$name" "$((SECONDS - start))" "$detail")
  echo "$line"
  echo "$line" >>"$CI_SUMMARY"
  rm -f "$log"
  if [ "$verdict" = FAIL ]; then
    summary
    exit "$rc"
  fi
}
