# bakery's container image: `bakery serve`, as a non-root user, on a small Debian runtime.
#
#   podman build -t bakery .        (or docker build / buildah bud)
#   podman run -p 8080:8080 -v ./bakery.toml:/etc/bakery/bakery.toml:ro \
#     -e BAKERY_CONFIG=/etc/bakery/bakery.toml bakery
#
# Configuration: /etc/bakery/bakery.toml (mount it; see deploy/bakery.toml.example) and
# BAKERY_* variables; secrets as mounted files named by the *_file keys. Ansible is not in
# the image: the ansible step runs ansible-playbook on the builder itself.

# ---- build ----
FROM docker.io/library/rust:1.85-slim-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential pkg-config libssl-dev mold \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin bakery \
 && strip target/release/bakery

# ---- runtime ----
FROM docker.io/library/debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 bakery \
 && useradd --system --uid 10001 --gid bakery --home-dir /var/lib/bakery --create-home bakery \
 && mkdir -p /etc/bakery
COPY --from=build /src/target/release/bakery /usr/local/bin/bakery
USER 10001:10001
WORKDIR /var/lib/bakery
ENV BAKERY_LISTEN=0.0.0.0:8080 \
    BAKERY_WORK_DIR=/var/lib/bakery/work \
    BAKERY_DATABASE_URL=sqlite:///var/lib/bakery/bakery.db
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/bakery"]
CMD ["serve"]
