// Command promrules checks Prometheus rule files the way `promtool check rules` does, with
// Prometheus's own rule parser: the YAML shape, every PromQL expression, durations, label names
// and the templates of labels and annotations. It prints each problem and exits 1 if there was any.
//
// promtool itself pulls in most of Prometheus; this is the part the chart's tests need.
package main

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: promrules FILE...")
		os.Exit(2)
	}
	failed := false
	for _, file := range os.Args[1:] {
		// false: unknown fields are errors, as for promtool.
		_, errs := rulefmt.ParseFile(file, false, model.UTF8Validation, parser.NewParser(parser.Options{}), slog.Default())
		for _, err := range errs {
			fmt.Println(err)
			failed = true
		}
	}
	if failed {
		os.Exit(1)
	}
}
