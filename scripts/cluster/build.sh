#!/usr/bin/env bash
# Build (or reuse) the real control-plane binaries, and helm, from their Go modules, pinned in versions.env.
#   scripts/cluster/build.sh            build whatever is missing, print the bin directory
#   scripts/cluster/build.sh --check    exit 1 if anything is missing (builds nothing)
# Each binary lands in $PRISM_CACHE/control-plane/<name>-<version>/<name>, written atomically,
# so a warm machine rebuilds nothing and a killed build never leaves a half binary behind.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=scripts/cluster/versions.env
source "$here/versions.env"
cache="${PRISM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/prism}/control-plane"
bin="$cache/bin"
mkdir -p "$cache" "$bin"

# Go >= 1.27 defaults to encoding/json v2, with which kube-apiserver serves broken OpenAPI
# (docs/platform-facts.md). On 1.26 the experiment is off already; saying so is harmless.
go_minor="$(go env GOVERSION | sed -E 's/^go1\.([0-9]+).*/\1/')"
if [ "$go_minor" -ge 27 ]; then export GOEXPERIMENT=nojsonv2; fi
export CGO_ENABLED=0 GOFLAGS="-mod=mod -trimpath" GOTOOLCHAIN=local
# 2 cores: two packages at a time keeps memory near 3 GiB for kube-apiserver's link.
build_flags=(-p "${PRISM_GO_BUILD_P:-2}" -ldflags "-s -w")
# Kubernetes binaries report their version from ldflags (as its own build does); without them the
# API server says v0.0.0-master and clients that parse it (Kueue) refuse to start.
k8s_minor="${KUBERNETES_VERSION#v1.}"; k8s_minor="${k8s_minor%%.*}"
k8s_ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  k8s_ldflags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$k8s_minor"
  k8s_ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

have() { [ -x "$cache/$1-$2/$1" ]; }

link() { ln -sfn "$cache/$1-$2/$1" "$bin/$1"; }

# go install-able modules (no replace directives): build in a scratch GOBIN, then move.
install_module() { # name version package@version [extra ldflags]
  local name="$1" version="$2" pkg="$3" out="$cache/$1-$2" tmp flags=("${build_flags[@]}")
  if have "$name" "$version"; then link "$name" "$version"; return; fi
  echo "building $name $version ($pkg)" >&2
  if [ -n "${4:-}" ]; then flags=(-p "${PRISM_GO_BUILD_P:-2}" -ldflags "-s -w $4"); fi
  tmp="$(mktemp -d "$cache/.tmp-$name-XXXX")"
  GOBIN="$tmp" go install "${flags[@]}" "$pkg"
  mkdir -p "$out"
  mv "$tmp/$(basename "${pkg%@*}")" "$out/$name.new" && mv "$out/$name.new" "$out/$name"
  rm -rf "$tmp"
  link "$name" "$version"
}

# Modules whose go.mod has replace directives (k8s.io/kubernetes, etcd): a wrapper module
# requires them and pins each replaced module to its published version, then builds the command.
build_wrapped() { # name version module module-version package [replace-module version]...
  local name="$1" version="$2" module="$3" modversion="$4" pkg="$5" out="$cache/$1-$2" work
  shift 5
  if have "$name" "$version"; then link "$name" "$version"; return; fi
  echo "building $name $version ($pkg)" >&2
  work="$cache/.mod-${module//\//_}-$modversion"
  mkdir -p "$work"
  if [ ! -f "$work/go.mod" ]; then
    (cd "$work" && go mod init prism.dev/control-plane-build >/dev/null 2>&1 \
      && go mod edit -require="$module@$modversion" "$@") || { rm -rf "$work"; return 1; }
  fi
  mkdir -p "$out"
  local flags=("${build_flags[@]}")
  if [ "$module" = k8s.io/kubernetes ]; then flags=(-p "${PRISM_GO_BUILD_P:-2}" -ldflags "$k8s_ldflags"); fi
  (cd "$work" && go build "${flags[@]}" -o "$out/$name.new" "$pkg")
  mv "$out/$name.new" "$out/$name"
  link "$name" "$version"
}

# Every k8s.io staging module k8s.io/kubernetes replaces, pinned to its v0.x twin.
k8s_replaces() {
  local gomod staging_v="v0.${KUBERNETES_VERSION#v1.}"
  gomod="$(go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" \
    | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
  sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "$gomod" \
    | while read -r m; do echo "-replace=$m=$m@$staging_v"; done
}

