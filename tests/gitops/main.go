// Command gitops-check runs the clients users point at the operator on real
// objects and metrics, so the suite sees what those users see:
//
//	health LUAFILE   < objects.json   kstatus status.Compute and Argo CD's health Lua
//	metrics OM TEXT                   strict OpenMetrics parse, 0.0.4 text parse, promlint
//	promql           < exprs.json     Prometheus' PromQL parser; prints the metric names used
//
// Every answer is JSON on stdout; a failure is a non-zero exit with the
// reason on stderr.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		fail("usage: gitops-check health LUAFILE | metrics OPENMETRICS_FILE TEXT_FILE | promql")
	}
	var out any
	var err error
	switch os.Args[1] {
	case "health":
		if len(os.Args) != 3 {
			fail("usage: gitops-check health LUAFILE < objects.json")
		}
		out, err = health(os.Args[2], os.Stdin)
	case "metrics":
		if len(os.Args) != 4 {
			fail("usage: gitops-check metrics OPENMETRICS_FILE TEXT_FILE")
		}
		out, err = metrics(os.Args[2], os.Args[3])
	case "promql":
		out, err = promql(os.Stdin)
	default:
		fail("unknown command " + os.Args[1])
	}
	if err != nil {
		fail(err.Error())
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		fail(err.Error())
	}
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "gitops-check:", msg)
	os.Exit(1)
}

func readJSON(r io.Reader, v any) error {
	dec := json.NewDecoder(r)
	dec.UseNumber()
	return dec.Decode(v)
}
