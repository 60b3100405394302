#!/usr/bin/env bash
# Start a real single-host Slurm (munge + slurmctld + slurmd) on this machine, configured
# on loopback, for the tests (recipe: shared/recipes/slurm-single-host.md). Idempotent:
# does nothing when `sinfo` already shows an idle node. Needs root and Debian's slurm-wlm
# and munge packages (tests/services/install.sh). Exit status 3: Slurm is not installable
# or not startable here (the tests then say so loudly).
set -uo pipefail
have() { command -v "$1" >/dev/null 2>&1; }
if ! have slurmctld || ! have slurmd || ! have munged; then
  echo "slurm-up: slurmctld/slurmd/munged not installed (apt-get install slurm-wlm munge)" >&2
  exit 3
fi
if [ "$(id -u)" != 0 ]; then
  echo "slurm-up: must run as root to start the Slurm daemons" >&2
  exit 3
fi
# Test binaries call this from parallel threads: one caller at a time, or two would race to
# start munged (the loser fails on munge's socket lock) or slurmctld. The daemons must not
# inherit the lock (fd 9), or they would hold it for ever.
exec 9>"${TMPDIR:-/tmp}/wormflow-slurm-up.lock"
flock -w 120 9 || { echo "slurm-up: another slurm-up.sh held its lock for 120 s" >&2; exit 3; }
if sinfo -h -o '%T' 2>/dev/null | grep -qE 'idle|mixed|allocated'; then
  exit 0
fi
host=$(hostname)
cpus=$(nproc)
mem=$(( $(free -m | awk '/^Mem:/ {print $2}') * 8 / 10 ))
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge
chown munge:munge /run/munge 2>/dev/null || true
if [ ! -f /etc/munge/munge.key ]; then
  mungekey -c && chown munge:munge /etc/munge/munge.key
fi
if ! pgrep -x munged >/dev/null; then
  # A munged started by someone else in the meantime is as good as ours.
  su -s /bin/sh munge -c munged 9>&- || pgrep -x munged >/dev/null || { echo "slurm-up: munged did not start" >&2; exit 3; }
fi
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=wormflow-test
SlurmctldHost=$host
AuthType=auth/munge
SlurmUser=root
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MinJobAge=60
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
JobCompType=jobcomp/filetxt
JobCompLoc=/var/log/slurm/jobcomp.txt
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
pgrep -x slurmctld >/dev/null || slurmctld 9>&- || { echo "slurm-up: slurmctld did not start (see /var/log/slurm/slurmctld.log)" >&2; exit 3; }
pgrep -x slurmd >/dev/null || slurmd 9>&- || { echo "slurm-up: slurmd did not start (see /var/log/slurm/slurmd.log)" >&2; exit 3; }
for _ in $(seq 1 60); do
  if sinfo -h -o '%T' 2>/dev/null | grep -qE 'idle|mixed|allocated'; then
    exit 0
  fi
  sleep 0.5
done
echo "slurm-up: the node did not become idle in 30 s: $(sinfo 2>&1)" >&2
exit 3
