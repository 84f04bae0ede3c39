# stopline controller image: `docker build -t stopline:0.1.0 .`, deployed by charts/stopline.

# kustomize and helm for source.kustomize / source.helm, built from their Go modules by the same
# scripts the e2e stack uses (versions pinned there; --build-arg STOPLINE_KUSTOMIZE_VERSION=... or
# STOPLINE_HELM_VERSION=... overrides them).
FROM golang:1.26-bookworm AS renderers
ARG STOPLINE_KUSTOMIZE_VERSION
ARG STOPLINE_HELM_VERSION
ENV STOPLINE_CACHE=/out CGO_ENABLED=0
COPY hack/install-kustomize.sh hack/install-helm.sh /src/hack/
RUN bash /src/hack/install-kustomize.sh \
    && bash /src/hack/install-helm.sh \
    && install -D -m 0755 /out/bin/kustomize-*/kustomize /out/usr/local/bin/kustomize \
    && install -D -m 0755 /out/bin/helm-*/helm /out/usr/local/bin/helm

FROM python:3.11-slim

# MALLOC_ARENA_MAX: the controller runs ~40 threads (the I/O pool, watches, Lease renewal); glibc's default
# of 8 malloc arenas per core let a burst of 500 Releases starting at once fragment the heap to 296 MiB
# RSS, 226 MiB with two arenas (docs/benchmarks.md, run O).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MALLOC_ARENA_MAX=2 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    STOPLINE_REPO_CACHE=/var/cache/stopline \
    STOPLINE_KUSTOMIZE=/usr/local/bin/kustomize \
    STOPLINE_HELM=/usr/local/bin/helm

# GitPython drives the git binary; ssh for ssh:// and scp-like remotes.
RUN apt-get update \
    && apt-get install -y --no-install-recommends git openssh-client ca-certificates \
    && rm -rf /var/lib/apt/lists/*

COPY --from=renderers /out/usr/local/bin/kustomize /out/usr/local/bin/helm /usr/local/bin/

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
CMD ["run", "--all-namespaces"]
