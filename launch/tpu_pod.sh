#!/usr/bin/env bash
# Trains on a Cloud TPU pod slice: creates the TPU VM (if needed), copies and installs this checkout on
# every worker, runs jvssl.main on all workers at once (jax.distributed finds the slice by itself), and
# after a preemption recreates the slice and resumes from the latest checkpoint.
#
#   launch/tpu_pod.sh [--dry-run] --name=NAME --zone=ZONE --type=v5p-32 [--version=VERSION] [--spot]
#       [--project=P] [--max-restarts=N] -- --config=configs/videomae_k400.py:vit_b --workdir=/mnt/shared/vmae
#
# Everything after `--` goes to jvssl.main. The workdir must be shared by all workers (a Filestore or
# gcsfuse mount), so that checkpoints survive the VMs. --dry-run prints the gcloud commands instead.
set -euo pipefail

dry_run=0
name=""
zone=""
type=""
version="tpu-ubuntu2204-base"
project=""
spot=0
max_restarts=20
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dry-run) dry_run=1 ;;
    --name=*) name="${1#*=}" ;;
    --zone=*) zone="${1#*=}" ;;
    --type=*) type="${1#*=}" ;;
    --version=*) version="${1#*=}" ;;
    --project=*) project="${1#*=}" ;;
    --spot) spot=1 ;;
    --max-restarts=*) max_restarts="${1#*=}" ;;
    --) shift; break ;;
    *) echo "unknown option $1 (jvssl arguments go after --)" >&2; exit 2 ;;
  esac
  shift
done
if [[ -z "$name" || -z "$zone" || -z "$type" || $# -eq 0 ]]; then
  echo "usage: $0 [--dry-run] --name=NAME --zone=ZONE --type=TYPE [--spot] -- --config=... --workdir=..." >&2
  exit 2
fi
jvssl_args=("$@")
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

run() {
  if [[ $dry_run -eq 1 ]]; then
    printf '%q ' "$@"
    printf '\n'
  else
    "$@"
  fi
}

gcloud_tpu=(gcloud compute tpus tpu-vm)
where=(--zone="$zone")
if [[ -n "$project" ]]; then
  where+=(--project="$project")
fi

state() {
  if [[ $dry_run -eq 1 ]]; then
    echo "NOT_FOUND"
  else
    "${gcloud_tpu[@]}" describe "$name" "${where[@]}" --format='value(state)' 2>/dev/null || echo "NOT_FOUND"
  fi
}

create() {
  local extra=()
  if [[ $spot -eq 1 ]]; then
    extra+=(--spot)
  fi
  run "${gcloud_tpu[@]}" create "$name" "${where[@]}" --accelerator-type="$type" --version="$version" "${extra[@]}"
}

install() {
  run tar -czf /tmp/jvssl.tar.gz -C "$repo" --exclude=.git --exclude='*.egg-info' .
  run "${gcloud_tpu[@]}" scp /tmp/jvssl.tar.gz "$name":jvssl.tar.gz "${where[@]}" --worker=all
  run "${gcloud_tpu[@]}" ssh "$name" "${where[@]}" --worker=all \
    --command="mkdir -p jvssl && tar -xzf jvssl.tar.gz -C jvssl && pip install -q 'jax[tpu]' -e ./jvssl"
}

train() {
  local quoted
  quoted="$(printf '%q ' "${jvssl_args[@]}")"
  run "${gcloud_tpu[@]}" ssh "$name" "${where[@]}" --worker=all \
    --command="cd jvssl && python3 -m jvssl.main ${quoted}"
}

case "$(state)" in
  READY) ;;
  NOT_FOUND) create ;;
  *) run "${gcloud_tpu[@]}" delete "$name" "${where[@]}" --quiet; create ;;
esac
install
attempt=0
until train; do
  attempt=$((attempt + 1))
  if [[ $attempt -gt $max_restarts ]]; then
    echo "giving up after $max_restarts restarts" >&2
    exit 1
  fi
  current="$(state)"
  echo "training stopped (TPU state: $current); restart $attempt/$max_restarts from the latest checkpoint" >&2
  if [[ "$current" != READY ]]; then  # Preempted spot VMs do not come back: make a new one.
    run "${gcloud_tpu[@]}" delete "$name" "${where[@]}" --quiet || true
    create
    install
  fi
done
