#!/usr/bin/env bash
# The test suite (`npm test` runs it after setup.sh and oracle.sh): tap over test/**/*.test.ts,
# two files at a time. When files fail, they are run once more, alone and one after the other, to
# tell a failure of the code (fails again) from one caused by the neighbour it shared the two
# cores, the disk or /tmp with (passes alone). Both outcomes are printed, the files that passed
# only alone by name; the exit status and the final summary are those of the second run.
#
# Last line: "# { total: N, pass: P, fail: F }" (tap's own form, which .ci/run reads).
set -uo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp)
trap 'rm -f "$log" "$log.2"' EXIT

counts() { # tap's summary line → "pass fail"
  local s
  s=$(grep -E '^# \{ total:' "$1" | tail -1)
  echo "$(sed -nE 's/.*pass: ([0-9]+).*/\1/p' <<<"$s") $(sed -nE 's/.*fail: ([0-9]+).*/\1/p' <<<"$s")"
}

npx tap "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
read -r pass1 fail1 < <(counts "$log")
pass1=${pass1:-0}
fail1=${fail1:-0}
if [ "$rc" = 0 ]; then
  exit 0
fi

mapfile -t failed < <(sed -nE 's/^not ok [0-9]+ - (test\/[^ ]+\.test\.ts).*/\1/p' "$log" | sort -u)
if [ ${#failed[@]} = 0 ]; then
  echo "# tap failed (exit $rc) without a failing test file: not rerun" >&2
  exit "$rc"
fi
echo
echo "# ${#failed[@]} file(s) failed with a neighbour running; each once more, alone: ${failed[*]}"
npx tap --jobs 1 "${failed[@]}" 2>&1 | tee "$log.2"
rc2=${PIPESTATUS[0]}
read -r pass2 fail2 < <(counts "$log.2")
again=$(sed -nE 's/^not ok [0-9]+ - (test\/[^ ]+\.test\.ts).*/\1/p' "$log.2" | sort -u | tr '\n' ' ')
for f in "${failed[@]}"; do
  case " $again " in
    *" $f "*) echo "# FAILED again alone: $f" ;;
    *) echo "# FLAKY: $f failed beside another file, passed alone" ;;
  esac
done
# Passes of the first run (the failed files' asserts that did pass included) and the failures
# that remained alone.
echo "# { total: $((pass1 + ${fail2:-0})), pass: $pass1, fail: ${fail2:-0} }"
exit "$rc2"
