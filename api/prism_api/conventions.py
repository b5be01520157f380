"""Names both sides (and the e2e suite) must spell the same: labels, annotations, the finalizer,
environment variables, the synthetic Ray resource and the sink's collection suffixes.

The progress endpoint's port, path and metric names are in progress_report; child object names
in child_names; the payload keys of points that readers rely on (failed extractors among them) in
point_payload.
"""

from __future__ import annotations

DOMAIN = "prism.dev"

# Labels on every child of an ExtractionJob (RayCluster, RayJob, their pods).
JOB_LABEL = f"{DOMAIN}/extraction-job"   # the ExtractionJob's name
ATTEMPT_LABEL = f"{DOMAIN}/attempt"      # on a RayJob and its submission: which attempt it runs
MANAGED_BY = "prism-operator"            # app.kubernetes.io/managed-by

# The operator's finalizer, and the annotation kopf keeps the last handled spec digest in.
FINALIZER = f"{DOMAIN}/finalizer"
LAST_HANDLED_ANNOTATION = f"{DOMAIN}/last-handled-digest"

# Environment variables the operator sets on Ray pods and the pipeline reads.
ENV_QDRANT_API_KEY = "QDRANT_API_KEY"    # from spec.sink.qdrant.apiKeySecretRef, never a literal
ENV_RAY_ADDRESS = "RAY_ADDRESS"          # set by Ray inside a RayJob; absent on a laptop

# The synthetic Ray resource Prism workers advertise (cluster.batchResource) and every pipeline stage
# asks a token share of, so batch stages run only on Prism's worker groups.
BATCH_RESOURCE = "batch"

# `<collection>__prism_files`: one vector-less record per finished file (incremental runs) plus the
# collection's own metadata (which extractors, at which model versions, wrote it).
FILES_COLLECTION_SUFFIX = "__prism_files"
# No user collection may contain it, so none is ever taken for (or collides with) one of Prism's own.
PRISM_MARK = "__prism"


def files_collection(collection: str) -> str:
    return collection + FILES_COLLECTION_SUFFIX
