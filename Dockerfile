# GridShare CSIP-AUS endpoint. Mount /data for the SQLite store and the dev PKI, or set
# GRIDSHARE_DATABASE_URL and the GRIDSHARE_TLS_* files for production. Behind nginx with several
# serving processes and one publisher: deploy/compose.yaml (`serve --roles ...`, docs/deployment.md).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    GRIDSHARE_DATA_DIR=/data \
    GRIDSHARE_HOST=0.0.0.0 \
    GRIDSHARE_OPERATOR_HOST=0.0.0.0 \
    GRIDSHARE_DEMO_NETWORK_FILE=/app/examples/demo-feeder.yaml

WORKDIR /app
COPY pyproject.toml README.md ./
# gridshare/<room> are symbolic links to the top-level rooms: every room must be copied.
COPY gridshare ./gridshare
COPY core ./core
COPY grid ./grid
COPY certs ./certs
COPY store ./store
COPY server ./server
COPY allocation ./allocation
COPY envelopes ./envelopes
COPY fallback ./fallback
COPY recompute ./recompute
COPY sim ./sim
COPY examples ./examples
RUN pip install --no-cache-dir . \
    && useradd --system --home /data gridshare \
    && mkdir -p /data && chown gridshare /data

USER gridshare
VOLUME ["/data"]
EXPOSE 8443 8080
ENTRYPOINT ["gridshare"]
CMD ["serve"]
