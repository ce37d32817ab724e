// events.go holds the live stream, GET /api/{user_id}/events: the change feed as server-sent events.
package main

import (
	"cmp"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Stream timings: how often a stream reads the feed, how long it may stay
// silent before a comment keeps proxies from cutting it, how long one write may
// take, and the reconnection delay clients are told (SSE's retry field).
const (
	streamPoll      = time.Second
	streamHeartbeat = 25 * time.Second
	streamWriteWait = 10 * time.Second
	streamRetry     = 3 * time.Second
)

// streams counts the open event streams, per user and in all, and ends every
// one of them at once when the server shuts down.
type streams struct {
	mu              sync.Mutex
	perUser         map[string]int
	total, maxAll   int
	done            chan struct{} // closed by close
	closeOnce       sync.Once
	poll, heartbeat time.Duration // streamPoll and streamHeartbeat; shorter in tests
	retention       time.Duration // SYNC_RETENTION
}

// maxStreamsPerUser bounds one user's open streams: a laptop and a phone, with tabs.
const maxStreamsPerUser = 10

var (
	errStreamLimit  = &statusError{http.StatusTooManyRequests, "Too many open event streams for this user (at most " + strconv.Itoa(maxStreamsPerUser) + "): close one"}
	errStreamsFull  = &statusError{http.StatusServiceUnavailable, "Too many open event streams on this server: try again shortly"}
	errShuttingDown = &statusError{http.StatusServiceUnavailable, "Shutting down: reconnect"}
)

// newStreams bounds the server's open streams to maxAll (MAX_STREAMS); a zero
// poll or heartbeat is streamPoll or streamHeartbeat.
func newStreams(maxAll int, retention, poll, heartbeat time.Duration) *streams {
	return &streams{perUser: map[string]int{}, maxAll: maxAll, done: make(chan struct{}),
		poll: cmp.Or(poll, streamPoll), heartbeat: cmp.Or(heartbeat, streamHeartbeat), retention: retention}
}

// open counts a new stream for the user, unless the user or the server holds
// as many as allowed (errStreamLimit, errStreamsFull) or it is shutting down.
func (s *streams) open(userID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed():
		return errShuttingDown
	case s.perUser[userID] >= maxStreamsPerUser:
		return errStreamLimit
	case s.total >= s.maxAll:
		return errStreamsFull
	}
	s.perUser[userID]++
	s.total++
	return nil
}

// release uncounts a stream open counted.
func (s *streams) release(userID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.perUser[userID]--; s.perUser[userID] == 0 {
		delete(s.perUser, userID)
	}
	s.total--
}

// close ends every stream, for http.Server.RegisterOnShutdown: the drain does
// not wait on them, and their clients reconnect elsewhere with Last-Event-ID.
func (s *streams) close() { s.closeOnce.Do(func() { close(s.done) }) }

func (s *streams) closed() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// handleEvents serves GET /api/{user_id}/events: the user's change feed as
// server-sent events (text/event-stream). Each event's id is a feed cursor and
// its data a page of the feed ({"tasks", "deleted", "cursor", "has_more"}).
// Last-Event-ID resumes after that cursor; without it the stream starts with a
// first sync. A cursor the feed cannot go on from ends the stream with an event
// "reset" whose data is {"detail": ...}: the client syncs from scratch. The
// stream reads the feed every streamPoll, sends a comment after streamHeartbeat
// of silence, and ends when the client goes or the server shuts down.
func handleEvents(db *store, live *streams) userHandler {
	return func(w http.ResponseWriter, r *http.Request, userID string) {
		now := time.Now()
		cursor, first := feedCursor{feedPos{-1, 0}, now, -1, userTag(userID)}, true
		if id := r.Header.Get("Last-Event-ID"); id != "" {
			var msg string
			if cursor, msg = parseFeedCursor(id, userID, now); msg != "" {
				writeError(w, r, validationError{{[]any{"header", "Last-Event-ID"}, msg, "cursor_invalid"}})
				return
			}
			first = false
		}
		if err := live.open(userID); err != nil {
			w.Header().Set("Retry-After", strconv.Itoa(int(streamRetry/time.Second)))
			writeError(w, r, err)
			return
		}
		defer live.release(userID)

		// WriteTimeout bounds a request, not a stream: each write gets its own deadline.
		rc := http.NewResponseController(w)
		h := w.Header()
		h.Set("Content-Type", "text/event-stream")
		h.Set("X-Accel-Buffering", "no") // nginx: pass each event on at once
		w.WriteHeader(http.StatusOK)
		send := func(b []byte) bool {
			rc.SetWriteDeadline(time.Now().Add(streamWriteWait))
			_, err := w.Write(b)
			return err == nil && rc.Flush() == nil
		}
		if !send([]byte("retry: " + strconv.Itoa(int(streamRetry/time.Millisecond)) + "\n\n")) {
			return
		}
		poll := time.NewTicker(live.poll)
		defer poll.Stop()
		heartbeat := time.NewTimer(live.heartbeat)
		defer heartbeat.Stop()
		for {
			for more := true; more; { // every page there is now
				page, err := readFeed(r.Context(), db, userID, cursor, first, maxFeedLimit, time.Now(), live.retention)
				var gone *statusError
				if errors.As(err, &gone) && gone.status == http.StatusGone {
					detail, _ := json.Marshal(map[string]string{"detail": gone.detail}) // cannot fail: a string
					send(appendEvent(nil, "reset", "", detail))
					return
				}
				if err != nil { // the database is away: try again at the next poll
					break
				}
				// Nothing new: an event only for a first sync (so the client holds a
				// cursor), or to renew a cursor past half the retention before it expires.
				if len(page.changes) > 0 || first || time.Since(cursor.Issued) > live.retention/2 {
					if !send(appendEvent(nil, "", page.next.String(), page.appendJSON(nil))) {
						return
					}
					heartbeat.Reset(live.heartbeat)
					cursor = page.next
				}
				first, more = false, page.more
			}
			select {
			case <-r.Context().Done():
				return
			case <-live.done:
				return
			case <-poll.C:
			case <-heartbeat.C:
				if !send([]byte(": keep-alive\n\n")) {
					return
				}
				heartbeat.Reset(live.heartbeat)
			}
		}
	}
}

// appendEvent appends one server-sent event: an event type (none for a
// message), an id (none: ""), and data, which holds no newline.
func appendEvent(b []byte, event, id string, data []byte) []byte {
	if event != "" {
		b = append(b, "event: "+event+"\n"...)
	}
	if id != "" {
		b = append(b, "id: "+id+"\n"...)
	}
	b = append(b, "data: "...)
	b = append(b, data...)
	return append(b, "\n\n"...)
}