etcd_replaces() {
  local v="$ETCD_VERSION"
  for m in api/v3 client/pkg/v3 client/v3 pkg/v3 raft/v3; do
    echo "-replace=go.etcd.io/etcd/$m=go.etcd.io/etcd/$m@$v"
  done
  # client/v2 is versioned v2.305.x alongside etcd v3.5.x.
  echo "-replace=go.etcd.io/etcd/client/v2=go.etcd.io/etcd/client/v2@v2.305.${v##*.}"
}

missing=0
for c in "kube-apiserver $KUBERNETES_VERSION" "kube-controller-manager $KUBERNETES_VERSION" \
  "kube-scheduler $KUBERNETES_VERSION" \
  "etcd $ETCD_VERSION" "kuberay-operator $KUBERAY_VERSION" "kueue $KUEUE_VERSION" \
  "kwok $KWOK_VERSION" "helm $HELM_VERSION"; do
  # shellcheck disable=SC2086
  have $c || { missing=1; [ "${1:-}" = --check ] && echo "missing: $c" >&2; }
done
if ! command -v kubectl >/dev/null 2>&1 && ! have kubectl "$KUBERNETES_VERSION"; then
  missing=1; [ "${1:-}" = --check ] && echo "missing: kubectl" >&2
fi
if [ "${1:-}" = --check ]; then exit "$missing"; fi

if [ "$missing" = 1 ]; then
  command -v go >/dev/null || { echo "error: Go is needed to build the control plane (go.dev/doc/install)" >&2; exit 1; }
fi

kr=()
if ! { have kube-apiserver "$KUBERNETES_VERSION" && have kube-controller-manager "$KUBERNETES_VERSION" \
  && have kube-scheduler "$KUBERNETES_VERSION" && { command -v kubectl >/dev/null || have kubectl "$KUBERNETES_VERSION"; }; }; then
  mapfile -t kr < <(k8s_replaces)
fi
mapfile -t er < <(etcd_replaces)
build_wrapped etcd "$ETCD_VERSION" go.etcd.io/etcd/server/v3 "$ETCD_VERSION" go.etcd.io/etcd/server/v3 "${er[@]}"
install_module kwok "$KWOK_VERSION" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
install_module kuberay-operator "$KUBERAY_VERSION" "github.com/ray-project/kuberay/ray-operator@$KUBERAY_VERSION"
install_module kueue "$KUEUE_VERSION" "sigs.k8s.io/kueue/cmd/kueue@$KUEUE_VERSION"
# helm renders and installs charts/prism-operator in the tests (its go.mod has no replace directives).
# The ldflags of helm's own Makefile: without them it reports version v3.22 and renders and lints for
# Kubernetes 1.20 (.Capabilities.KubeVersion) instead of its client-go's 1.x.
helm_ldflags() {
  local gomod minor
  gomod="$(go mod download -json "helm.sh/helm/v3@$HELM_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
  minor="$(sed -n 's#^\s*k8s.io/client-go v0\.\([0-9]*\)\..*#\1#p' "$gomod")"
  [ -n "$minor" ] || { echo "error: no k8s.io/client-go in helm $HELM_VERSION's go.mod ($gomod)" >&2; return 1; }
  echo "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    echo "-X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$minor"
  done
}
if have helm "$HELM_VERSION"; then
  link helm "$HELM_VERSION"
else
  hl="$(helm_ldflags | tr '\n' ' ')"
  install_module helm "$HELM_VERSION" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" "$hl"
fi
build_wrapped kube-apiserver "$KUBERNETES_VERSION" k8s.io/kubernetes "$KUBERNETES_VERSION" \
  k8s.io/kubernetes/cmd/kube-apiserver "${kr[@]}"
build_wrapped kube-controller-manager "$KUBERNETES_VERSION" k8s.io/kubernetes "$KUBERNETES_VERSION" \
  k8s.io/kubernetes/cmd/kube-controller-manager "${kr[@]}"
build_wrapped kube-scheduler "$KUBERNETES_VERSION" k8s.io/kubernetes "$KUBERNETES_VERSION" \
  k8s.io/kubernetes/cmd/kube-scheduler "${kr[@]}"
# kubectl: the machine's own when it has one (any client within the supported skew), else built here.
if ! command -v kubectl >/dev/null 2>&1; then
  build_wrapped kubectl "$KUBERNETES_VERSION" k8s.io/kubernetes "$KUBERNETES_VERSION" \
    k8s.io/kubernetes/cmd/kubectl "${kr[@]}"
fi
echo "$bin"
