# Sourced by the setup scripts that install Python test tools: `make_venv DIR SPEC...`
# creates a virtualenv in DIR (Debian 12's python refuses system-wide pip installs),
# installing python3-venv first where it is missing, and pip-installs the pinned SPECs.
make_venv() {
    local venv="$1"
    shift
    if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv python3-pip
    fi
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet "$@"
}
