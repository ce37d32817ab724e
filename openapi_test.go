// openapi_test.go tests that /openapi.json matches the route table, and the /docs page.
package main

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"slices"
	"strings"
	"testing"
)

// TestOpenAPIMatchesRoutes fails when a route in the route table is missing
// from openapi.json, or the document names a route the server lacks.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(openAPI, &doc); err != nil || !strings.HasPrefix(doc.OpenAPI, "3.1") {
		t.Fatalf("openapi.json: %v (version %q)", err, doc.OpenAPI)
	}
	var documented []string
	for path, item := range doc.Paths {
		for method := range item {
			if method != "parameters" {
				documented = append(documented, strings.ToUpper(method)+" "+path)
			}
		}
	}
	served := slices.Clone(newServer(slog.New(slog.DiscardHandler), testDB, testConfig(hsAuth())).routes)
	slices.Sort(documented)
	slices.Sort(served)
	if !slices.Equal(documented, served) {
		t.Fatalf("openapi.json documents\n%s\nthe server routes\n%s", strings.Join(documented, "\n"), strings.Join(served, "\n"))
	}

	e := newEnv(t, hsAuth())
	r := e.do("GET", "/openapi.json", "", nil)
	if r.status != 200 || !bytes.Equal(r.body, openAPI) || r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /openapi.json = %d %q", r.status, r.header.Get("Content-Type"))
	}
	r = e.do("GET", "/docs", "", nil)
	if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/html") || !bytes.Contains(r.body, []byte(`"/openapi.json"`)) {
		t.Fatalf("GET /docs = %s", r)
	}
}

// TestOpenAPISortKeys holds the document's sort values to listSorts, the one table of them.
func TestOpenAPISortKeys(t *testing.T) {
	var doc struct {
		Components struct {
			Parameters map[string]struct {
				Name   string
				Schema struct{ Enum []string }
			}
		}
	}
	if err := json.Unmarshal(openAPI, &doc); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range listSorts {
		names = append(names, s.name)
	}
	if got := doc.Components.Parameters["Sort"]; got.Name != "sort" || !slices.Equal(got.Schema.Enum, names) {
		t.Fatalf("openapi.json's sort parameter = %+v, want the enum %v", got, names)
	}
}
