# The storefront: one image for all seven services (`storefront run <service>`).
# Build from the repository root: docker build -f deploy/docker/storefront.Dockerfile -t prescale/storefront .
FROM rust:1.92-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    cargo build --release --locked -p storefront --bin storefront \
 && cp target/release/storefront /storefront

# No libtorch, no shell: glibc and the binary, as an unprivileged user.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /storefront /usr/local/bin/storefront
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/storefront"]
