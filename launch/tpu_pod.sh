#!/usr/bin/env bash
# Trains on a Cloud TPU pod slice, or on several slices joined over the data-centre network: creates the TPU
# VMs (if needed), copies and installs this checkout on every worker, runs jvssl.main on all workers at once
# (jax.distributed finds them by itself), and after a preemption recreates the slices and resumes from the
# latest checkpoint.
#
#   launch/tpu_pod.sh [--dry-run] --name=NAME --zone=ZONE --type=v5p-32 [--slices=N] [--version=VERSION] [--spot]
#       [--project=P] [--max-restarts=N] -- --config=configs/videomae_k400.py:vit_b --workdir=/mnt/shared/vmae
#
# Everything after `--` goes to jvssl.main. The workdir must be shared by all workers (a bucket, a Filestore or
# gcsfuse mount), so that checkpoints survive the VMs. --dry-run prints the gcloud commands instead.
#
# --slices=N (multi-slice): N slices of --type, requested together as one queued resource NAME whose nodes are
# NAME-0 ... NAME-<N-1>. The TPU runtime gives every VM its MEGASCALE_* values (coordinator, slice id), which
# jax.distributed reads; the command also exports MEGASCALE_NUM_SLICES so that jvssl joins the other slices.
# The run gets --config.mesh.dcn_data=N (data parallel across slices, the rest of config.mesh inside each)
# unless the jvssl arguments set a --config.mesh.dcn_* split themselves.
set -euo pipefail

dry_run=0
name=""
zone=""
type=""
version="tpu-ubuntu2204-base"
project=""
spot=0
slices=1
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
    --slices=*) slices="${1#*=}" ;;
    --max-restarts=*) max_restarts="${1#*=}" ;;
    --) shift; break ;;
    *) echo "unknown option $1 (jvssl arguments go after --)" >&2; exit 2 ;;
  esac
  shift
done
if [[ -z "$name" || -z "$zone" || -z "$type" || $# -eq 0 ]]; then
  echo "usage: $0 [--dry-run] --name=NAME --zone=ZONE --type=TYPE [--slices=N] [--spot] -- --config=... --workdir=..." >&2
  exit 2
fi
if ! [[ "$slices" =~ ^[1-9][0-9]*$ ]]; then
  echo "--slices must be a positive number of TPU slices, not '$slices'" >&2
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

where=(--zone="$zone")
if [[ -n "$project" ]]; then
  where+=(--project="$project")
fi
environment=""
if [[ $slices -eq 1 ]]; then
  gcloud_tpu=(gcloud compute tpus tpu-vm)
  ready=READY
  state_format='value(state)'
  create_args=(--accelerator-type="$type" --version="$version")
  every_host=(--worker=all)
  delete_args=(--quiet)
else
  gcloud_tpu=(gcloud compute tpus queued-resources)
  ready=ACTIVE
  state_format='value(state.state)'
  create_args=(--accelerator-type="$type" --runtime-version="$version" --node-count="$slices" --node-prefix="$name")
  every_host=(--node=all --worker=all)
  delete_args=(--force --quiet)  # --force deletes the slices with the request.
  environment="MEGASCALE_NUM_SLICES=$slices "
  if ! printf '%s\n' "${jvssl_args[@]}" | grep -q -- '^--config\.mesh\.dcn_'; then
    jvssl_args+=(--config.mesh.dcn_data="$slices")
  fi
fi

state() {
  if [[ $dry_run -eq 1 ]]; then
    echo "NOT_FOUND"
  else
    "${gcloud_tpu[@]}" describe "$name" "${where[@]}" --format="$state_format" 2>/dev/null || echo "NOT_FOUND"
  fi
}

# A queued resource is granted when capacity frees up: wait for it rather than give up its place in the queue.
wait_ready() {
  local current
  while [[ $dry_run -eq 0 ]]; do
    current="$(state)"
    case "$current" in
      "$ready") return 0 ;;
      WAITING_FOR_RESOURCES | ACCEPTED | PROVISIONING | CREATING) sleep 60 ;;
      *) echo "$name is $current, not $ready" >&2; return 1 ;;
    esac
  done
}

create() {
  local extra=()
  if [[ $spot -eq 1 ]]; then
    extra+=(--spot)
  fi
  run "${gcloud_tpu[@]}" create "$name" "${where[@]}" "${create_args[@]}" "${extra[@]}"
  wait_ready
}

recreate() {
  run "${gcloud_tpu[@]}" delete "$name" "${where[@]}" "${delete_args[@]}" || true
  create
}

install() {
  run tar -czf /tmp/jvssl.tar.gz -C "$repo" --exclude=.git --exclude='*.egg-info' .
  run "${gcloud_tpu[@]}" scp /tmp/jvssl.tar.gz "$name":jvssl.tar.gz "${where[@]}" "${every_host[@]}"
  run "${gcloud_tpu[@]}" ssh "$name" "${where[@]}" "${every_host[@]}" \
    --command="mkdir -p jvssl && tar -xzf jvssl.tar.gz -C jvssl && pip install -q 'jax[tpu]' -e ./jvssl"
}

train() {
  local quoted
  quoted="$(printf '%q ' "${jvssl_args[@]}")"
  run "${gcloud_tpu[@]}" ssh "$name" "${where[@]}" "${every_host[@]}" \
    --command="cd jvssl && ${environment}python3 -m jvssl.main ${quoted}"
}

case "$(state)" in
  "$ready") ;;
  NOT_FOUND) create ;;
  WAITING_FOR_RESOURCES | ACCEPTED | PROVISIONING | CREATING) wait_ready ;;
  *) recreate ;;
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
  if [[ "$current" != "$ready" ]]; then  # Preempted spot VMs do not come back: make new ones.
    recreate
    install
  fi
done
