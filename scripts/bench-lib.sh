# Sourced by the bench scripts: timing and summary helpers over files in $work.
#
#   now                  the time in seconds, with nanoseconds
#   median [FILE]        the median of the numbers in FILE (or standard input), one per line
#   max FILE             the largest of them
#   timed LABEL CMD...   runs CMD once (output to $work/last.log), appends its seconds to
#                        $work/t.LABEL; a failure prints the log and stops the bench, named by
#                        $bench_name

now() { date +%s.%N; }
median() { sort -g "$@" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
max() { sort -g "$1" | tail -n 1; }
timed() {
  local label=$1 start end
  shift
  start=$(now)
  if ! "$@" >"$work/last.log" 2>&1; then
    echo "${bench_name:-bench}: $label failed: $*" >&2
    cat "$work/last.log" >&2
    exit 1
  fi
  end=$(now)
  echo "$end - $start" | bc -l >>"$work/t.$label"
}
