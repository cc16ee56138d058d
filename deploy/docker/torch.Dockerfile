# The predictor and the trainer, which link libtorch: the CPU build of the PyPI torch wheel
# tch 0.26 is made for, installed in the build stage; only its lib folder goes into the
# runtime images. Build from the repository root:
#   docker build -f deploy/docker/torch.Dockerfile --target predictor -t prescale/predictor .
#   docker build -f deploy/docker/torch.Dockerfile --target trainer -t prescale/trainer .
FROM rust:1.92-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends python3-venv && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /venv \
 && /venv/bin/pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu torch==2.13.0 \
 && mkdir -p /opt/libtorch \
 && cp -r "$(/venv/bin/python -c 'import torch, os; print(os.path.dirname(torch.__file__))')/lib" /opt/libtorch/lib
ENV LIBTORCH_USE_PYTORCH=1 PATH=/venv/bin:$PATH
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    cargo build --release --locked -p prescale-predictor --bin prescale-predictor -p prescale-trainer --bin prescale-trainer \
 && cp target/release/prescale-predictor target/release/prescale-trainer /

# Shared runtime: glibc, libgomp for libtorch's threads, a shell for the trainer CronJob's
# loop over services, and an unprivileged user.
FROM debian:bookworm-slim AS runtime
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libgomp1 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 65532 --user-group --no-create-home prescale
COPY --from=build /opt/libtorch/lib /opt/libtorch/lib
ENV LD_LIBRARY_PATH=/opt/libtorch/lib

FROM runtime AS predictor
COPY --from=build /prescale-predictor /usr/local/bin/prescale-predictor
USER 65532:65532
EXPOSE 9100 9500
ENTRYPOINT ["/usr/local/bin/prescale-predictor"]

FROM runtime AS trainer
COPY --from=build /prescale-trainer /usr/local/bin/prescale-trainer
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/prescale-trainer"]
