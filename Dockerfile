# avsearch: the search service in a container, CPU or GPU, from this one Dockerfile.
#
# CPU (the default): the base is Debian bookworm with python3, made without a registry by
#   bash docker/make-base-image.sh                   # -> avsearch-base:bookworm
#   docker build -t avsearch:cpu .
# GPU: a CUDA 12 runtime base with cuDNN 9, and the gpu extra (onnxruntime-gpu, faiss-gpu):
#   docker build --build-arg BASE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04 \
#                --build-arg VARIANT=gpu -t avsearch:gpu .
#
# A bare `docker run -p 8000:8000 avsearch:cpu` serves the pretrained digits model over a demo
# index of data/sample (built here, in the build stage). Volumes on /srv/avsearch/models,
# /srv/avsearch/indices and /srv/avsearch/media hold your own bundles and media; settings are
# AVSEARCH_* variables (docs/service.md). See docs/deploy.md.
# Only the serving stage ships: no torch, no compiler, no pip cache, a non-root user.

ARG BASE=avsearch-base:bookworm

# ---------------------------------------------------------------------------------------- build
FROM ${BASE} AS build
ARG VARIANT=cpu
ENV DEBIAN_FRONTEND=noninteractive \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    PYTHONDONTWRITEBYTECODE=1
SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# A base without `python3 -m venv` (the CUDA images): add the distribution's python3.
# hadolint ignore=DL3008
RUN if ! python3 -m venv --help >/dev/null 2>&1; then \
      apt-get update \
      && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
      && rm -rf /var/lib/apt/lists/*; \
    fi

# The dependencies of the variant first: a layer that code changes do not invalidate.
WORKDIR /src
COPY pyproject.toml ./
RUN case "${VARIANT}" in cpu|gpu) ;; *) echo "VARIANT must be cpu or gpu" >&2; exit 2;; esac \
    && python3 -m venv /opt/avsearch \
    && /opt/avsearch/bin/python -c "import sys, tomllib; \
p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
print('\n'.join(p['dependencies'] + p['optional-dependencies'][sys.argv[1]]))" "${VARIANT}" \
       > /tmp/requirements.txt \
    && /opt/avsearch/bin/pip install --no-compile -r /tmp/requirements.txt

# The package itself (with its package data: the pretrained bundle, the web page).
COPY README.md ./
COPY models ./models
COPY indexer ./indexer
COPY service ./service
RUN /opt/avsearch/bin/pip install --no-compile --no-deps . \
    && /opt/avsearch/bin/python -c "import service.app, service.cli" \
    && ! /opt/avsearch/bin/python -c "import torch" 2>/dev/null

# The default content of the volumes: the pretrained bundle, and the demo corpus and its index
# (the same corpus as `avsearch demo`), built at the paths they are served from.
COPY models/pretrained/digits /srv/avsearch/models/digits
COPY data/sample /src/data/sample
RUN /opt/avsearch/bin/avsearch corpus digits --source /src/data/sample \
      --out /srv/avsearch/media/demo --split test --scenes 100 --clips 10 --no-progress \
    && /opt/avsearch/bin/avsearch index build --model /srv/avsearch/models/digits \
      --corpus /srv/avsearch/media/demo --out /srv/avsearch/indices/demo --device cpu --quiet

# What serving does not need: pip and setuptools, numpy's tests. Bytecode compiled once here
# (a second off every start of the service or of a batch job).
RUN /opt/avsearch/bin/python -m pip uninstall -y -q pip setuptools \
    && find /opt/avsearch/lib -type d -path '*/numpy/*' -name tests -prune -exec rm -rf {} + \
    && /opt/avsearch/bin/python -m compileall -q -j 0 /opt/avsearch/lib >/dev/null

# -------------------------------------------------------------------------------------- serving
FROM ${BASE} AS serve
ARG VARIANT=cpu
LABEL org.opencontainers.image.title="avsearch" \
      org.opencontainers.image.description="Cross-modal audio-image search (ONNX Runtime, FAISS)" \
      org.opencontainers.image.licenses="Apache-2.0" \
      avsearch.variant="${VARIANT}"
SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# hadolint ignore=DL3008
RUN if ! command -v python3 >/dev/null; then \
      apt-get update \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 \
      && rm -rf /var/lib/apt/lists/*; \
    fi \
    && useradd --system --uid 10001 --user-group --home-dir /srv/avsearch --no-create-home \
       --shell /usr/sbin/nologin avsearch

COPY --from=build /opt/avsearch /opt/avsearch
COPY --from=build --chown=10001:10001 /srv/avsearch /srv/avsearch

ENV PATH=/opt/avsearch/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    AVSEARCH_MODEL_DIR=/srv/avsearch/models/digits \
    AVSEARCH_INDEX_DIR=/srv/avsearch/indices/demo \
    AVSEARCH_CORPUS_DIR=/srv/avsearch/media/demo \
    AVSEARCH_HOST=0.0.0.0 \
    AVSEARCH_PORT=8000 \
    AVSEARCH_DEVICE=auto
VOLUME ["/srv/avsearch/models", "/srv/avsearch/indices", "/srv/avsearch/media"]
WORKDIR /srv/avsearch
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('AVSEARCH_PORT', '8000') + '/healthz', timeout=4)"]
ENTRYPOINT ["avsearch"]
CMD ["serve"]
