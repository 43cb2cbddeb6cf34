// kstatus-check: prints what Flux (and kubectl's and cli-utils' waiters) read as the
// status of Kubernetes objects, with sigs.k8s.io/cli-utils/pkg/kstatus.
//
//	kstatus-check FILE.json...   one line per file: FILE<TAB>STATUS<TAB>MESSAGE
//	kstatus-check --version
package main

import (
	"fmt"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

var version = "unknown"

func main() {
	if len(os.Args) == 2 && os.Args[1] == "--version" {
		fmt.Println("kstatus-check cli-utils", version)
		return
	}
	code := 0
	for _, path := range os.Args[1:] {
		data, err := os.ReadFile(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
			continue
		}
		// Unstructured's own decoding: integers stay int64, as kstatus expects.
		obj := &unstructured.Unstructured{}
		if err := obj.UnmarshalJSON(data); err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", path, err)
			code = 1
			continue
		}
		result, err := status.Compute(obj)
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", path, err)
			code = 1
			continue
		}
		fmt.Printf("%s\t%s\t%s\n", path, result.Status, result.Message)
	}
	os.Exit(code)
}
