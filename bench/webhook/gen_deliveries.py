#!/usr/bin/env python3
"""Writes N signed push deliveries (one per line: delivery id, signature, body) built
from GitHub's example tag push, each for its own release tag so each makes a job."""
import hashlib, hmac, json, sys

secret, count, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
examples = json.load(open(sys.argv[4]))
push = next(e for e in next(x for x in examples if x["name"] == "push")["examples"]
            if e["ref"].startswith("refs/tags/") and not e["deleted"])
with open(out, "w") as f:
    for i in range(count):
        push["ref"] = f"refs/tags/release-bench.{i}"
        body = json.dumps(push, separators=(",", ":"))
        sig = hmac.new(secret.encode(), body.encode(), hashlib.sha256).hexdigest()
        f.write(f"bench-{i}\tsha256={sig}\t{body}\n")
