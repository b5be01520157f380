#!/usr/bin/env bash
# Prism end to end on a real cluster: kind (or any cluster) + KubeRay + Qdrant + MinIO + the
# Prism operator and worker images, then the pytest suite in e2e/tests. See e2e/README.md.
#
#   e2e/run.sh                       create a kind cluster, install everything, run the suite
#   e2e/run.sh --dry-run             print every command it would run, run nothing
#   e2e/run.sh --kubeconfig PATH --registry REG    use an existing cluster, push images to REG
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=e2e/versions.env
source "$ROOT/e2e/versions.env"

MODE=kind
CLUSTER_NAME=${PRISM_E2E_CLUSTER:-prism-e2e}
WORKDIR=${PRISM_E2E_WORKDIR:-${TMPDIR:-/tmp}/prism-e2e}
KUBECONFIG_PATH=""
CONTAINER_ENGINE=${CONTAINER_ENGINE:-docker}
REGISTRY=""
KIND_LOAD=0
DRY_RUN=0
SETUP=1
TESTS=1
KEEP=0
BUILD=1
PYTEST_ARGS=""
IMAGE_TAG=${PRISM_E2E_TAG:-e2e}
OPERATOR_IMAGE=""
JOB_IMAGE=""
# Where manifests/ puts the operator; the suite checks these against the kustomize output.
OPERATOR_NAMESPACE=${PRISM_OPERATOR_NAMESPACE:-prism-system}
OPERATOR_DEPLOYMENT=${PRISM_OPERATOR_DEPLOYMENT:-prism-operator}
# The operator's reconcile interval in the suite: short, so phase changes show up quickly.
OPERATOR_TIMER_INTERVAL=3
CREATED_CLUSTER=0

usage() {
  cat <<EOF
usage: e2e/run.sh [options]

Cluster (default: --kind)
  --kind                 create (or reuse) the kind cluster '$CLUSTER_NAME' with $KIND_NODE_IMAGE
  --kubeconfig PATH      use the cluster of this kubeconfig instead (images: --kind-load or --registry)
  --cluster-name NAME    kind cluster name (default: $CLUSTER_NAME)
  --kind-load            with --kubeconfig: the cluster is the kind cluster --cluster-name; load images into it
  --registry REG         with --kubeconfig: push the images to REG (e.g. ghcr.io/you) for the cluster to pull
Images
  --tag TAG              image tag (default: $IMAGE_TAG)
  --skip-build           do not build; use images that already exist (and are pushed, with --registry)
  --operator-image IMG   operator image to deploy (default: prism-operator:TAG, or REG/prism-operator:TAG)
  --job-image IMG        image of the ExtractionJobs' Ray pods (default: prism-worker-e2e:TAG, or under REG)
Steps
  --setup-only           install the stack; do not run the tests
  --tests-only           only run the tests (the stack is installed already)
  --pytest-args "ARGS"   extra arguments for pytest, e.g. "-k retry -x"
  --keep                 keep the kind cluster this run created (default: delete it at the end)
  --dry-run              print every command it would run and exit
  -h, --help             this text

Environment: CONTAINER_ENGINE (docker|podman, default docker), PRISM_E2E_WORKDIR (kubeconfig and
logs; default \${TMPDIR:-/tmp}/prism-e2e), PRISM_OPERATOR_NAMESPACE, PRISM_OPERATOR_DEPLOYMENT.
EOF
}

die() { printf 'e2e/run.sh: error: %s\n' "$*" >&2; exit 2; }
say() { printf '\n== %s\n' "$*"; }

# Shell-quote the arguments the way a person would type them, so a printed command can be pasted.
quote() {
  local out="" arg
  for arg in "$@"; do
    if [[ $arg =~ ^[A-Za-z0-9_@%+=:,./-]+$ ]]; then
      out+="$arg "
    else
      out+="'${arg//\'/\'\\\'\'}' "
    fi
  done
  printf '%s' "${out% }"
}

# Every command that changes something goes through here, so --dry-run prints them all.
run() {
  printf '+ %s\n' "$(quote "$@")"
  if (( DRY_RUN )); then return 0; fi
  "$@"
}

