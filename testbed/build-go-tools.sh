#!/usr/bin/env bash
# Builds the test bed's tools from their Go modules through the Go module proxy and
# caches each binary by version under $PKG_TESTBED_CACHE (default ~/.cache/pkg-operator),
# outside any clone, so only a new machine pays for the build.
#
#   testbed/build-go-tools.sh [kube-apiserver|kubectl|etcd|opa|opa-wasm-query|helm|kstatus|promtool|all]...
#
# kube-apiserver and etcd cannot be built with `go install pkg@version`: their modules
# carry `replace` directives. Each is built from a small wrapper module written here,
# whose go.mod pins every k8s.io staging module to the matching v0.X.Y release.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
. "$here/versions.env"
cache=${PKG_TESTBED_CACHE:-$HOME/.cache/pkg-operator}
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false
export GOTOOLCHAIN=${GOTOOLCHAIN:-auto}
command -v go >/dev/null || { echo "build-go-tools: 'go' is not on PATH; install Go >= 1.24 or provide the binaries (see README)" >&2; exit 1; }

log() { printf '[build-go-tools] %s\n' "$*" >&2; }

dest() { echo "$cache/bin/$1-$2"; }   # dest NAME VERSION -> folder holding the binary

install_bin() {  # install_bin BUILT_FILE NAME VERSION
  local d; d=$(dest "$2" "$3"); mkdir -p "$d"
  install -m 0755 "$1" "$d/$2.tmp" && mv -f "$d/$2.tmp" "$d/$2"
  log "cached $d/$2"
}

have() { [ -x "$(dest "$1" "$2")/$1" ]; }

