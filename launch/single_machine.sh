#!/usr/bin/env bash
# Trains on every accelerator of this machine (one process sees all its GPUs or TPU chips), rerunning
# after a SIGTERM stop (the run saves a checkpoint and resumes from it).
#
#   launch/single_machine.sh [--dry-run] [--max-restarts=N] --config=configs/x.py:arg --workdir=DIR [--config.a.b=v ...]
#
# --dry-run prints the commands instead of running them.
set -euo pipefail

dry_run=0
max_restarts=3
args=()
for arg in "$@"; do
  case "$arg" in
    --dry-run) dry_run=1 ;;
    --max-restarts=*) max_restarts="${arg#*=}" ;;
    *) args+=("$arg") ;;
  esac
done
if [[ ${#args[@]} -eq 0 ]]; then
  echo "usage: $0 [--dry-run] [--max-restarts=N] --config=FILE[:ARG] --workdir=DIR [--config.x=v ...]" >&2
  exit 2
fi

run() {
  if [[ $dry_run -eq 1 ]]; then
    printf '%q ' "$@"
    printf '\n'
  else
    "$@"
  fi
}

python="${PYTHON:-python}"
attempt=0
# Exit status 2 is a user error (bad config or data): rerunning cannot help.
until run "$python" -m jvssl.main "${args[@]}"; do
  status=$?
  attempt=$((attempt + 1))
  if [[ $status -eq 2 || $attempt -gt $max_restarts ]]; then
    exit "$status"
  fi
  echo "jvssl stopped with status $status; resuming from the latest checkpoint (restart $attempt/$max_restarts)" >&2
done
