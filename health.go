// health.go answers the liveness and readiness probes.
package main

import "net/http"

// handleHealth serves GET /healthz: the process is alive; no database call.
func handleHealth(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// handleReady serves GET /readyz: 200 when the database answers, else 503.
func handleReady(db *store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := db.ping(r.Context()); err != nil {
			writeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	}
}
