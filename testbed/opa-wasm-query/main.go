// opa-wasm-query: compiles a Rego query (with its modules) to a WebAssembly module the
// way OPA's own wasm SDK harness does (internal/wasm/sdk/test/e2e/external_test.go):
// rego.New(rego.Query(q), rego.Module(...)...).Compile(ctx). The query is planned as
// the module's one entrypoint, "eval", whose result is the set of binding objects; it
// is not a rule, so a query reading all of `data` does not read itself, which the
// conformance runner's wrapper rule (`opa build -e`) cannot avoid. Like the harness, it
// declares the test-only builtin `test.sleep(duration)` (its addTestSleepBuiltin), which
// the module then imports from the host.
//
//	opa-wasm-query < {"query": "...", "modules": ["..."], "rego_version": "v0"|"v1",
//	                  "experimental_keywords": false}   > policy.wasm
//	opa-wasm-query --version
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/types"
	"github.com/open-policy-agent/opa/v1/version"
)

type request struct {
	Query                string   `json:"query"`
	Modules              []string `json:"modules"`
	RegoVersion          string   `json:"rego_version"`
	ExperimentalKeywords bool     `json:"experimental_keywords"`
}

// addTestSleepBuiltin as OPA's harness has it (external_test.go).
func addTestSleepBuiltin() {
	rego.RegisterBuiltin1(&rego.Function{
		Name: "test.sleep",
		Decl: types.NewFunction(types.Args(types.S), types.NewNull()),
	}, func(_ rego.BuiltinContext, op *ast.Term) (*ast.Term, error) {
		d, _ := time.ParseDuration(string(op.Value.(ast.String)))
		time.Sleep(d)
		return ast.NullTerm(), nil
	})
}

func main() {
	if len(os.Args) == 2 && os.Args[1] == "--version" {
		fmt.Println("opa-wasm-query opa", "v"+version.Version)
		return
	}
	addTestSleepBuiltin()
	var req request
	if err := json.NewDecoder(os.Stdin).Decode(&req); err != nil {
		fmt.Fprintln(os.Stderr, "opa-wasm-query: reading the request on stdin:", err)
		os.Exit(2)
	}
	regoVersion := ast.RegoV1
	if req.RegoVersion == "v0" {
		regoVersion = ast.RegoV0
	}
	caps := ast.CapabilitiesForThisVersion(ast.CapabilitiesExperimentalKeywords(req.ExperimentalKeywords))
	opts := []func(*rego.Rego){
		rego.Query(req.Query),
		rego.SetRegoVersion(regoVersion),
		rego.Capabilities(caps),
	}
	for i, text := range req.Modules {
		opts = append(opts, rego.Module(fmt.Sprintf("module-%d.rego", i), text))
	}
	cr, err := rego.New(opts...).Compile(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if _, err := os.Stdout.Write(cr.Bytes); err != nil {
		fmt.Fprintln(os.Stderr, "opa-wasm-query: writing the module:", err)
		os.Exit(1)
	}
}
