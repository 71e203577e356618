"""Checks an in-toto statement (standard input, JSON) with in-toto's official attestation
bindings (the in-toto-attestation package): the statement parses strictly as a Statement v1
(no unknown or mistyped field) and passes its validate(); its predicate parses strictly as
SLSA Provenance v1 (timestamps RFC 3339, resource descriptors well-formed) with a build type
and a builder id. Exit status 0: valid; 1: invalid, the reason on standard output."""

import json
import sys

from google.protobuf import json_format
from in_toto_attestation.v1 import statement_pb2
from in_toto_attestation.v1.resource_descriptor import ResourceDescriptor
from in_toto_attestation.v1.statement import Statement
from in_toto_attestation.predicates.provenance.v1 import provenance_pb2

PROVENANCE_V1 = "https://slsa.dev/provenance/v1"


def check(doc):
    pb = json_format.ParseDict(doc, statement_pb2.Statement(), ignore_unknown_fields=False)
    Statement.copy_from_pb(pb).validate()
    if pb.predicate_type != PROVENANCE_V1:
        raise ValueError("predicateType is %r, not %r" % (pb.predicate_type, PROVENANCE_V1))
    prov = json_format.ParseDict(
        doc["predicate"], provenance_pb2.Provenance(), ignore_unknown_fields=False
    )
    if not prov.build_definition.build_type:
        raise ValueError("buildDefinition.buildType is required")
    if not prov.run_details.builder.id:
        raise ValueError("runDetails.builder.id is required")
    for rd in list(prov.build_definition.resolved_dependencies) + list(prov.run_details.byproducts):
        ResourceDescriptor.copy_from_pb(rd).validate()


try:
    check(json.load(sys.stdin))
except Exception as e:  # every failure is a finding
    print("invalid: %s: %s" % (type(e).__name__, e))
    sys.exit(1)
print("valid")
