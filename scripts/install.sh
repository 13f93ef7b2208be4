#!/bin/sh
# Installs the devstreams agent on a board without dpkg (what the .deb does, by hand):
#   /usr/bin/devstreams                                      the single executable
#   /etc/systemd/system/devstreams-agent.service             the unit (+ .d/unconfigured.conf: no start
#                                                            while the config is still the example)
#   /etc/devstreams/agent.yaml                               the commented example (0600), if none is there
#   the system user `devstreams`, owning the config; the unit enabled, not started.
#
# usage: scripts/install.sh [EXECUTABLE]
#   EXECUTABLE defaults to dist/bin/devstreams-linux-ARCH for this machine (arm64 or x64).
#   DESTDIR=/path/to/root installs into that root (an image being built, or a test) and then
#   touches nothing outside it: the user goes into DESTDIR/etc/passwd (useradd --prefix), the unit is
#   enabled with `systemctl --root`, and no running systemd is asked to do anything.
set -eu

here=$(cd "$(dirname "$0")/.." && pwd)
D=${DESTDIR:-}

fail() { echo "install.sh: $*" >&2; exit 1; }

exe=${1:-}
if [ -z "$exe" ]; then
  case $(uname -m) in
    aarch64|arm64) arch=arm64 ;;
    x86_64|amd64) arch=x64 ;;
    *) fail "no executable for $(uname -m); pass one: scripts/install.sh EXECUTABLE" ;;
  esac
  exe=$here/dist/bin/devstreams-linux-$arch
fi
[ -f "$exe" ] || fail "$exe not found (npm run build:binary, or download it)"
if [ -n "$D" ]; then
  [ -d "$D" ] || fail "DESTDIR $D is not a folder"
  [ -f "$D/etc/passwd" ] || fail "DESTDIR $D has no etc/passwd (not a root file system)"
elif [ "$(id -u)" != 0 ]; then
  fail "run as root (or set DESTDIR)"
fi

# The executable and the unit (copied as they are; the drop-in holds this installer's addition).
install -D -m 0755 "$exe" "$D/usr/bin/devstreams"
install -D -m 0644 "$here/systemd/devstreams-agent.service" "$D/etc/systemd/system/devstreams-agent.service"
install -D -m 0644 "$here/packaging/systemd/unconfigured.conf" \
  "$D/etc/systemd/system/devstreams-agent.service.d/unconfigured.conf"

# The system user.
if [ -n "$D" ]; then
  exists=$(grep -c '^devstreams:' "$D/etc/passwd" || true)
else
  exists=$(getent passwd devstreams >/dev/null && echo 1 || echo 0)
fi
if [ "$exists" = 0 ]; then
  shell=/usr/sbin/nologin
  [ -x "$D$shell" ] || shell=/sbin/nologin
  [ -x "$D$shell" ] || shell=/bin/false
  if command -v useradd >/dev/null; then
    if [ -n "$D" ]; then
      useradd --prefix "$D" --system --user-group --no-create-home --home-dir /var/lib/devstreams \
        --shell "$shell" --comment "devstreams agent" devstreams
    else
      useradd --system --user-group --no-create-home --home-dir /var/lib/devstreams \
        --shell "$shell" --comment "devstreams agent" devstreams
    fi
  elif [ -z "$D" ] && command -v adduser >/dev/null; then   # BusyBox
    addgroup -S devstreams
    adduser -S -D -H -h /var/lib/devstreams -s "$shell" -G devstreams devstreams
  else
    fail "cannot create the user devstreams (no useradd)"
  fi
fi
ids=$(awk -F: '$1 == "devstreams" { print $3 ":" $4 }' "$D/etc/passwd")
[ -n "$ids" ] || fail "user devstreams not found in $D/etc/passwd"

# The config: the example only where there is none; never overwrite a configured device.
install -d -m 0755 "$D/etc/devstreams"
if [ ! -e "$D/etc/devstreams/agent.yaml" ]; then
  install -m 0600 "$here/packaging/agent.yaml" "$D/etc/devstreams/agent.yaml"
  chown "$ids" "$D/etc/devstreams/agent.yaml"
  echo "installed the example /etc/devstreams/agent.yaml: fill it in, then remove its first line"
fi

# Enabled, not started: it starts at the next boot, or with `systemctl start`, once configured.
command -v systemctl >/dev/null || fail "no systemctl: run '/usr/bin/devstreams agent --config /etc/devstreams/agent.yaml' as devstreams from your init system"
if [ -n "$D" ]; then
  systemctl --root="$D" enable devstreams-agent.service
else
  if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
  systemctl enable devstreams-agent.service
fi
echo "devstreams $("$D/usr/bin/devstreams" --version 2>/dev/null | sed 's/^devstreams //' || echo '(built for another architecture)') installed${D:+ into $D}"
