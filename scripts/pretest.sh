#!/usr/bin/env bash
# npm's pretest: the tests run supervisord, git, sshd and ssh for real, so they must be here
# before jest starts. As root, install what is missing (Debian/Ubuntu packages); otherwise stop
# at once and say exactly what to install, rather than let tests fail one by one.
set -euo pipefail

# program:package, the program the tests run and the package that brings it.
REQUIRED=(
  supervisord:supervisor
  supervisorctl:supervisor
  git:git
  /usr/sbin/sshd:openssh-server
  ssh:openssh-client
  ssh-keygen:openssh-client
  sshpass:sshpass
  bwrap:bubblewrap
  prometheus:prometheus
  promtool:prometheus
  xz:xz-utils
  curl:curl
  zstd:zstd
  zstdcat:zstd
  python3:python3
  setpriv:util-linux
  useradd:passwd
  setfacl:acl
  /usr/sbin/mosquitto:mosquitto
  mosquitto_passwd:mosquitto
  mosquitto_sub:mosquitto-clients
  mosquitto_pub:mosquitto-clients
)
APT_ATTEMPTS=3
# dpkg's lock may be held by unattended-upgrades on a fresh machine: wait for it, within reason.
LOCK_TIMEOUT_S=300
APT_STEP_TIMEOUT_S=900
RETRY_PAUSE_S=${PRETEST_RETRY_PAUSE_S:-10}

have() {
  case "$1" in
    /*) [ -x "$1" ] ;;
    *) command -v "$1" >/dev/null 2>&1 ;;
  esac
}

missing_packages() {
  local entry packages=()
  for entry in "${REQUIRED[@]}"; do
    have "${entry%%:*}" && continue
    [[ " ${packages[*]} " == *" ${entry##*:} "* ]] || packages+=("${entry##*:}")
  done
  echo "${packages[*]}"
}

apt() {
  DEBIAN_FRONTEND=noninteractive timeout "$APT_STEP_TIMEOUT_S" apt-get -q -o DPkg::Lock::Timeout="$LOCK_TIMEOUT_S" "$@"
}

install_packages() {
  local attempt
  for ((attempt = 1; attempt <= APT_ATTEMPTS; attempt++)); do
    if apt update && apt install -y --no-install-recommends "$@"; then return 0; fi
    echo "pretest: apt-get failed (attempt $attempt of $APT_ATTEMPTS)" >&2
    ((attempt < APT_ATTEMPTS)) && sleep $((RETRY_PAUSE_S * attempt))
  done
  return 1
}

missing=$(missing_packages)
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "pretest: the tests need the Debian packages: $missing" >&2
  echo "pretest: install them, then run npm test again:  sudo apt-get install -y $missing" >&2
  exit 1
fi
echo "pretest: installing $missing"
# shellcheck disable=SC2086 # one word per package
if ! install_packages $missing; then
  echo "pretest: could not install $missing with apt-get after $APT_ATTEMPTS attempts" >&2
  exit 1
fi
still=$(missing_packages)
if [ -n "$still" ]; then
  echo "pretest: installed, yet still missing the programs of: $still" >&2
  exit 1
fi
