#!/usr/bin/env bash
# Make sure the system programs the test-suite's real services need are present.
#
# For each (command-to-probe, debian-package) pair below: if the command cannot
# be found, and we are root with apt-get available, install the package.
# Otherwise print a one-line note and carry on (tests then skip, or fail when
# CITYSHARE_REQUIRE_SERVICES=1). Idempotent; silent when nothing is missing.
set -euo pipefail

# "command debian-package" pairs. Add more services here, e.g.:
#   "mosquitto mosquitto"
#   "chromium chromium"
REQUIRED=(
    "initdb postgresql"
    "mosquitto mosquitto"
    "curl curl"                 # the README walkthroughs (tests/e2e/test_readme.py)
)

# Besides PATH, programs may live in these (glob) directories.
EXTRA_DIRS=(
    /usr/lib/postgresql/*/bin
    /usr/sbin
    /sbin
)

have_command() {
    local cmd=$1 dir
    if command -v "$cmd" >/dev/null 2>&1; then
        return 0
    fi
    for dir in "${EXTRA_DIRS[@]}"; do
        # Unmatched globs stay literal; the -x test then simply fails.
        if [[ -x "$dir/$cmd" && ! -d "$dir/$cmd" ]]; then
            return 0
        fi
    done
    return 1
}

missing_cmds=()
missing_pkgs=()
for pair in "${REQUIRED[@]}"; do
    read -r cmd pkg <<<"$pair"
    if ! have_command "$cmd"; then
        missing_cmds+=("$cmd")
        missing_pkgs+=("$pkg")
    fi
done

if ((${#missing_pkgs[@]} == 0)); then
    exit 0
fi

if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-services: missing ${missing_cmds[*]} (Debian packages: ${missing_pkgs[*]}); not root or no apt-get, so not installing - dependent tests will skip." >&2
    exit 0
fi

echo "ensure-services: installing ${missing_pkgs[*]} (for ${missing_cmds[*]})" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing_pkgs[@]}"
