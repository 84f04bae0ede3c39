# stopline controller image: `docker build -t stopline:0.1.0 .`, deployed by charts/stopline.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    STOPLINE_REPO_CACHE=/var/cache/stopline

# GitPython drives the git binary; ssh for ssh:// and scp-like remotes.
RUN apt-get update \
    && apt-get install -y --no-install-recommends git openssh-client ca-certificates \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 stopline \
    && useradd --system --uid 10001 --gid 10001 --create-home --home-dir /home/stopline \
       --shell /usr/sbin/nologin stopline \
    && install -d -o 10001 -g 10001 /var/cache/stopline

WORKDIR /src
COPY pyproject.toml README.md ./
COPY controller ./controller
RUN pip install . && rm -rf /src

WORKDIR /home/stopline
# Numeric so that Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
EXPOSE 8480 8080

ENTRYPOINT ["stopline"]
CMD ["run", "--standalone", "--all-namespaces"]
