// feed.go holds the change feed, GET /api/{user_id}/changes, and its cursor.
package main

import (
	"encoding/base64"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// feedCursor is where a client's copy of the feed stands: a place in the feed,
// and when its copy was last whole (Issued). Every deletion after Pos was made
// after Issued, so while Issued is within SYNC_RETENTION its tombstones are
// all still kept; past that, some may be gone, and the client must start over.
type feedCursor struct {
	Pos    feedPos
	Issued time.Time // to the millisecond
}

// String is the cursor as clients hold it: base64url (RFC 4648 §5, no padding)
// of "version.id.issued-unix-milliseconds". Clients treat it as opaque.
func (c feedCursor) String() string {
	s := strconv.FormatInt(c.Pos.Version, 10) + "." + strconv.FormatInt(c.Pos.ID, 10) + "." + strconv.FormatInt(c.Issued.UnixMilli(), 10)
	return base64.RawURLEncoding.EncodeToString([]byte(s))
}

// parseFeedCursor reads a cursor String made; it accepts no other spelling.
func parseFeedCursor(s string) (feedCursor, bool) {
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	parts := strings.Split(string(b), ".")
	if err != nil || len(parts) != 3 {
		return feedCursor{}, false
	}
	var n [3]int64
	for i, p := range parts {
		if n[i], err = strconv.ParseInt(p, 10, 64); err != nil {
			return feedCursor{}, false
		}
	}
	c := feedCursor{feedPos{n[0], n[1]}, time.UnixMilli(n[2])}
	return c, c.Pos.Version >= -1 && c.Pos.ID >= 0 && c.String() == s
}

// etag is the feed's entity tag for an answer whose cursor is c: the place it
// brings a client to. A client that holds it and asks again gets 304 while
// nothing has changed; when a time goes into the new cursor, not the tag.
func (c feedCursor) etag() string {
	return `"` + strconv.FormatInt(c.Pos.Version, 10) + "." + strconv.FormatInt(c.Pos.ID, 10) + `"`
}

// maxFeedLimit caps a page of the feed, the first sync's too.
const maxFeedLimit = 1000

// handleChanges serves GET /api/{user_id}/changes?since=CURSOR&limit=N: what
// changed since the cursor, {"tasks": [...], "deleted": [ids], "cursor": "...",
// "has_more": bool}; without since, the user's tasks (the first sync). A cursor
// issued longer than retention ago answers 410: the client syncs from scratch.
func handleChanges(db *store, retention time.Duration) userHandler {
	return func(w http.ResponseWriter, r *http.Request, userID string) {
		values, err := url.ParseQuery(r.URL.RawQuery)
		var errs validationError
		fail := func(name, msg, typ string) { errs = append(errs, fieldError{[]any{"query", name}, msg, typ}) }
		if err != nil {
			fail("query", "The query string could not be decoded: use & between parameters and %XX escapes", "query_invalid")
		}
		now := time.Now()
		cursor := feedCursor{feedPos{-1, 0}, now}
		since, first := values.Get("since"), !values.Has("since")
		if !first {
			var ok bool
			if cursor, ok = parseFeedCursor(since); !ok {
				fail("since", "Input should be a cursor this feed returned", "cursor_invalid")
			}
		}
		limit := maxFeedLimit
		if s := values.Get("limit"); s != "" {
			if limit, err = strconv.Atoi(s); err != nil || limit < 1 || limit > maxFeedLimit {
				fail("limit", "Input should be an integer from 1 to "+strconv.Itoa(maxFeedLimit), "int_parsing")
			}
		}
		for _, name := range []string{"since", "limit"} {
			if len(values[name]) > 1 {
				fail(name, "Give this parameter once", "duplicate")
			}
		}
		if errs != nil {
			writeError(w, r, errs)
			return
		}
		if now.Sub(cursor.Issued) > retention {
			writeError(w, r, &statusError{http.StatusGone, "This cursor is older than the feed keeps deletions (SYNC_RETENTION): sync from scratch, without since"})
			return
		}
		changes, err := db.changes(r.Context(), userID, cursor.Pos, limit+1)
		if err != nil {
			writeError(w, r, err)
			return
		}
		more := len(changes) > limit
		next := feedCursor{cursor.Pos, now} // nothing new: the same place, a fresh time
		switch {
		case more:
			changes = changes[:limit]
			last := changes[limit-1]
			// Not yet whole: the deletions after this page are as old as the cursor's.
			next = feedCursor{feedPos{last.Version, last.ID}, cursor.Issued}
		case len(changes) > 0:
			next.Pos = feedPos{changes[len(changes)-1].Version, math.MaxInt64}
		}
		w.Header().Set("ETag", next.etag())
		// A 304 keeps the client's cursor, and its time: once half of the retention
		// is gone, a 200 gives it a new one rather than let it expire.
		if !more && noneMatch(r, next.etag()) && now.Sub(cursor.Issued) < retention/2 {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		b := make([]byte, 0, 128+400*len(changes))
		b = append(b, `{"tasks":[`...)
		comma := false
		for i := range changes {
			if !changes[i].Deleted {
				if comma {
					b = append(b, ',')
				}
				b, comma = appendTask(b, &changes[i].Task), true
			}
		}
		b = append(b, `],"deleted":[`...)
		comma = false
		for i := range changes {
			// A first sync leaves out deletions: the client holds nothing to delete.
			if changes[i].Deleted && !first {
				if comma {
					b = append(b, ',')
				}
				b, comma = strconv.AppendInt(b, changes[i].ID, 10), true
			}
		}
		b = append(b, `],"cursor":"`...)
		b = append(b, next.String()...)
		b = append(b, `","has_more":`...)
		b = strconv.AppendBool(b, more)
		writeBody(w, http.StatusOK, append(b, '}', '\n'))
	}
}
