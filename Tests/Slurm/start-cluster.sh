#!/usr/bin/env bash
# Starts a one-node Slurm cluster on localhost for the scale-out tests: munged, slurmctld and slurmd with a
# config written here (2 CPUs, partition `debug`, no cgroups, no accounting), all state under $HPRUNE_SLURM_DIR.
# Prints `export SLURM_CONF=…` on stdout on success; on failure prints a line starting `SKIP:` on stderr, exit 3.
#
#   eval "$(bash Tests/Slurm/start-cluster.sh)"      # then sbatch/squeue/srun use this cluster
#   bash Tests/Slurm/stop-cluster.sh                  # stops the daemons it started
set -uo pipefail

dir=${HPRUNE_SLURM_DIR:-/tmp/hprune-slurm}
skip() { echo "SKIP: local Slurm cluster unavailable: $*" >&2; exit 3; }

for tool in munged slurmctld slurmd sinfo sbatch; do
  command -v "$tool" >/dev/null || skip "'$tool' is not installed (apt-get install slurm-wlm munge)"
done

# Already running (a previous call in this CI job)? Reuse it.
if [ -f "$dir/slurm.conf" ] && SLURM_CONF="$dir/slurm.conf" timeout 5 sinfo -h -o %T 2>/dev/null | grep -q idle; then
  echo "export SLURM_CONF=$dir/slurm.conf"
  exit 0
fi

start=$(date +%s%N)
mkdir -p "$dir"/{state,spool,log,munge}
chmod 700 "$dir/munge"
host=$(hostname -s)

# munge: a fresh key of our own and a private socket, so a system munged (if any) is left alone.
if [ ! -f "$dir/munge/munge.key" ]; then
  dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
  chmod 400 "$dir/munge/munge.key"
fi
munged --force --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.socket" \
  --pid-file="$dir/munge/munged.pid" --log-file="$dir/log/munged.log" --seed-file="$dir/munge/seed" \
  || skip "munged did not start (see $dir/log/munged.log)"

user=$(id -un)
cat > "$dir/slurm.conf" <<EOF
# Written by Tests/Slurm/start-cluster.sh: one node, 2 CPUs, no cgroups, no accounting database.
ClusterName=hprune-ci
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=16817
SlurmdPort=16818
SlurmUser=$user
SlurmdUser=$user
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool/%n
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
MinJobAge=600
SchedulerType=sched/backfill
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
NodeName=localhost NodeHostname=$host NodeAddr=127.0.0.1 CPUs=2 RealMemory=8000 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF="$dir/slurm.conf"

slurmctld -f "$SLURM_CONF" || skip "slurmctld did not start (see $dir/log/slurmctld.log)"
slurmd -f "$SLURM_CONF" -N localhost || skip "slurmd did not start (see $dir/log/slurmd.log)"

for _ in $(seq 1 60); do
  state=$(timeout 5 sinfo -h -n localhost -o %T 2>/dev/null)
  if [ "$state" = idle ]; then
    ms=$(( ($(date +%s%N) - start) / 1000000 ))
    echo "local Slurm cluster up in ${ms} ms (SLURM_CONF=$SLURM_CONF)" >&2
    echo "export SLURM_CONF=$SLURM_CONF"
    exit 0
  fi
  sleep 0.5
done
skip "node did not become idle within 30s (state '${state:-none}'; logs in $dir/log)"
