# remediator daemon: slim, non-root, CPU-only torch.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    GIT_TERMINAL_PROMPT=0

RUN apt-get update \
 && apt-get install -y --no-install-recommends git ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 remediator \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/remediator --create-home remediator

WORKDIR /opt/remediator
COPY pyproject.toml README.md ./
COPY agents ./agents
COPY tools ./tools
COPY memory ./memory
COPY playbooks ./playbooks
COPY config ./config
# Pass the index that serves CPU builds of torch (e.g. --build-arg TORCH_INDEX_URL=...), so the
# torch==2.13.0 pin does not pull a multi-GB CUDA build; without it pip's default index is used.
ARG TORCH_INDEX_URL=""
RUN if [ -n "$TORCH_INDEX_URL" ]; then pip install --index-url "$TORCH_INDEX_URL" torch==2.13.0; fi \
 && pip install ".[postgres]"

# numeric, so a runAsNonRoot admission check can verify it without reading /etc/passwd
USER 10001:10001
# listen on every interface in the container: the daemon's /metrics /healthz /readyz on 9464,
# `remediator serve` (review UI, Slack) on 8080
ENV XDG_STATE_HOME=/var/lib/remediator REMEDIATOR_HTTP__HOST=0.0.0.0 REMEDIATOR_HTTP__DAEMON_PORT=9464 \
    REMEDIATOR_HTTP__PORT=8080
EXPOSE 9464 8080
VOLUME ["/var/lib/remediator"]
# liveness of the daemon (for `serve`, probe 8080 instead); readiness is /readyz
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9464/healthz', timeout=5)" || exit 1
ENTRYPOINT ["remediator"]
CMD ["daemon", "--config", "/etc/remediator/remediator.yaml"]
