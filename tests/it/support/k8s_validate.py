"""Validates Kubernetes manifests against the Kubernetes API's JSON schemas.

Core kinds go through kubernetes-validate (PyPI, strict: unknown fields are errors, with
the schemas it carries for the Kubernetes version given); the Prometheus Operator's
ServiceMonitor through the typed models of cloudcoil-models-prometheus-operator, where a
field the model drops on a round trip is unknown. Installed by scripts/kubernetes/setup.sh.

Usage: python k8s_validate.py KUBERNETES_VERSION FILE...
Prints one JSON object: {"documents": [every document, as parsed], "errors": [...]}.
"""

import json
import sys

import kubernetes_validate
import yaml


def strip_none(value):
    if isinstance(value, dict):
        return {k: strip_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [strip_none(v) for v in value]
    return value


def unknown_fields(given, kept, path=""):
    """Paths in `given` that the model did not keep."""
    out = []
    if isinstance(given, dict) and isinstance(kept, dict):
        for k, v in given.items():
            if k not in kept:
                out.append(f"{path}.{k}")
            else:
                out.extend(unknown_fields(v, kept[k], f"{path}.{k}"))
    elif isinstance(given, list) and isinstance(kept, list):
        for i, (g, k) in enumerate(zip(given, kept)):
            out.extend(unknown_fields(g, k, f"{path}[{i}]"))
    return out


def check_service_monitor(doc):
    from cloudcoil.models.prometheus_operator.v1 import ServiceMonitor

    model = ServiceMonitor.model_validate(doc)
    kept = strip_none(model.model_dump(by_alias=True, mode="json"))
    unknown = unknown_fields(doc, kept)
    if unknown:
        raise ValueError("unknown fields: " + ", ".join(unknown))


def main():
    version, files = sys.argv[1], sys.argv[2:]
    documents, errors = [], []
    for name in files:
        with open(name, encoding="utf-8") as f:
            for doc in yaml.safe_load_all(f):
                if doc is None:
                    continue
                documents.append(doc)
                what = f"{name}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
                try:
                    if doc.get("apiVersion", "").startswith("monitoring.coreos.com/"):
                        check_service_monitor(doc)
                    elif doc.get("apiVersion", "").startswith("kustomize.config.k8s.io/"):
                        continue
                    else:
                        kubernetes_validate.validate(doc, version, strict=True)
                except Exception as e:  # every failure is reported, none stops the rest
                    errors.append(f"{what}: {type(e).__name__}: {e}")
    print(json.dumps({"documents": documents, "errors": errors}))


if __name__ == "__main__":
    main()
