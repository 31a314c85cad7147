# usm-bridge as a container: the sync daemon, its /healthz and /metrics on port 9464.
# How to build, configure and run it: docs/deployment.md. The build needs BuildKit (the
# default builder since Docker 23) for RUN --mount.
#
#   docker build -t usm-bridge .
#   docker run --rm usm-bridge --help

ARG PYTHON_IMAGE=python:3.11-slim

# --- builder: wheels of the core, the three connectors and everything they need --------------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# The whole build context: .dockerignore lets in only the core and the three connectors.
COPY . ./
RUN python -m pip wheel --no-cache-dir --wheel-dir=/wheels \
        ".[postgresql]" ./connectors/email ./connectors/jira ./connectors/servicenow

# --- runtime: only the installed wheels, run by an unprivileged user -------------------------
FROM ${PYTHON_IMAGE} AS runtime
# libmagic: attachments' media types are sniffed from their content (python-magic loads it).
RUN apt-get update \
    && apt-get install -y --no-install-recommends libmagic1 \
    && rm -rf /var/lib/apt/lists/*
# A fixed UID and GID (10001), so that volumes, secret files and Kubernetes' runAsUser can
# name them.
RUN groupadd --system --gid 10001 usm-bridge \
    && useradd --system --uid 10001 --gid usm-bridge --no-create-home \
        --home-dir /var/lib/usm-bridge --shell /usr/sbin/nologin usm-bridge \
    && install -d -o usm-bridge -g usm-bridge -m 0700 /var/lib/usm-bridge
# The wheels are mounted from the builder, not copied: the image keeps no second copy of them,
# and --no-index proves that nothing is fetched from outside at this step.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    python -m pip install --no-cache-dir --no-index --find-links=/wheels \
        --root-user-action=ignore --disable-pip-version-check \
        "usm-bridge[postgresql]" usm-bridge-email usm-bridge-jira usm-bridge-servicenow
# The shipped mapping files beside the config, as 'usm-bridge init' lays a config out: a config
# names them mappings/NAME.yaml. A folder of your own mounted at /etc/usm-bridge replaces both.
RUN mappings="$(python -c 'from usm_bridge.mapping.files import shipped_mappings_dir as d; print(d())')" \
    && test -d "$mappings" \
    && install -d -m 0755 /etc/usm-bridge \
    && ln -s "$mappings" /etc/usm-bridge/mappings

# The config is mounted here (docs/deployment.md); secrets under /run/secrets, named in it as
# { file = "/run/secrets/NAME" }. No secret is ever passed through the environment.
ENV USM_BRIDGE_CONFIG=/etc/usm-bridge/usm-bridge.toml \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# The state (a SQLite store, a Maildir's marks) outlives the container in this volume.
WORKDIR /var/lib/usm-bridge
VOLUME ["/var/lib/usm-bridge"]
USER 10001:10001
# [daemon] listen = "0.0.0.0:9464" in the container's config: /healthz and /metrics.
EXPOSE 9464
# Healthy while every instance synced within three of its intervals (/healthz answers 200).
# The hook turns a refused connection or a 503 into one line instead of a traceback; the
# exit code stays 1, which Docker reads as unhealthy.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.excepthook = lambda kind, exc, tb: print('unhealthy:', exc, file=sys.stderr); urllib.request.urlopen('http://127.0.0.1:9464/healthz', timeout=5)"]
ENTRYPOINT ["usm-bridge"]
CMD ["daemon"]
