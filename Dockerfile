# imagelabel-operator container image.
# Not built in this repository's CI (no container engine there); kept correct by review.
#
# The binary links glibc (rustls with ring needs no OpenSSL), so the runtime is
# distroless cc (glibc + libgcc), not static.

FROM rust:1.95-bookworm AS build
WORKDIR /src
# Dependencies first, in their own layer, so source edits rebuild only the crate.
# (benches/ only has to exist for Cargo.toml's [[bench]] entries to parse.)
# --no-default-features: the operator without the cloud simulator (the `sim`
# feature, for tests and `imagelabel demo`).
COPY Cargo.toml Cargo.lock ./
COPY benches ./benches
RUN mkdir -p src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --release --locked --no-default-features --bin imagelabel \
    && rm -rf src
COPY src ./src
# Symbols are a quarter of the binary (25.2 MB, 18.7 MB stripped) and a
# running operator never reads them; release builds outside the image keep
# them for profilers.
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --no-default-features --bin imagelabel \
    && strip target/release/imagelabel

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/imagelabel /imagelabel
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/imagelabel"]
CMD ["run"]
