# syntax=docker/dockerfile:1
#
# One image for all three AgentFlow programs: agentflow-master, agentflow-worker and
# the agentflow CLI. The Helm chart (helm/agentflow) runs it with
# `args: [agentflow-master, ...]` or `[agentflow-worker, ...]`.
#
#   docker build -t agentflow:0.1.0 .
#   docker run --rm agentflow:0.1.0 agentflow --help
#
# Stage 1 installs the package and its dependencies into a virtualenv; stage 2 copies
# only that virtualenv onto a clean slim image and runs as an unprivileged user.

ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim-bookworm AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/agentflow

WORKDIR /src
# Only what `pip install .` needs (see .dockerignore): the generated protobuf code
# is committed under agentflow/_proto, so no protoc step here.
COPY pyproject.toml README.md ./
COPY agentflow ./agentflow
RUN /opt/agentflow/bin/pip install .

# The image is useless without any of its three programs: fail the build, not the pod.
RUN for program in agentflow agentflow-master agentflow-worker; do \
      "/opt/agentflow/bin/$program" --help >/dev/null || { echo "missing or broken: $program" >&2; exit 1; }; \
    done


FROM python:${PYTHON_VERSION}-slim-bookworm

ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="agentflow" \
      org.opencontainers.image.description="AgentFlow: a gRPC-first distributed task scheduler (master, worker, CLI)" \
      org.opencontainers.image.version="${VERSION}"

# tini as PID 1 forwards SIGTERM (a leader hands over leadership on it) and reaps the
# orphaned grandchildren of shell tasks on workers.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/*

# A fixed numeric uid/gid (10001) so `runAsNonRoot` can be checked by the kubelet;
# the chart's securityContext uses the same ids.
RUN groupadd --system --gid 10001 agentflow \
 && useradd --system --uid 10001 --gid agentflow --home-dir /home/agentflow \
      --create-home --shell /usr/sbin/nologin agentflow \
 && mkdir -p /var/lib/agentflow \
 && chown agentflow:agentflow /var/lib/agentflow

COPY --from=build /opt/agentflow /opt/agentflow

ENV PATH=/opt/agentflow/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    AGENTFLOW_LOG_FORMAT=json

USER 10001:10001
WORKDIR /var/lib/agentflow

# gRPC (Raft, client and worker APIs, health, reflection) and HTTP (/health, /ready, /stats).
EXPOSE 6767 6768

ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["agentflow", "--help"]
