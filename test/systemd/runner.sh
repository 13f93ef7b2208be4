#!/bin/bash
# Runs inside the container, under Debian's systemd as PID 1, as a oneshot unit started at boot
# (test/systemd/nspawn.test.ts writes the unit). It installs the hub and the agent the way the README
# says, drives the real units with systemctl, and writes one `check=value` line per finding to
# /results/checks.txt (the test asserts them), the journal to /results/journal.txt, then powers off.
set -u
R=/results/checks.txt
: >"$R"
check() { echo "$1=$2" >>"$R"; }
T0=$(date +%s%3N)
mark() { check "ms_$1" "$(($(date +%s%3N) - T0))"; }
show() { systemctl show -p "$2" --value "$1"; }
# Bounded polling: systemctl has no "wait until" for these states.
wait_for() { # DESCRIPTION TRIES(0.1 s each) COMMAND...
  local what=$1 tries=$2
  shift 2
  for _ in $(seq "$tries"); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  check "timeout" "$what"
  return 1
}
finish() {
  journalctl --no-pager -o short-monotonic >/results/journal.txt 2>&1
  check done 1
  systemctl --no-block poweroff
  exit 0
}
trap finish EXIT

# --- install, as the README's "Run it under systemd" does -------------------------------------
grep -q localhost /etc/hosts 2>/dev/null || echo '127.0.0.1 localhost' >>/etc/hosts
useradd --system --no-create-home --shell /usr/sbin/nologin devstreams
install -d -o devstreams -g devstreams -m 0700 /var/lib/devstreams-hub
runuser -u devstreams -- devstreams hub init --dir /var/lib/devstreams-hub --listen 127.0.0.1:443 >/dev/null
runuser -u devstreams -- devstreams hub add-device dev1 --config /var/lib/devstreams-hub/hub.yaml --allow echo >/dev/null
install -d -m 0755 /etc/devstreams
install -o devstreams -g devstreams -m 0600 /var/lib/devstreams-hub/devices/dev1.yaml /etc/devstreams/agent.yaml
install -o devstreams -g devstreams -m 0600 /var/lib/devstreams-hub/devices/dev1.key /etc/devstreams/dev1.key
install -m 0644 /var/lib/devstreams-hub/devices/ca.pem /etc/devstreams/ca.pem
export DEVSTREAMS_HUB=https://localhost:443
DEVSTREAMS_TOKEN=$(cat /var/lib/devstreams-hub/service.token)
export DEVSTREAMS_TOKEN
export DEVSTREAMS_CA=/var/lib/devstreams-hub/tls/ca.crt
# A world-writable folder on the root file system: only ProtectSystem=strict keeps the agent out.
install -d -m 1777 /srv/open
echo x >/root/marker

mark installed
# --- the hub's unit: listens on 443 as devstreams with CAP_NET_BIND_SERVICE only -------------
systemctl start devstreams-hub
check hub_start_rc $?
check hub_active "$(show devstreams-hub ActiveState)"
check hub_status "$(show devstreams-hub StatusText)"
HUBPID=$(show devstreams-hub MainPID)
check hub_capeff "$(awk '/^CapEff/ {print $2}' /proc/"$HUBPID"/status)"

mark hub_started
# --- the agent's unit: start returns only after READY=1 ---------------------------------------
systemctl start devstreams-agent
check agent_start_rc $?
# Type=notify: by now the agent has logged "agent started" (it sends READY=1 right after).
check agent_active_at_return "$(show devstreams-agent ActiveState)/$(show devstreams-agent SubState)"
check agent_started_logged_at_return "$(journalctl -u devstreams-agent -o cat --no-pager | grep -c '"msg":"agent started"')"
check agent_status_at_return "$(show devstreams-agent StatusText)"
wait_for "agent connected" 200 sh -c "systemctl show -p StatusText --value devstreams-agent | grep -q 'control channel connected'"
check agent_status "$(show devstreams-agent StatusText)"
devstreams echo dev1 >/results/echo1.txt 2>&1
check echo1_rc $?
wait_for "hub status with the device" 50 sh -c "systemctl show -p StatusText --value devstreams-hub | grep -q '^1 device online'"
check hub_status_with_device "$(show devstreams-hub StatusText)"
# --- reload: a bad file fails `systemctl reload` (ExecReload checks it first) and changes nothing
PID0=$(show devstreams-agent MainPID)
cp /etc/devstreams/agent.yaml /root/agent.yaml.good
sed -i '/builtin: echo/a\  - { name: bad, port: 70000 }' /etc/devstreams/agent.yaml
systemctl reload devstreams-agent 2>/results/reload-bad.txt
check reload_bad_rc $?
check reload_bad_says "$(grep -c 'allow.1.port' /results/reload-bad.txt) $(journalctl -u devstreams-agent -o cat --no-pager | grep -c 'allow.1.port')"
check reload_bad_hup_logged "$(journalctl -u devstreams-agent -o cat --no-pager | grep -c 'config reload refused')"
install -o devstreams -g devstreams -m 0600 /root/agent.yaml.good /etc/devstreams/agent.yaml
systemctl reload devstreams-agent
check reload_good_rc $?
check reload_journal "$(journalctl -u devstreams-agent -o cat --no-pager | grep -v '^{' | tail -4 | tr '\n' '|')"
wait_for "reloaded" 50 sh -c "journalctl -u devstreams-agent -o cat --no-pager | grep -q 'config reloaded'"
check reload_same_pid "$([ "$(show devstreams-agent MainPID)" = "$PID0" ] && echo yes || echo no)"

