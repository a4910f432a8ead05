#!/usr/bin/env bash
# The claims study's second edition again, in this checkout (a fresh clone beside ../shared, so the
# profiles' data root resolves): `make study2-repeat`.
#
# Every registered part runs at the commit the committed parts ran (the study's code, read from
# their files), with today's driver (study.v2 queue: teacher first, seed by seed, resumes after a
# kill); then the verdicts are rendered with this tree's code. The committed parts and run records
# are taken out of the working tree first, so the queue runs them all (git keeps them:
# `git checkout -- reports/study/v2` restores them); afterwards `git diff reports/study/v2` shows
# what the repeat measured differently. Killed, run it again: it goes on where it stopped.
#
#   study/repeat_v2.sh             prepare (once) and run every part, then the verdicts
#   study/repeat_v2.sh --prepare   prepare only: the workspaces at the study's commit, parts cleared
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
V2=reports/study/v2
MARK=.study2/repeat.commit  # written once prepared: a re-run after a kill keeps the repeat's parts

fail() { echo "study2-repeat: $*" >&2; exit 2; }

prepare() {
    # a changed or untracked file there (a part that just finished) would be lost: refuse
    [ -z "$(git status --porcelain -- "$V2")" ] || fail "$V2 has uncommitted changes: commit or restore them first"
    local code
    code=$("$PY" -c 'from study.v2 import parts_commit; print(parts_commit() or "")')
    [ -n "$code" ] || fail "no committed part in $V2/parts names the study's commit"
    for ws in cq burn teacher; do  # the driver reuses a workspace it finds (study/workspace.py)
        if [ -e ".study2/$ws" ]; then
            [ "$(git -C ".study2/$ws" rev-parse HEAD)" = "$code" ] || fail ".study2/$ws is not at the study's commit ${code:0:9}"
        else
            git worktree add -q --detach ".study2/$ws" "$code"
        fi
    done
    rm -f "$V2"/parts/*.json
    rm -rf "$V2"/runs/*
    echo "$code" > "$MARK"
    echo "study2-repeat: prepared at ${code:0:9}; the committed parts are out of the working tree"
}

[ -f "$MARK" ] || prepare
[ "${1:-}" = "--prepare" ] && exit 0
"$PY" -m study.v2 queue
"$PY" -m reports.study_v2
echo "study2-repeat: done; git diff $V2 compares the repeat with the committed study"