# wait_until DESCRIPTION SECONDS CMD...: rerun CMD (quietly) until it succeeds or the deadline passes.
wait_until() {
  local what=$1 seconds=$2
  shift 2
  printf '+ wait up to %ss for %s: %s\n' "$seconds" "$what" "$(quote "$@")"
  if (( DRY_RUN )); then return 0; fi
  local deadline=$((SECONDS + seconds)) next_note=$((SECONDS + 30))
  until "$@" >/dev/null 2>&1; do
    if (( SECONDS >= deadline )); then
      printf 'e2e/run.sh: timed out after %ss waiting for %s\n' "$seconds" "$what" >&2
      return 1
    fi
    if (( SECONDS >= next_note )); then
      printf '   still waiting for %s (%ss left)\n' "$what" $((deadline - SECONDS))
      next_note=$((SECONDS + 30))
    fi
    sleep 3
  done
}

need_file() {
  local path=$1 why=$2
  if [[ -e "$ROOT/$path" ]]; then return 0; fi
  if (( DRY_RUN )); then
    printf '# note: %s is missing (%s); a real run stops here\n' "$path" "$why"
    return 0
  fi
  die "$path is missing: $why"
}

need_tool() {
  (( DRY_RUN )) && return 0
  command -v "$1" >/dev/null 2>&1 || die "'$1' is not on PATH: $2 (see e2e/README.md, Prerequisites)"
}

