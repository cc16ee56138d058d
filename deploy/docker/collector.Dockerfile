# The collector: Prometheus to Parquet. It does not link libtorch.
# Build from the repository root: docker build -f deploy/docker/collector.Dockerfile -t prescale/collector .
FROM rust:1.92-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    cargo build --release --locked -p prescale-collector --bin prescale-collector \
 && cp target/release/prescale-collector /prescale-collector

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /prescale-collector /usr/local/bin/prescale-collector
USER 65532:65532
EXPOSE 9101
ENTRYPOINT ["/usr/local/bin/prescale-collector"]
