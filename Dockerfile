# Every binary of the pipeline in one image; docker-compose.yml picks one per service.

FROM rust:1.90-bookworm AS build
# librdkafka is compiled from source (rdkafka's cmake-build feature).
RUN apt-get update && apt-get install -y --no-install-recommends cmake && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bins \
 && mkdir /out \
 && cp target/release/ingest target/release/enricher target/release/attributor \
       target/release/reporter target/release/api target/release/salesctl /out/

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --no-create-home sales
COPY --from=build /out/ /usr/local/bin/
USER sales
# Each service sets its command (ingest, enricher, attributor, reporter, api or salesctl).
CMD ["salesctl", "--help"]
