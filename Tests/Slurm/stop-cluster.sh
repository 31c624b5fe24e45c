#!/usr/bin/env bash
# Stops the daemons Tests/Slurm/start-cluster.sh started (by the pid files it wrote), leaving the state dir.
dir=${HPRUNE_SLURM_DIR:-/tmp/hprune-slurm}
for f in slurmd.pid slurmctld.pid munge/munged.pid; do
  [ -f "$dir/$f" ] && kill "$(cat "$dir/$f")" 2>/dev/null
done
exit 0
