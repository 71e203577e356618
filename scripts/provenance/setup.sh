#!/usr/bin/env bash
# Installs in-toto's official attestation bindings (the in-toto-attestation package, with
# the Statement v1 and SLSA Provenance v1 protobuf definitions) into a virtualenv; the tests
# check the shape of bakery's provenance statements with them
# (tests/it/support/intoto_validate.py). Idempotent.
set -euo pipefail
venv="${BAKERY_INTOTO_VENV:-$HOME/.cache/bakery/intoto-venv}"
spec="in-toto-attestation==0.9.3"

if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import in_toto_attestation.v1.statement, in_toto_attestation.predicates.provenance.v1.provenance_pb2' >/dev/null 2>&1; then
    echo "in-toto-attestation is installed in $venv"
    exit 0
fi
. "$(dirname "${BASH_SOURCE[0]}")/../lib/venv.sh"
make_venv "$venv" "$spec"
echo "$spec installed into $venv"
