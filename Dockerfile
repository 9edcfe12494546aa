# syntax=docker/dockerfile:1
# lumierd in a container:
#   docker build -t lumierd .
#   docker run -d --name lumierd \
#     -v "$PWD/manifests:/manifests:ro" -v lumierd-state:/var/lib/lumierd \
#     -e CLOUDFLARE_ACCOUNT_ID -e CLOUDFLARE_API_TOKEN -p 127.0.0.1:9464:9464 \
#     lumierd run --provider cloudflare --manifests /manifests \
#       --admin-listen 0.0.0.0:9464 --admin-allow-remote
# Without --provider cloudflare it runs against its embedded local API (no account needed).

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# Not built into the image, but Cargo.toml declares the bench target and cargo checks it exists.
COPY benches ./benches
# The registry and target caches survive between builds (BuildKit); the binary is copied out.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
    && install -D -m 0755 target/release/lumierd /out/usr/local/bin/lumierd \
    && install -d -m 0700 /out/var/lib/lumierd

# glibc and libgcc only, no shell; runs as `nonroot` (65532).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/usr/local/bin/lumierd /usr/local/bin/lumierd
COPY --from=build --chown=65532:65532 /out/var/lib/lumierd /var/lib/lumierd
ENV STATE_DIRECTORY=/var/lib/lumierd
VOLUME ["/var/lib/lumierd"]
USER 65532:65532
WORKDIR /var/lib/lumierd
EXPOSE 9464
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["/usr/local/bin/lumierd", "healthcheck", "http://127.0.0.1:9464/healthz"]
ENTRYPOINT ["/usr/local/bin/lumierd"]
CMD ["run", "--manifests", "/manifests", "--admin-listen", "0.0.0.0:9464", "--admin-allow-remote"]
