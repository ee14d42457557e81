#!/usr/bin/env bash
# A real single-node Slurm cluster (22.05, Debian packages) for tests, on loopback only.
#   scripts/slurm.sh start   # installs slurmctld/slurmd/slurm-client/munge if missing
#                            # (apt, as root), starts munged, slurmctld and slurmd by hand
#                            # (no systemd), waits until the node is idle, prints the
#                            # environment to `eval`
#   scripts/slurm.sh env     # prints that environment again
#   scripts/slurm.sh stop    # cancels its jobs, stops the daemons it started, removes
#                            # its state
# State (slurm.conf, logs, spool, PIDs) lives in ADPS_SLURM_DIR (default target/slurm).
# Needs root: slurmd runs jobs as their submitter, and installing needs apt.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${ADPS_SLURM_DIR:-$PWD/target/slurm}
ctld_port=${ADPS_SLURM_CTLD_PORT:-6817}
slurmd_port=${ADPS_SLURM_SLURMD_PORT:-6818}
conf=$dir/slurm.conf
export SLURM_CONF=$conf

say() { echo "slurm.sh: $*" >&2; }
die() { say "$*"; exit 1; }
alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

print_env() {
  cat <<ENV
export SLURM_CONF=$conf
ENV
}

install_packages() {
  local missing=0
  for bin in slurmctld slurmd sbatch munged mungekey; do
    command -v "$bin" >/dev/null 2>&1 || [ -x "/usr/sbin/$bin" ] || missing=1
  done
  [ "$missing" = 0 ] && return 0
  command -v apt-get >/dev/null 2>&1 || die "Slurm is not installed and there is no apt-get to install it"
  local pkgs="slurmctld slurmd slurm-client munge"
  if ! apt-cache policy slurmctld 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    say "apt-get update"
    apt-get update -q >&2
  fi
  say "installing $pkgs"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $pkgs >&2
}

start_munge() {
  if munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
    return 0 # a munged already answers (ours from an earlier start, or the system's)
  fi
  install -d -o munge -g munge -m 0700 /etc/munge
  if [ ! -s /etc/munge/munge.key ]; then
    say "creating /etc/munge/munge.key"
    if command -v mungekey >/dev/null 2>&1 || [ -x /usr/sbin/mungekey ]; then
      PATH=$PATH:/usr/sbin mungekey --create --keyfile=/etc/munge/munge.key >&2
    else
      dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
  fi
  chown munge:munge /etc/munge/munge.key
  chmod 0400 /etc/munge/munge.key
  install -d -o munge -g munge -m 0755 /run/munge
  install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge
  setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged -F \
    >"$dir/munged.log" 2>&1 </dev/null &
  echo $! >"$dir/munged.pid"
  for _ in $(seq 1 50); do
    munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 && return 0
    alive "$dir/munged.pid" || break
    sleep 0.2
  done
  say "munged did not start; log:"
  tail -20 "$dir/munged.log" >&2 || true
  exit 1
}

write_conf() {
  local host cpus
  host=$(hostname -s)
  cpus=$(nproc)
  mkdir -p "$dir/state" "$dir/spool" "$dir/run"
  cat >"$conf" <<CONF
# Written by scripts/slurm.sh: one node, loopback only, no accounting.
ClusterName=adps-test
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
CommunicationParameters=NoInAddrAny,NoCtldInAddrAny
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SlurmdParameters=config_overrides
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
KillWait=5
InactiveLimit=0
MinJobAge=600
MaxArraySize=1001
NodeName=$host NodeAddr=127.0.0.1 NodeHostname=$host CPUs=$cpus RealMemory=1024 State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
  echo "$host" >"$dir/node"
}

node_idle() {
  local state
  state=$(sinfo -h -N -o '%t' 2>/dev/null | head -1) || return 1
  case "$state" in idle|mix|alloc) return 0;; *) return 1;; esac
}

case "${1:-}" in
  start)
    if alive "$dir/slurmctld.pid" && alive "$dir/slurmd.pid" && node_idle; then
      print_env; exit 0
    fi
    [ "$(id -u)" = 0 ] || die "needs root (slurmd runs jobs as their submitter; installing needs apt); running as $(id -un)"
    install_packages
    PATH=$PATH:/usr/sbin
    mkdir -p "$dir"
    start_munge
    write_conf
    slurmctld -D -i -f "$conf" >"$dir/slurmctld.out" 2>&1 </dev/null &
    echo $! >"$dir/slurmctld.pid"
    # slurmd registers with slurmctld: give it the port first.
    for _ in $(seq 1 50); do
      (exec 3<>"/dev/tcp/127.0.0.1/$ctld_port") 2>/dev/null && break
      alive "$dir/slurmctld.pid" || break
      sleep 0.2
    done
    slurmd -D -f "$conf" -N "$(cat "$dir/node")" >"$dir/slurmd.out" 2>&1 </dev/null &
    echo $! >"$dir/slurmd.pid"
    for _ in $(seq 1 150); do
      node_idle && { print_env; exit 0; }
      alive "$dir/slurmctld.pid" || break
      alive "$dir/slurmd.pid" || break
      sleep 0.2
    done
    say "the Slurm node did not become idle in 30 s; sinfo: $(sinfo -N 2>&1 | tr '\n' ' ')"
    for log in slurmctld.log slurmctld.out slurmd.log slurmd.out; do
      [ -f "$dir/$log" ] && { say "--- $log"; tail -15 "$dir/$log" >&2; }
    done
    exit 1
    ;;
  env)
    print_env
    ;;
  stop)
    PATH=$PATH:/usr/sbin
    if alive "$dir/slurmctld.pid"; then
      # Jobs' steps outlive slurmd: cancel them while the controller still answers.
      squeue -h -o %A 2>/dev/null | sort -u | xargs -r scancel --quiet 2>/dev/null || true
      for _ in $(seq 1 50); do
        [ -z "$(squeue -h -o %A 2>/dev/null)" ] && break
        sleep 0.2
      done
    fi
    for d in slurmd slurmctld munged; do
      alive "$dir/$d.pid" && kill "$(cat "$dir/$d.pid")" 2>/dev/null || true
    done
    for d in slurmd slurmctld munged; do
      for _ in $(seq 1 50); do alive "$dir/$d.pid" || break; sleep 0.1; done
      alive "$dir/$d.pid" && kill -9 "$(cat "$dir/$d.pid")" 2>/dev/null || true
    done
    rm -rf "$dir"
    ;;
  *) echo "usage: $0 start|stop|env" >&2; exit 2;;
esac
