# syntax=docker/dockerfile:1
# diazepam-cds container image.
#
# Two stages: the first builds the same package the test suite uses (`pip install .[postgres]`
# from pyproject.toml) into a virtual environment; the second carries only that environment and
# the card templates, runs as an unprivileged user and is configured by CDS_* variables alone
# (docs/operations.md lists them). Build: docker build -t diazepam-cds .

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY cds_service/ cds_service/
# = `pip install .[postgres]`, spelled as a path so hadolint knows it is not an unpinned
# PyPI name. Not editable: the package data (schemas, value sets, migrations) must suffice.
# Every dependency at the exact version of constraints.txt (the lock the tests ran with).
RUN pip install --no-cache-dir -c constraints.txt "/src[postgres]" \
    && diazepam-cds --help > /dev/null

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="diazepam-cds" \
      org.opencontainers.image.description="CDS Hooks 2.0 service advising on diazepam orders" \
      org.opencontainers.image.licenses="Apache-2.0"
# A fixed numeric uid/gid so volume ownership is predictable across hosts and rebuilds.
RUN groupadd --system --gid 10001 cds \
    && useradd --system --uid 10001 --gid cds --no-create-home \
       --home-dir /var/lib/diazepam-cds --shell /usr/sbin/nologin cds \
    && mkdir -p /var/lib/diazepam-cds \
    && chown cds:cds /var/lib/diazepam-cds
COPY --from=build /opt/venv /opt/venv
COPY cards/ /opt/diazepam-cds/cards/
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CDS_HOST=0.0.0.0 \
    CDS_PORT=8080 \
    CDS_DATA_DIR=/var/lib/diazepam-cds \
    CDS_CARDS_DIR=/opt/diazepam-cds/cards
# SQLite database (when CDS_DATABASE_URL is unset) and Prometheus multiprocess files.
VOLUME ["/var/lib/diazepam-cds"]
WORKDIR /var/lib/diazepam-cds
USER 10001:10001
EXPOSE 8080
# No curl in a slim image: the interpreter is already there. /health answers 503 when a
# dependency (the database) fails, which urlopen raises as an error -> unhealthy.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('CDS_PORT', '8080'), timeout=4)"]
ENTRYPOINT ["diazepam-cds"]
CMD ["serve"]
