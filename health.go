// health.go answers the liveness and readiness probes.
package main

import "net/http"

// handleHealth serves GET /healthz: the process is alive; no database call.
func handleHealth(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// handleReady serves GET /readyz: 200 when the database answers and, with a
// JWKS configured, its key set has been fetched once; else 503, the cause on the log line.
func handleReady(db *store, v *verifier) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		err := db.ping(r.Context())
		if err == nil && v.jwks != nil {
			err = v.jwks.ready()
		}
		if err != nil {
			writeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	}
}
