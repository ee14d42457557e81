#!/usr/bin/env bash
# Trim the working tree for one call of the device machine (64 MiB travel limit), and put
# it back. The moved files go to .gpu-aside/ (git-ignored); nothing is ever committed in the
# trimmed state: git shows the moved tracked files as deleted until `restore`.
#
#   scripts/gpu/trim.sh set-aside [all|train|cuda]      move away what the calls do not need
#   scripts/gpu/trim.sh restore                         move everything back (refuses to overwrite)
#   scripts/gpu/trim.sh size [carry paths...]           bytes that would travel (tracked files present,
#                                                       untracked-not-ignored files, the carry paths)
#   scripts/gpu/trim.sh status                          what is set aside now
#
# Profiles (scripts/gpu/README.md): `all` (the default, for a whole GPU session: one trim
# before the first call, one restore after the last) sets aside the five model folders, the
# compact checkpoints, tests/fixtures, models/lpips and reports/ (the tree then travels as
# 2.0 MiB); a call that needs one of them carries it from .gpu-aside/ (e.g. carry
# .gpu-aside/models/checkpoints/compact), and the scripts look there. For a lone call:
#   train    keeps models/checkpoints/compact (train-gpu.sh resumes from it)
#   cuda     keeps models/fmnist-p0.4 (cuda-check.sh restores with it)
# Refuses to set aside while a models/train.py process is running (it appends to
# models/<name>/loss.csv, which would then be re-created here); --force overrides.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
aside=.gpu-aside
record=$aside/MOVED
limit=$((64 * 1024 * 1024))

BIG=(models/fmnist-p0.0 models/fmnist-p0.2 models/fmnist-p0.4 models/fmnist-p0.6 models/fmnist-p0.8
     models/checkpoints/compact tests/fixtures models/lpips reports)

travel_size() {  # tracked files present + untracked not ignored + carry paths, in bytes
  local t c=0
  t=$( { git ls-files -z --cached --others --exclude-standard; } \
       | xargs -0 -r stat -c '%s' -- 2>/dev/null | awk '{s+=$1} END{print s+0}')
  if (($# > 0)); then
    c=$(du -cbs -- "$@" 2>/dev/null | tail -1 | cut -f1)
  fi
  echo $((t + c))
}

mib() { awk -v b="$1" 'BEGIN{printf "%.1f MiB", b/1048576}'; }

cmd=${1:-}; shift || true
case "$cmd" in
  set-aside)
    profile=${1:-all}; shift || true
    force=${1:-}
    [[ $profile == --force ]] && { profile=all; force=--force; }
    keep=()
    case "$profile" in
      all|transfer) ;;
      train) keep=(models/checkpoints/compact) ;;
      cuda) keep=(models/fmnist-p0.4) ;;
      *) echo "usage: $0 set-aside [all|train|cuda] [--force]" >&2; exit 2 ;;
    esac
    if [[ -e $record ]]; then
      echo "trim.sh: already set aside ($(tr '\n' ' ' < "$record")); run '$0 restore' first" >&2
      exit 1
    fi
    if [[ $force != --force ]] && pgrep -f 'models/train.py|[ /]train.py ' >/dev/null 2>&1; then
      echo "trim.sh: a train.py process is running (pgrep -af train.py); it writes models/<name>/ —" \
           "stop it or pass --force" >&2
      exit 1
    fi
    if ! git check-ignore -q "$aside/MOVED"; then
      echo "trim.sh: $aside/ is not git-ignored here (.gitignore of this branch?); it would travel" >&2
      exit 1
    fi
    mkdir -p "$aside"
    : > "$record.tmp"
    for p in "${BIG[@]}"; do
      [[ " ${keep[*]} " == *" $p "* ]] && continue
      [[ -e $p ]] || continue
      mkdir -p "$aside/$(dirname "$p")"
      mv -- "$p" "$aside/$p"
      echo "$p" >> "$record.tmp"
    done
    mv "$record.tmp" "$record"
    s=$(travel_size)
    echo "trim.sh: set aside $(wc -l < "$record") paths for '$profile'; the tree now travels as $(mib "$s") (+ carry)"
    ;;
  restore)
    if [[ ! -e $record ]]; then echo "trim.sh: nothing set aside"; exit 0; fi
    bad=0
    while read -r p; do
      if [[ -e $p ]]; then
        echo "trim.sh: $p exists again (re-created while set aside?); leaving $aside/$p for you to merge" >&2
        bad=1
        continue
      fi
      mkdir -p "$(dirname "$p")"
      mv -- "$aside/$p" "$p"
    done < "$record"
    if ((bad)); then
      grep -vxFf <(while read -r p; do [[ -e $aside/$p ]] || echo "$p"; done < "$record") "$record" > "$record.tmp" || true
      mv "$record.tmp" "$record"
      exit 1
    fi
    rm -f "$record"
    find "$aside" -depth -type d -empty -delete 2>/dev/null || true
    echo "trim.sh: restored; git status: $(git status --porcelain --untracked-files=no | wc -l) modified tracked paths"
    ;;
  size)
    for p in "$@"; do  # the run tool drops a missing carry path silently: say so here
      [[ -e $p ]] || { echo "trim.sh: carry path $p does not exist (prepare it first: PLAN.md step 0)" >&2; exit 1; }
    done
    s=$(travel_size "$@")
    echo "$s bytes ($(mib "$s")) would travel; limit $(mib $limit)"
    ((s <= limit)) || { echo "trim.sh: OVER the 64 MiB limit" >&2; exit 1; }
    ;;
  status)
    if [[ -e $record ]]; then cat "$record"; else echo "nothing set aside"; fi
    ;;
  *) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
