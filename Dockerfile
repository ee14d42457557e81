# adps container: the release binary, the ONNX Runtime library from the pinned PyPI
# wheel (sha256-checked by scripts/onnxruntime.sh), the committed models and pipelines.
FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-pip && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN scripts/onnxruntime.sh && cargo build --release --locked

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
WORKDIR /adps
COPY --from=build /src/target/release/adps /usr/local/bin/adps
COPY --from=build /src/third_party/onnxruntime/lib /adps/third_party/onnxruntime/lib
COPY models /adps/models
COPY pipelines /adps/pipelines
ENV ADPS_ORT_DYLIB=/adps/third_party/onnxruntime/lib/libonnxruntime.so.1.31.1
ENTRYPOINT ["adps"]
CMD ["--help"]
