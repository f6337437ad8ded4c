#!/usr/bin/env bash
# Compares two results of one bench (target/bench/NAME.json, e.g. saved from two commits):
# every named number of both side by side (PIDs left out), with B / A. Needs jq.
# Usage: scripts/bench-compare.sh A.json B.json
set -euo pipefail
if [[ $# -ne 2 ]]; then
    echo "usage: $0 A.json B.json" >&2
    exit 2
fi
command -v jq >/dev/null || { echo "$0: needs jq" >&2; exit 2; }

# Every number that is an object's field (lists of samples left out), keyed by its path; a
# list element that is an object is named by its strategy / fpmctl command (and socket).
flatten='
  def name($v; $k):
    if ($k | type) == "number" and ($v | type) == "object"
    then (($v.strategy // $v.fpmctl // ($k | tostring)) + (if $v.socket then " / " + $v.socket else "" end))
    else ($k | tostring) end;
  . as $doc
  | [paths(type == "number") as $p
     | select(($p[-1] | type) == "string")
     | {key: ([range(0; $p | length) as $i | name($doc | getpath($p[0:$i + 1]); $p[$i])] | join(".")),
        value: ($doc | getpath($p))}]
  | from_entries'

a_bench=$(jq -r .bench "$1")
b_bench=$(jq -r .bench "$2")
if [[ "$a_bench" != "$b_bench" ]]; then
    echo "$0: $1 is the $a_bench bench, $2 the $b_bench bench: compare one bench's results" >&2
    exit 2
fi
for f in "$1" "$2"; do
    jq -r '"\(input_filename): \(.bench) at \(.meta.git_revision) (\(.meta.date)), \(.meta.machine.nproc) cores, load \(.meta.machine.load_average | split(" ")[0:3] | join(" ")), \(.meta.machine.processes) processes"' "$f"
done
echo
{
    printf 'field\tA\tB\tB/A\n'
    jq -r -n --argjson a "$(jq "$flatten" "$1")" --argjson b "$(jq "$flatten" "$2")" '
      ($a | keys_unsorted) + ($b | keys_unsorted | map(select(. as $k | $a | has($k) | not)))
      | .[]
      | select((startswith("meta.") or test("master")) | not)
      | [., ($a[.] // "-"), ($b[.] // "-"),
         (if ($a[.] | type) == "number" and ($b[.] | type) == "number" and $a[.] != 0
          then ($b[.] / $a[.] * 100 | round / 100) else "-" end)]
      | @tsv'
} | column -t -s $'\t'
