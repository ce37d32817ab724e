// events.go holds the live stream, GET /api/{user_id}/events: the change feed as server-sent events.
package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// Stream timings.
const (
	streamPoll      = 500 * time.Millisecond // how often live.go's watcher reads the versions of users with open streams when it cannot listen
	streamSafety    = 30 * time.Second       // how long a stream's reads of the feed may fail before it ends
	streamMaxAge    = 5 * time.Minute        // how long a stream lasts: its client reconnects with a fresh token
	streamHeartbeat = 15 * time.Second       // the silence after which a comment keeps proxies from cutting a stream (the EventSource spec suggests about 15 s)
	streamWriteWait = 10 * time.Second       // how long one write may take
	streamRetry     = 3 * time.Second        // the reconnection delay clients are told (SSE's retry field)
)

// handleEvents serves GET /api/{user_id}/events: the user's change feed as server-sent
// events, each with a feed cursor as its id and a page of the feed as its data
// (compact JSON: one line, as a data field must be). Last-Event-ID resumes after that
// cursor; without it the stream starts with a first sync. A cursor the feed cannot go
// on from ends the stream with an event "reset", data {"detail": ...}: the client
// syncs from scratch. The stream reads the feed when the watcher says it moved, and after
// each comment it sends at streamHeartbeat of silence. It ends when the client goes, the
// server shuts down, the token expires (until: its exp and clockLeeway), streamMaxAge
// has passed (so that a token revoked since stops reading), or the database has failed
// it for streamSafety: the client reconnects with Last-Event-ID and a fresh token.
func handleEvents(db *store, live *streams) streamHandler {
	return func(w http.ResponseWriter, r *http.Request, userID string, until time.Time) {
		now, id := time.Now(), r.Header.Get("Last-Event-ID")
		cursor, first := feedCursor{-1, now, -1, userTag(userID)}, id == ""
		if !first {
			var msg string
			if cursor, msg = parseFeedCursor(id, userID, now); msg != "" {
				writeError(w, r, validationError{{[]any{"header", "Last-Event-ID"}, msg, "cursor_invalid"}})
				return
			}
		}
		h := w.Header()
		h.Set("Content-Type", "text/event-stream")
		h.Set("X-Accel-Buffering", "no")                 // nginx: pass each event on at once
		h.Set("Cache-Control", "no-store, no-transform") // compressing proxies (Express's compression()) too
		if r.Method == http.MethodHead {                 // the headers a stream would have, and no stream
			w.WriteHeader(http.StatusOK)
			return
		}
		if err := live.open(userID); err != nil { // load shed on purpose: not an error to log
			h.Set("Retry-After", strconv.Itoa(int(streamRetry/time.Second)))
			writeJSON(w, err.status, map[string]string{"detail": err.detail})
			return
		}
		defer live.release(userID)

		// ctx is the stream's life, as above; a timer ends it, as a deadline would reach statements (store.bound).
		// Each write has its own deadline (WriteTimeout bounds requests), which a shutdown brings forward.
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		expire := time.AfterFunc(min(streamMaxAge, time.Until(until)), cancel)
		defer expire.Stop()
		rc := http.NewResponseController(w)
		stop := context.AfterFunc(live.shutdown, func() { rc.SetWriteDeadline(time.Now()); cancel() })
		defer stop()
		w.WriteHeader(http.StatusOK)
		heartbeat := time.NewTimer(live.heartbeat)
		defer heartbeat.Stop()
		send := func(b []byte) bool { // and the silence the heartbeat waits for starts again
			// The deadline first: a shutdown that this look misses sets its own after it.
			rc.SetWriteDeadline(time.Now().Add(live.writeWait))
			if live.shutdown.Err() != nil {
				return false
			}
			heartbeat.Reset(live.heartbeat)
			_, err := w.Write(b)
			return err == nil && rc.Flush() == nil
		}
		if !send([]byte("retry: " + strconv.Itoa(int(streamRetry/time.Millisecond)) + "\n\n")) {
			return
		}
		var retry <-chan time.Time // after a failed read
		var failingSince time.Time
		for {
			changed := live.changedFor(userID)            // before the read: a write after it wakes this stream
			for more := true; more && ctx.Err() == nil; { // every page there is now
				page, err := readFeed(ctx, db, userID, cursor, first, maxFeedLimit, time.Now(), live.retention)
				if gone, ok := errors.AsType[*statusError](err); ok && gone.status == http.StatusGone {
					send(fmt.Appendf(nil, "event: reset\ndata: {\"detail\":%s}\n\n", appendString(nil, gone.detail)))
					return
				}
				if err != nil { // the database is away: try again in a second
					if !errors.Is(err, errUnavailable) {
						noteError(w, err) // a bug: on the stream's log line
					}
					if failingSince = cmp.Or(failingSince, time.Now()); time.Since(failingSince) > streamSafety {
						return // so that the client tries another replica
					}
					retry = time.After(time.Second)
					break
				}
				failingSince, retry = time.Time{}, nil
				// Nothing new: an event only for a first sync (so the client holds a
				// cursor), or to renew a cursor past half the retention before it expires.
				if len(page.changes) > 0 || first || time.Since(cursor.Issued) > live.retention/2 {
					if !send(fmt.Appendf(nil, "id: %s\ndata: %s\n\n", page.next, page.appendJSON(nil))) {
						return
					}
					cursor = page.next
				}
				first, more = false, page.more
			}
			select {
			case <-ctx.Done():
				return
			case <-changed:
			case <-retry:
			case <-heartbeat.C: // then a read, as after a wake: the watcher may have failed
				if !send([]byte(": keep-alive\n\n")) {
					return
				}
			}
		}
	}
}
