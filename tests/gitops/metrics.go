package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/textparse"
)

type metricsAnswer struct {
	// Families as the 0.0.4 parser names them (counters keep `_total`).
	Families []string `json:"families"`
	// Sample names seen in the OpenMetrics exposition.
	OpenMetricsSamples []string `json:"openMetricsSamples"`
	Problems           []string `json:"promlintProblems"`
}

func metrics(omFile, textFile string) (*metricsAnswer, error) {
	om, err := os.ReadFile(omFile)
	if err != nil {
		return nil, err
	}
	samples, err := parseOpenMetrics(om)
	if err != nil {
		return nil, fmt.Errorf("OpenMetrics: %w", err)
	}
	text, err := os.ReadFile(textFile)
	if err != nil {
		return nil, err
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(text))
	if err != nil {
		return nil, fmt.Errorf("0.0.4 text: %w", err)
	}
	names := make([]string, 0, len(families))
	for n := range families {
		names = append(names, n)
	}
	sort.Strings(names)
	problems, err := promlint.New(bytes.NewReader(text)).Lint()
	if err != nil {
		return nil, fmt.Errorf("promlint: %w", err)
	}
	ps := []string{}
	for _, p := range problems {
		ps = append(ps, p.Metric+": "+p.Text)
	}
	return &metricsAnswer{Families: names, OpenMetricsSamples: samples, Problems: ps}, nil
}

// parseOpenMetrics uses Prometheus' own scrape parser, which rejects what a
// scrape would reject (missing # EOF, bad types, malformed lines).
func parseOpenMetrics(b []byte) ([]string, error) {
	p := textparse.NewOpenMetricsParser(b, labels.NewSymbolTable())
	seen := map[string]bool{}
	for {
		e, err := p.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		if e == textparse.EntrySeries {
			var l labels.Labels
			p.Labels(&l)
			seen[l.Get("__name__")] = true
		}
	}
	if !strings.HasSuffix(strings.TrimRight(string(b), "\n"), "# EOF") {
		return nil, errors.New("no # EOF line")
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out, nil
}
