// openapi.go serves the OpenAPI document and its rendered page.
package main

import (
	_ "embed"
	"io"
	"net/http"
)

// openAPI is the API's OpenAPI 3.1 document; main_test.go holds it to the route table.
//
//go:embed openapi.json
var openAPI []byte

// handleOpenAPI serves GET /openapi.json.
func handleOpenAPI(w http.ResponseWriter, r *http.Request) {
	writeBody(w, http.StatusOK, openAPI)
}

// handleDocs serves GET /docs: /openapi.json rendered with Swagger UI from a CDN, as FastAPI's /docs does.
func handleDocs(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	io.WriteString(w, `<!doctype html>
<html><head><meta charset="utf-8"><title>Tasks API</title>
<link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui"})</script>
</body></html>
`)
}
