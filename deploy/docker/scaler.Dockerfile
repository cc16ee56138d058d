# The scaler: the predictor's decisions onto the scale subresource. It does not link libtorch.
# Build from the repository root: docker build -f deploy/docker/scaler.Dockerfile -t prescale/scaler .
FROM rust:1.92-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    cargo build --release --locked -p prescale-scaler --bin prescale-scaler \
 && cp target/release/prescale-scaler /prescale-scaler

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /prescale-scaler /usr/local/bin/prescale-scaler
USER 65532:65532
EXPOSE 9102
ENTRYPOINT ["/usr/local/bin/prescale-scaler"]
