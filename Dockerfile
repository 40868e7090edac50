# GridShare CSIP-AUS endpoint and operator API, installed from its own wheel: what the image runs is
# exactly what `pip install gridshare` would install (every room, the migrations, the example networks).
#
#   docker build -t gridshare .
#   docker run -p 8443:8443 -p 8080:8080 -v gridshare-data:/data gridshare
#
# Mount /data for the SQLite store and the dev PKI, or set GRIDSHARE_DATABASE_URL and the
# GRIDSHARE_TLS_* files for production. Behind nginx with several serving processes and one publisher:
# deploy/compose.yaml (`serve --roles ...`, docs/deployment.md). tests/product/test_wheel.py builds, installs
# and serves the same wheel.

# --- build: the wheel, from the source tree ---
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
# gridshare/<room> are symbolic links to the top-level rooms: every room must be copied (the wheel
# copies through the links).
COPY gridshare ./gridshare
COPY core ./core
COPY grid ./grid
COPY certs ./certs
COPY store ./store
COPY server ./server
COPY allocation ./allocation
COPY envelopes ./envelopes
COPY fallback ./fallback
COPY compute ./compute
COPY recompute ./recompute
COPY sim ./sim
COPY planning ./planning
COPY performance ./performance
COPY process ./process
RUN pip install --no-cache-dir "setuptools>=68" wheel \
    && pip wheel --no-cache-dir --no-deps --no-build-isolation --wheel-dir /wheels .

# --- run: the wheel and its dependencies, nothing else from the source tree ---
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    GRIDSHARE_DATA_DIR=/data \
    GRIDSHARE_HOST=0.0.0.0 \
    GRIDSHARE_OPERATOR_HOST=0.0.0.0

COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/gridshare-*.whl \
    && rm -rf /wheels \
    && useradd --system --home /data gridshare \
    && mkdir -p /data && chown gridshare /data

USER gridshare
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8443 8080
ENTRYPOINT ["gridshare"]
CMD ["serve"]