k8s_wrapper() {  # prepares the wrapper module for kube-apiserver and kubectl, prints its dir
  local v=$KUBERNETES_VERSION minor=${KUBERNETES_VERSION#v1.} work
  local staging="v0.${minor}"
  work="$cache/src/k8s-wrapper-$v"
  if [ ! -f "$work/.ready" ]; then
    rm -rf "$work"; mkdir -p "$work/kube-apiserver" "$work/kubectl"
    cat >"$work/kube-apiserver/main.go" <<'GO'
// The kube-apiserver command, as cmd/kube-apiserver/apiserver.go has it.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	os.Exit(cli.Run(app.NewAPIServerCommand()))
}
GO
    cat >"$work/kubectl/main.go" <<'GO'
// The kubectl command, as cmd/kubectl/kubectl.go has it.
package main

import (
	"k8s.io/component-base/cli"
	"k8s.io/kubectl/pkg/cmd"
	"k8s.io/kubectl/pkg/cmd/util"
	_ "k8s.io/client-go/plugin/pkg/client/auth"
)

func main() {
	command := cmd.NewDefaultKubectlCommand()
	if err := cli.RunNoErrOutput(command); err != nil {
		util.CheckErr(err)
	}
}
GO
    (
      cd "$work"
      go mod init pkg-testbed/k8s >/dev/null 2>&1
      # Every k8s.io/* module that k8s.io/kubernetes replaces with a local staging path.
      local gomod mods
      gomod=$(go mod download -json "k8s.io/kubernetes@$v" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
      mods=$(awk '/=> \.\/staging/ {print $1}' "$gomod" | sort -u)
      [ -n "$mods" ] || { log "found no staging modules in $gomod"; exit 1; }
      for m in $mods; do go mod edit "-replace=$m=$m@$staging"; done
      go get "k8s.io/kubernetes@$v"
      go mod tidy
    )
    touch "$work/.ready"
  fi
  echo "$work"
}

build_k8s() {  # build_k8s kube-apiserver|kubectl
  local name=$1 v=$KUBERNETES_VERSION work
  have "$name" "$v" && { log "$name $v already cached"; return; }
  work=$(k8s_wrapper)
  log "building $name $v (first build takes several minutes)"
  local ld="-s -w -X k8s.io/component-base/version.gitVersion=$v -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${v#v1.}"
  ld="$ld -X k8s.io/client-go/pkg/version.gitVersion=$v"
  (cd "$work" && go build -trimpath -ldflags "$ld" -o "$work/out/$name" "./$name")
  install_bin "$work/out/$name" "$name" "$v"
}

build_etcd() {
  local v=$ETCD_VERSION work
  have etcd "$v" && { log "etcd $v already cached"; return; }
  work="$cache/src/etcd-wrapper-$v"
  rm -rf "$work"; mkdir -p "$work"
  cat >"$work/main.go" <<'GO'
// The etcd server, as server/main.go has it.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
GO
  log "building etcd $v"
  (
    cd "$work"
    go mod init pkg-testbed/etcd >/dev/null 2>&1
    go get "go.etcd.io/etcd/server/v3@$v"
    go mod tidy
    go build -trimpath -ldflags "-s -w" -o "$work/etcd" .
  )
  install_bin "$work/etcd" etcd "$v"
}

build_goinstall() {  # build_goinstall NAME VERSION PACKAGE
  local name=$1 v=$2 pkg=$3 gobin
  have "$name" "$v" && { log "$name $v already cached"; return; }
  log "building $name $v"
  gobin=$(mktemp -d)
  GOBIN="$gobin" go install -trimpath -ldflags "-s -w" "$pkg@$v"
  install_bin "$gobin/$name" "$name" "$v"
  rm -rf "$gobin"
}

build_kstatus() {  # testbed/kstatus/main.go against sigs.k8s.io/cli-utils (Flux's kstatus)
  local v=$KSTATUS_VERSION work
  have kstatus "$v" && { log "kstatus $v already cached"; return; }
  work="$cache/src/kstatus-$v"
  rm -rf "$work"; mkdir -p "$work"
  cp "$here/kstatus/main.go" "$work/main.go"
  log "building kstatus (cli-utils $v)"
  (
    cd "$work"
    go mod init pkg-testbed/kstatus >/dev/null 2>&1
    go get "sigs.k8s.io/cli-utils@$v"
    go mod tidy
    go build -trimpath -ldflags "-s -w -X main.version=$v" -o "$work/kstatus" .
  )
  install_bin "$work/kstatus" kstatus "$v"
}

build_opa_wasm_query() {  # testbed/opa-wasm-query/main.go against OPA's Go module (the conformance runner)
  local v=$OPA_VERSION work
  have opa-wasm-query "$v" && { log "opa-wasm-query $v already cached"; return; }
  work="$cache/src/opa-wasm-query-$v"
  rm -rf "$work"; mkdir -p "$work"
  cp "$here/opa-wasm-query/main.go" "$work/main.go"
  log "building opa-wasm-query (opa $v)"
  (
    cd "$work"
    go mod init pkg-testbed/opa-wasm-query >/dev/null 2>&1
    go get "github.com/open-policy-agent/opa@$v"
    go mod tidy
    go build -trimpath -ldflags "-s -w" -o "$work/opa-wasm-query" .
  )
  install_bin "$work/opa-wasm-query" opa-wasm-query "$v"
}

build_promtool() {  # only cmd/promtool of the prometheus module, without the cloud SDKs
  local v=$PROMETHEUS_VERSION gobin release
  have promtool "$v" && { log "promtool $v already cached"; return; }
  # The module version v0.3XX.Y is Prometheus release 3.XX.Y; promtool prints the release.
  release=$(echo "${v#v0.}" | sed -E 's/^3([0-9]{2})\./3.\1./; s/^3\.0([0-9])\./3.\1./')
  log "building promtool $v (Prometheus $release)"
  gobin=$(mktemp -d)
  # remove_all_sd leaves out the cloud service discoveries, which rule checks never use:
  # 247 of promtool's 1364 packages, but the largest (the generated Azure, AWS and GCE
  # SDKs) that kept an untagged cold build going past 14 minutes on two busy CPUs; with the
  # tag a cold compile took under 8 minutes there (4.6 CPU-minutes).
  GOBIN="$gobin" go install -trimpath -tags remove_all_sd \
    -ldflags "-s -w -X github.com/prometheus/common/version.Version=$release" \
    "github.com/prometheus/prometheus/cmd/promtool@$v"
  install_bin "$gobin/promtool" promtool "$v"
  rm -rf "$gobin"
}

targets=("$@"); [ ${#targets[@]} -gt 0 ] || targets=(all)
for t in "${targets[@]}"; do
  case "$t" in
    kube-apiserver|kubectl) build_k8s "$t" ;;
    etcd) build_etcd ;;
    opa) build_goinstall opa "$OPA_VERSION" github.com/open-policy-agent/opa ;;
    helm) build_goinstall helm "$HELM_VERSION" helm.sh/helm/v3/cmd/helm ;;
    kstatus) build_kstatus ;;
    opa-wasm-query) build_opa_wasm_query ;;
    promtool) build_promtool ;;
    all) build_etcd; build_k8s kube-apiserver; build_k8s kubectl
         build_goinstall opa "$OPA_VERSION" github.com/open-policy-agent/opa
         build_goinstall helm "$HELM_VERSION" helm.sh/helm/v3/cmd/helm
         build_kstatus; build_opa_wasm_query; build_promtool ;;
    *) echo "build-go-tools: unknown tool '$t' (kube-apiserver, kubectl, etcd, opa, opa-wasm-query, helm, kstatus, promtool, all)" >&2; exit 2 ;;
  esac
done