mark agent_served
# --- the sandbox, seen from the running agent ------------------------------------------------
PID=$(show devstreams-agent MainPID)
check agent_uid "$(awk '/^Uid/ {print $2}' /proc/"$PID"/status)"
check devstreams_uid "$(id -u devstreams)"
check agent_capeff "$(awk '/^CapEff/ {print $2}' /proc/"$PID"/status)"
check agent_capbnd "$(awk '/^CapBnd/ {print $2}' /proc/"$PID"/status)"
check agent_nonewprivs "$(awk '/^NoNewPrivs/ {print $2}' /proc/"$PID"/status)"
check agent_seccomp "$(awk '/^Seccomp:/ {print $2}' /proc/"$PID"/status)"
for p in ProtectSystem ProtectHome PrivateTmp PrivateDevices RestrictAddressFamilies NotifyAccess WatchdogUSec; do
  check "prop_$p" "$(show devstreams-agent "$p")"
done
# Writes attempted in the agent's own mount namespace, as its uid and gid (nsenter):
as_agent() { nsenter -t "$PID" -m -S "$(id -u devstreams)" -G "$(id -g devstreams)" -- "$@"; }
try_write() { if as_agent sh -c "echo x >'$1'" 2>/dev/null; then echo written; else echo refused; fi; }
check write_state_dir "$(try_write /var/lib/devstreams/probe)"
check write_srv_open "$(try_write /srv/open/probe)"
check write_srv_open_outside "$(runuser -u devstreams -- sh -c 'echo x >/srv/open/probe-outside' 2>/dev/null && echo written || echo refused)"
check write_etc "$(try_write /etc/devstreams/probe)"
check write_usr "$(try_write /usr/local/probe)"
# As root in the same namespace: refused too, so it is the read-only mount, not file permissions.
check write_etc_as_root "$(nsenter -t "$PID" -m -- sh -c 'echo x >/etc/probe' 2>/dev/null && echo written || echo refused)"
check write_tmp "$(try_write /tmp/probe)"
check tmp_is_private "$([ -e /tmp/probe ] && echo no || echo yes)"
check home_hidden "$(nsenter -t "$PID" -m -- sh -c '[ -e /root/marker ]' && echo no || echo yes)"
check dev_private "$(as_agent sh -c '[ -e /dev/console ] || [ -e /dev/tty1 ] || echo yes')"
# Idle 10 s after its stream, the agent collects and trims glibc's heap with the native helper it
# writes to its (private) /tmp and loads: under this unit's sandbox and system call filter.
agent_log() { journalctl -u devstreams-agent -o cat --no-pager; }
wait_for "agent idle trim" 300 sh -c "journalctl -u devstreams-agent -o cat --no-pager | grep -q '\"msg\":\"idle: memory given back\"'"
check idle_trimmed "$(agent_log | grep '"msg":"idle: memory given back"' | grep -c '"trimmed":true')"
check idle_trim_unavailable "$(agent_log | grep -c 'native helper unavailable')"

mark sandbox_checked
# --- the watchdog: a stopped agent is killed and restarted, and serves again -----------------
check nrestarts_before "$(show devstreams-agent NRestarts)"
kill -STOP "$PID"
wait_for "watchdog restart" 300 sh -c "[ \"\$(systemctl show -p NRestarts --value devstreams-agent)\" -gt 0 ]"
check nrestarts_after "$(show devstreams-agent NRestarts)"
check watchdog_logged "$(journalctl -u devstreams-agent -o cat --no-pager | grep -c 'Watchdog timeout')"
check watchdog_result_logged "$(journalctl -u devstreams-agent -o cat --no-pager | grep -c "Failed with result 'watchdog'")"
wait_for "agent active again" 200 sh -c '[ "$(systemctl show -p ActiveState --value devstreams-agent)" = active ]'
check agent_new_pid "$([ "$(show devstreams-agent MainPID)" != "$PID" ] && echo yes || echo no)"
wait_for "agent connected again" 200 sh -c "systemctl show -p StatusText --value devstreams-agent | grep -q 'control channel connected'"
devstreams echo dev1 >/results/echo2.txt 2>&1
check echo2_rc $?

mark restarted_served
# --- STOPPING=1 and a clean stop ---------------------------------------------------------------
systemctl stop devstreams-agent
check agent_stop_rc $?
check agent_stop_result "$(show devstreams-agent Result)"
check agent_exit_status "$(show devstreams-agent ExecMainStatus)"
check agent_stopping_logged "$(journalctl -u devstreams-agent -o cat --no-pager | grep -c '"msg":"agent stopping"')"
# --- the packaged drop-in: an agent.yaml that is still the shipped example is skipped, saying why
{ echo '# devstreams: unconfigured example.'; cat /etc/devstreams/agent.yaml; } >/root/agent.yaml.example
install -o devstreams -g devstreams -m 0600 /root/agent.yaml.example /etc/devstreams/agent.yaml
systemctl start devstreams-agent
check unconfigured_start_rc $?
check unconfigured_state "$(show devstreams-agent ActiveState)"
check unconfigured_logged "$(journalctl -u devstreams-agent -o cat --no-pager | grep -c 'agent.yaml is still the shipped example')"
systemctl stop devstreams-hub
check hub_stop_result "$(show devstreams-hub Result)"
check hub_nrestarts "$(show devstreams-hub NRestarts)"
mark stopped
