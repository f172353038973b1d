# prgen's container image: the CronJob and the server in fleet-repo-example/infrastructure/
# run it.
#   docker build -t ghcr.io/acme/prgen:0.1.0 .
#
# Pinned: every Python package is installed from requirements.lock, exact versions checked
# against their sha256 hashes (pip --require-hashes); prgen itself is built from this checkout.
# Pin the base image too, by digest, for a build that never changes under you:
#   docker build --build-arg PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:<digest> ...
# (`docker buildx imagetools inspect python:3.11-slim-bookworm` shows the digest).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# -- build: a virtual environment with prgen and its locked dependencies -------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/prgen
COPY requirements.lock /src/requirements.lock
RUN /opt/prgen/bin/pip install --require-hashes --no-deps -r /src/requirements.lock
COPY . /src
# The build backend is needed to build prgen's wheel only; it does not reach the image.
RUN /opt/prgen/bin/pip wheel --no-deps --wheel-dir /wheels /src \
    && /opt/prgen/bin/pip install --no-deps /wheels/prgen-*.whl \
    && /opt/prgen/bin/pip check

# -- the image: the environment, git, and a non-root user --------------------------------
FROM ${PYTHON_IMAGE}

# git: prgen clones, commits and pushes the fleet repository with it.
# openssh-client: for a fleet.url over ssh.
RUN apt-get update \
    && apt-get install --yes --no-install-recommends git openssh-client ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# A fixed UID and GID, so a pod's runAsUser/fsGroup can name them (10001).
RUN groupadd --system --gid 10001 prgen \
    && useradd --system --uid 10001 --gid prgen --home-dir /home/prgen --create-home \
        --shell /usr/sbin/nologin prgen

COPY --from=build /opt/prgen /opt/prgen

ENV PATH=/opt/prgen/bin:$PATH \
    HOME=/home/prgen \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /home/prgen

ENTRYPOINT ["prgen"]
CMD ["--help"]
