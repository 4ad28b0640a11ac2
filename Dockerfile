# Build a wheel (migrations included), then install it into a clean slim image.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY sql ./sql
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    GATEWAY_HOST=0.0.0.0 \
    GATEWAY_PORT=8080
# The audit spool must survive a crash and be writable by the service: give it a home of its
# own (mount a volume there in production).
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin gateway \
    && mkdir -p /var/lib/gateway/audit-spool \
    && chown -R 10001 /var/lib/gateway
ENV GATEWAY_AUDIT_SPOOL_DIR=/var/lib/gateway/audit-spool
WORKDIR /var/lib/gateway
COPY --from=build /wheels /wheels
# `pip wheel` above built every dependency too, so this install needs no network.
RUN pip install --no-cache-dir --no-index --find-links=/wheels /wheels/embed_gateway-*.whl \
    && rm -rf /wheels
USER 10001
EXPOSE 8080
# /healthz answers while the process is alive; readiness (/readyz) is for the orchestrator.
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"]
CMD ["gateway", "serve"]
