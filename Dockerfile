# The Prism operator image: kopf + the Kubernetes client + the job contract; no Ray, no torch.
#
#   docker build -t ghcr.io/prism-extract/operator:0.1.0 .
#
# Multi-stage: the build stage installs into a virtual environment, the runtime stage copies only
# that environment and runs as an unprivileged user. Dockerfile.dockerignore keeps the context small.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/prism
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
COPY api ./api
COPY cli ./cli
# A regular (non-editable) install: the runtime stage gets no source tree.
RUN /opt/prism/bin/pip install ".[operator]" \
 && /opt/prism/bin/python -c "import prism_operator.handlers, sys; \
heavy = {'ray', 'torch', 'qdrant_client'} & set(sys.modules); assert not heavy, heavy"

FROM python:3.11-slim
COPY --from=build /opt/prism /opt/prism
ENV PATH=/opt/prism/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
# uid/gid 65532 ("nonroot" by convention); the Deployment also sets runAsNonRoot.
USER 65532:65532
# 8080: kopf's liveness endpoint (/healthz); 9100: operator metrics (/metrics).
EXPOSE 8080 9100
ENTRYPOINT ["kopf", "run", "--standalone", "--all-namespaces", "-m", "prism_operator.kopf_main", \
            "--liveness=http://0.0.0.0:8080/healthz"]
