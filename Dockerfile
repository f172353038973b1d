# prgen's container image: the CronJob in fleet-repo-example/infrastructure/prgen
# and the GitHub Actions example run it.
#   docker build -t ghcr.io/acme/prgen:0.1.0 .
# Pin the base image by digest in production (python:3.11-slim@sha256:...).
FROM python:3.11-slim

# git: prgen clones, commits and pushes the fleet repository with it.
# openssh-client: for a fleet.url over ssh.
RUN apt-get update \
    && apt-get install --yes --no-install-recommends git openssh-client ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# A fixed UID and GID, so a pod's runAsUser/fsGroup can name them (10001).
RUN groupadd --system --gid 10001 prgen \
    && useradd --system --uid 10001 --gid prgen --home-dir /home/prgen --create-home \
        --shell /usr/sbin/nologin prgen

COPY . /src
RUN pip install --no-cache-dir --disable-pip-version-check /src \
    && rm -rf /src

ENV HOME=/home/prgen \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /home/prgen

ENTRYPOINT ["prgen"]
CMD ["--help"]
