package main

import (
	"fmt"
	"io"
	"sort"

	"github.com/prometheus/prometheus/promql/parser"
)

type promqlAnswer struct {
	Expr    string   `json:"expr"`
	Metrics []string `json:"metrics"`
}

// promql parses each expression of a JSON string array and lists the metric
// names its selectors name, so a test can compare them with /metrics.
func promql(in io.Reader) ([]promqlAnswer, error) {
	var exprs []string
	if err := readJSON(in, &exprs); err != nil {
		return nil, fmt.Errorf("expressions: %w", err)
	}
	out := []promqlAnswer{}
	for _, e := range exprs {
		expr, err := parser.ParseExpr(e)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", e, err)
		}
		names := map[string]bool{}
		parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
			if vs, ok := n.(*parser.VectorSelector); ok {
				if vs.Name == "" {
					return fmt.Errorf("%q: a selector without a metric name", e)
				}
				names[vs.Name] = true
			}
			return nil
		})
		list := make([]string, 0, len(names))
		for n := range names {
			list = append(list, n)
		}
		sort.Strings(list)
		out = append(out, promqlAnswer{Expr: e, Metrics: list})
	}
	return out, nil
}
