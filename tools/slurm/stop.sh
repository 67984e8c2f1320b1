#!/usr/bin/env bash
# Stop the single-node SLURM cluster that tools/slurm/start.sh started, by the PIDs recorded in its
# state folder (SCALEWORLD_SLURM_DIR, default /var/lib/scaleworld-slurm). Idempotent: a daemon that
# is not running is reported and skipped. Uninstalls nothing and keeps all state (accounting
# database, slurmctld's saved jobs), so a later start.sh picks up where this left off.
#
#   bash tools/slurm/stop.sh                 # all daemons, in reverse start order
#   bash tools/slurm/stop.sh slurmd slurmctld  # only these
#
# Jobs already running on the node are not cancelled: their slurmstepd processes outlive slurmd,
# as on any SLURM node, and a restarted slurmd reattaches to them. Cancel them first with scancel
# if you want the machine quiet.
#
# start.sh sources this file for the PID table and the helpers below, so the two never disagree
# about where a daemon's PID lives.
set -euo pipefail

SLURM_STATE="${SCALEWORLD_SLURM_DIR:-/var/lib/scaleworld-slurm}"
# Start order; stopping goes the other way so no daemon loses a dependency while still running.
SLURM_DAEMONS=(munged mariadb slurmdbd slurmctld slurmd)

# Where each daemon writes its PID. Every daemon writes its own file (we pass the path in its
# config or on its command line), in a folder its service user may write to.
slurm_pidfile() {
  case "$1" in
    munged) echo "$SLURM_STATE/munge/munged.pid" ;;
    mariadb) echo "$SLURM_STATE/mysqld/mariadb.pid" ;;
    slurmdbd | slurmctld | slurmd) echo "$SLURM_STATE/run/$1.pid" ;;
    *) echo "unknown daemon: $1 (known: ${SLURM_DAEMONS[*]})" >&2; return 2 ;;
  esac
}

# The process name (/proc/PID/comm) a live daemon has; checked so that a stale PID file whose
# number the kernel has since handed to another process never gets that process killed.
slurm_comm() {
  case "$1" in
    mariadb) echo mariadbd ;;
    *) echo "$1" ;;
  esac
}

# Print the PID of a running daemon and succeed, or fail quietly when it is not running.
slurm_running_pid() {
  local pidfile pid
  pidfile="$(slurm_pidfile "$1")" || return 2
  [[ -s "$pidfile" ]] || return 1
  pid="$(tr -dc '0-9' <"$pidfile")"
  [[ -n "$pid" && -r "/proc/$pid/comm" ]] || return 1
  [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$(slurm_comm "$1")" ]] || return 1
  echo "$pid"
}

# TERM, wait for a clean exit (slurmctld saves its state, mariadbd flushes InnoDB), KILL if stuck.
slurm_stop_daemon() {
  local name="$1" pid i pidfile
  pidfile="$(slurm_pidfile "$name")" || return 2
  if ! pid="$(slurm_running_pid "$name")"; then
    echo "$name: not running"
    rm -f "$pidfile"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 300; i++)); do  # up to 30 s
    [[ -d "/proc/$pid" ]] || break
    sleep 0.1
  done
  if [[ -d "/proc/$pid" ]]; then
    echo "$name: still running 30 s after SIGTERM, sending SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.5
  fi
  rm -f "$pidfile"
  echo "$name: stopped (pid $pid)"
}

slurm_stop_main() {
  if [[ $EUID -ne 0 ]]; then
    echo "stop.sh: run as root (the daemons run as root or their service users)" >&2
    exit 1
  fi
  local names=("$@") i
  if [[ ${#names[@]} -eq 0 ]]; then
    for ((i = ${#SLURM_DAEMONS[@]} - 1; i >= 0; i--)); do names+=("${SLURM_DAEMONS[i]}"); done
  fi
  for name in "${names[@]}"; do slurm_stop_daemon "$name"; done
}

# Only act when executed, not when start.sh sources this file for its helpers.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  slurm_stop_main "$@"
fi