version_at_least() {  # version_at_least HAVE WANT
  [[ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" == "$2" ]]
}

parse_args() {
  while (( $# )); do
    case "$1" in
      --kind) MODE=kind ;;
      --kubeconfig) [[ $# -ge 2 ]] || die "--kubeconfig needs a path"; MODE=existing; KUBECONFIG_PATH=$2; shift ;;
      --cluster-name) [[ $# -ge 2 ]] || die "--cluster-name needs a name"; CLUSTER_NAME=$2; shift ;;
      --kind-load) KIND_LOAD=1 ;;
      --registry) [[ $# -ge 2 ]] || die "--registry needs a registry"; REGISTRY=${2%/}; shift ;;
      --tag) [[ $# -ge 2 ]] || die "--tag needs a tag"; IMAGE_TAG=$2; shift ;;
      --skip-build) BUILD=0 ;;
      --operator-image) [[ $# -ge 2 ]] || die "--operator-image needs an image"; OPERATOR_IMAGE=$2; shift ;;
      --job-image) [[ $# -ge 2 ]] || die "--job-image needs an image"; JOB_IMAGE=$2; shift ;;
      --setup-only) TESTS=0 ;;
      --tests-only) SETUP=0 ;;
      --pytest-args) [[ $# -ge 2 ]] || die "--pytest-args needs a string"; PYTEST_ARGS=$2; shift ;;
      --keep) KEEP=1 ;;
      --dry-run) DRY_RUN=1 ;;
      -h|--help) usage; exit 0 ;;
      *) usage >&2; die "unknown option '$1'" ;;
    esac
    shift
  done
  (( SETUP || TESTS )) || die "--setup-only and --tests-only together leave nothing to do"
  if [[ $MODE == existing ]]; then
    [[ -n "$KUBECONFIG_PATH" ]] || die "--kubeconfig needs a path"
    if (( ! DRY_RUN )) && [[ ! -r "$KUBECONFIG_PATH" ]]; then
      die "--kubeconfig $KUBECONFIG_PATH: no readable file there"
    fi
    if (( SETUP && BUILD && ! KIND_LOAD )) && [[ -z "$REGISTRY" ]]; then
      die "with --kubeconfig the cluster must get the images somehow: add --kind-load (a kind cluster), " \
          "--registry REG (push them), or --skip-build with --operator-image/--job-image it can pull"
    fi
  else
    KUBECONFIG_PATH="$WORKDIR/kubeconfig"
  fi
  [[ $CONTAINER_ENGINE == docker || $CONTAINER_ENGINE == podman ]] \
    || die "CONTAINER_ENGINE must be docker or podman (got '$CONTAINER_ENGINE')"
  # kind runs its node on the same engine that builds the images.
  if [[ $CONTAINER_ENGINE == podman ]]; then export KIND_EXPERIMENTAL_PROVIDER=${KIND_EXPERIMENTAL_PROVIDER:-podman}; fi
  local prefix=""
  [[ -n "$REGISTRY" ]] && prefix="$REGISTRY/"
  OPERATOR_IMAGE=${OPERATOR_IMAGE:-${prefix}prism-operator:$IMAGE_TAG}
  WORKER_IMAGE="${prefix}prism-worker:$IMAGE_TAG"
  JOB_IMAGE=${JOB_IMAGE:-${prefix}prism-worker-e2e:$IMAGE_TAG}
  KUBECTL=(kubectl --kubeconfig "$KUBECONFIG_PATH")
  HELM=(helm --kubeconfig "$KUBECONFIG_PATH")
}

preflight() {
  say "preflight"
  need_tool kubectl "the Kubernetes CLI"
  need_tool helm "Helm 3"
  if (( SETUP && BUILD )); then need_tool "$CONTAINER_ENGINE" "a container engine builds the images"; fi
  if [[ $MODE == kind ]] || (( KIND_LOAD )); then
    need_tool kind "kind creates the cluster"
    if (( ! DRY_RUN )); then
      local have
      have=$(kind version | sed -n 's/^kind v\([0-9.]*\).*/\1/p')
      version_at_least "${have:-0}" "$KIND_MIN_VERSION" \
        || die "kind $KIND_MIN_VERSION or newer is needed for $KIND_NODE_IMAGE (found '${have:-unknown}')"
    fi
  fi
  if (( SETUP )); then
    if (( BUILD )); then
      need_file Dockerfile "the operator image (issue 3)"
      need_file worker_image/Dockerfile "the worker image (issue 5)"
    fi
    need_file manifests/kustomization.yaml "the operator's kustomize base (issue 3)"
  fi
  run mkdir -p "$WORKDIR"
}

build_images() {
  say "build images ($CONTAINER_ENGINE)"
  run "$CONTAINER_ENGINE" build -t "$OPERATOR_IMAGE" -f "$ROOT/Dockerfile" "$ROOT"
  run "$CONTAINER_ENGINE" build -t "$WORKER_IMAGE" -f "$ROOT/worker_image/Dockerfile" "$ROOT"
  # The worker image plus the suite's plug-in extractors (e2e/plugins), which the jobs use to
  # pace themselves and to fail their first attempt on purpose.
  run "$CONTAINER_ENGINE" build -t "$JOB_IMAGE" --build-arg "BASE_IMAGE=$WORKER_IMAGE" \
    -f "$ROOT/e2e/worker/Dockerfile" "$ROOT/e2e"
}

create_cluster() {
  say "kind cluster '$CLUSTER_NAME'"
  if (( ! DRY_RUN )) && kind get clusters 2>/dev/null | grep -qx "$CLUSTER_NAME"; then
    printf 'reusing the existing kind cluster %s\n' "$CLUSTER_NAME"
    run kind export kubeconfig --name "$CLUSTER_NAME" --kubeconfig "$KUBECONFIG_PATH"
    return 0
  fi
  run kind create cluster --name "$CLUSTER_NAME" --image "$KIND_NODE_IMAGE" \
    --config "$ROOT/e2e/kind/cluster.yaml" --kubeconfig "$KUBECONFIG_PATH" --wait 180s
  CREATED_CLUSTER=1
}

publish_images() {
  if [[ -n "$REGISTRY" ]]; then
    say "push images to $REGISTRY"
    run "$CONTAINER_ENGINE" push "$OPERATOR_IMAGE"
    run "$CONTAINER_ENGINE" push "$JOB_IMAGE"
    return 0
  fi
  say "load images into kind cluster '$CLUSTER_NAME'"
  if [[ $CONTAINER_ENGINE == docker ]]; then
    run kind load docker-image "$OPERATOR_IMAGE" "$JOB_IMAGE" --name "$CLUSTER_NAME"
  else
    run podman save -o "$WORKDIR/images.tar" "$OPERATOR_IMAGE" "$JOB_IMAGE"
    run kind load image-archive "$WORKDIR/images.tar" --name "$CLUSTER_NAME"
  fi
}

install_kuberay() {
  say "KubeRay operator $KUBERAY_CHART_VERSION (Helm)"
  run "${HELM[@]}" upgrade --install kuberay-operator kuberay-operator --repo "$KUBERAY_CHART_REPO" \
    --version "$KUBERAY_CHART_VERSION" --namespace kuberay-system --create-namespace --wait --timeout 10m
  wait_until "the RayCluster and RayJob CRDs to be established" 120 \
    "${KUBECTL[@]}" wait --for=condition=Established --timeout=10s \
    crd/rayclusters.ray.io crd/rayjobs.ray.io
}

install_qdrant() {
  say "Qdrant $QDRANT_CHART_VERSION (Helm)"
  run "${HELM[@]}" upgrade --install qdrant qdrant --repo "$QDRANT_CHART_REPO" \
    --version "$QDRANT_CHART_VERSION" --namespace qdrant --create-namespace \
    --values "$ROOT/e2e/helm/qdrant-values.yaml" --wait --timeout 10m
}

install_minio() {
  say "MinIO ($MINIO_IMAGE) and the prism-e2e namespace"
  run "${KUBECTL[@]}" apply -k "$ROOT/e2e/manifests"
  printf 'waiting up to 300s for deployment minio/minio to roll out\n'
  run "${KUBECTL[@]}" -n minio rollout status deployment/minio --timeout=300s
}

install_prism() {
  say "Prism operator ($OPERATOR_IMAGE)"
  run "${KUBECTL[@]}" apply -k "$ROOT/manifests"
  printf 'waiting up to 60s for the ExtractionJob CRD to be established\n'
  run "${KUBECTL[@]}" wait --for=condition=Established --timeout=60s crd/extractionjobs.prism.dev
  local deploy="deployment/$OPERATOR_DEPLOYMENT"
  run "${KUBECTL[@]}" -n "$OPERATOR_NAMESPACE" set image "$deploy" "*=$OPERATOR_IMAGE"
  # A kind-loaded image exists only on the node: never try to pull it.
  run "${KUBECTL[@]}" -n "$OPERATOR_NAMESPACE" patch "$deploy" --type=json \
    -p '[{"op": "add", "path": "/spec/template/spec/containers/0/imagePullPolicy", "value": "IfNotPresent"}]'
  run "${KUBECTL[@]}" -n "$OPERATOR_NAMESPACE" set env "$deploy" \
    "PRISM_TIMER_INTERVAL=$OPERATOR_TIMER_INTERVAL"
  printf 'waiting up to 300s for %s/%s to roll out\n' "$OPERATOR_NAMESPACE" "$deploy"
  run "${KUBECTL[@]}" -n "$OPERATOR_NAMESPACE" rollout status "$deploy" --timeout=300s
}

run_tests() {
  say "e2e tests"
  local python="$ROOT/.venv/bin/python"
  [[ -x "$python" ]] || python=python3
  local -a extra=()
  # Word splitting is the point: --pytest-args carries several arguments.
  # shellcheck disable=SC2206
  [[ -n "$PYTEST_ARGS" ]] && extra=($PYTEST_ARGS)
  run "$python" -m pytest "$ROOT/e2e" -m e2e -v -rA \
    --kubeconfig "$KUBECONFIG_PATH" --job-image "$JOB_IMAGE" \
    --operator-namespace "$OPERATOR_NAMESPACE" --operator-deployment "$OPERATOR_DEPLOYMENT" \
    ${extra[@]+"${extra[@]}"}
}

diagnostics() {
  [[ -r "$KUBECONFIG_PATH" ]] || return 0
  local out="$WORKDIR/diagnostics.txt"
  {
    "${KUBECTL[@]}" get extractionjobs,rayclusters,rayjobs,pods -A -o wide
    "${KUBECTL[@]}" get events -A --sort-by=.lastTimestamp | tail -n 60
    "${KUBECTL[@]}" -n "$OPERATOR_NAMESPACE" logs "deployment/$OPERATOR_DEPLOYMENT" --tail=200
    "${KUBECTL[@]}" -n kuberay-system logs deployment/kuberay-operator --tail=100
  } >"$out" 2>&1 || true
  printf 'diagnostics (cluster objects, events, operator logs): %s\n' "$out" >&2
}

on_exit() {
  local rc=$?
  if (( DRY_RUN )); then exit "$rc"; fi
  (( rc == 0 )) || diagnostics
  if (( CREATED_CLUSTER && ! KEEP )); then
    say "delete kind cluster '$CLUSTER_NAME' (--keep keeps it)"
    kind delete cluster --name "$CLUSTER_NAME" || true
  elif [[ $MODE == kind ]]; then
    printf 'the cluster stays: KUBECONFIG=%s; remove it with: kind delete cluster --name %s\n' \
      "$KUBECONFIG_PATH" "$CLUSTER_NAME"
  fi
  exit "$rc"
}

main() {
  parse_args "$@"
  trap on_exit EXIT
  if (( DRY_RUN )); then printf '# dry run: nothing below is executed\n'; fi
  preflight
  if (( SETUP )); then
    if (( BUILD )); then build_images; fi
    if [[ $MODE == kind ]]; then create_cluster; fi
    # Pushed images are pushed only when built here; kind gets the local images either way.
    if [[ -n "$REGISTRY" ]]; then
      if (( BUILD )); then publish_images; fi
    elif [[ $MODE == kind ]] || (( KIND_LOAD )); then
      publish_images
    fi
    install_kuberay
    install_qdrant
    install_minio
    install_prism
  fi
  if (( TESTS )); then run_tests; fi
  say "done"
}

main "$@"
