# syntax=docker/dockerfile:1
# trackflow's container image: `trackflow` is the entrypoint, `worker` the default command.
#   docker build -t trackflow .
#   docker run --rm -e KAFKA_BOOTSTRAP_SERVERS=kafka:9092 -e REDIS_URL=redis://redis:6379/0 trackflow
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# Build stage: compilers for any dependency without a wheel for this platform; none of it
# reaches the final image, only the virtualenv does.
FROM ${PYTHON_IMAGE} AS build
# Debian's package versions move with the base image's point releases; pinning them would break
# the build at every one. The base image tag is what pins the distribution.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY streams/ streams/
COPY agents/ agents/
COPY providers/ providers/
COPY schemas/ schemas/
RUN /opt/venv/bin/pip install --no-compile . \
    && /opt/venv/bin/python -m compileall -q /opt/venv/lib

# Final stage: the slim base, the virtualenv, an unprivileged user; no compiler, no sources.
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="trackflow" \
      org.opencontainers.image.description="Kafka pipeline that enriches music track metadata" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 trackflow \
    && useradd --system --uid 10001 --gid trackflow --home-dir /var/lib/trackflow \
       --shell /usr/sbin/nologin trackflow \
    && mkdir -p /var/lib/trackflow/data \
    && chown -R trackflow:trackflow /var/lib/trackflow
COPY --from=build /opt/venv /opt/venv
# In a container the worker's web server (/metrics, /health/*) must listen beyond loopback, and
# the tables' data directory is the one writable place (a volume of the worker's own: a new
# named volume in Compose copies this directory's owner, a Kubernetes volume gets fsGroup).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TRACKFLOW_WORKER__WEB_HOST=0.0.0.0 \
    TRACKFLOW_WORKER__DATA_DIR=/var/lib/trackflow/data
USER 10001:10001
WORKDIR /var/lib/trackflow
EXPOSE 6066
ENTRYPOINT ["trackflow"]
CMD ["worker"]
