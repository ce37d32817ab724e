// feed.go holds the change feed, GET /api/{user_id}/changes: reading a page, and writing it as JSON.
package main

import (
	"bytes"
	"context"
	"errors"
	"math"
	"net/http"
	"strconv"
	"time"
)

// maxFeedLimit caps a page of the feed, the first sync's too.
const maxFeedLimit = 1000

// handleChanges serves GET /api/{user_id}/changes?since=CURSOR&limit=N: what
// changed since the cursor, {"tasks": [...], "deleted": [ids], "reminders": [fired],
// "cursor": "...", "has_more": bool}; without since, the user's tasks (the first sync).
// A cursor issued longer than retention ago answers 410: the client syncs from scratch.
func handleChanges(db *store, retention time.Duration) userHandler {
	return func(w http.ResponseWriter, r *http.Request, userID string) {
		now := time.Now()
		q, err := parseFeedQuery(r, userID, now)
		if err != nil {
			writeError(w, r, err)
			return
		}
		page, err := readFeed(r.Context(), db, userID, q.Cursor, q.First, q.Limit, now, retention)
		if err != nil {
			writeError(w, r, err)
			return
		}
		if !page.more { // the whole feed, up to the user's version
			tag := etag(page.next.Version)
			w.Header().Set("ETag", tag)
			// A 304 keeps the client's cursor, and its time: once half of the retention
			// is gone, a 200 gives it a new one rather than let it expire.
			if noneMatch(r, tag) && now.Sub(q.Cursor.Issued) < retention/2 {
				w.WriteHeader(http.StatusNotModified)
				return
			}
		}
		writeBody(w, http.StatusOK, append(page.appendJSON(nil), '\n'))
	}
}

// feedPage is one page of a user's feed: its changes, the cursor after it, and whether more follow.
type feedPage struct {
	changes []feedEntry
	next    feedCursor
	more    bool
}

// errGone answers a cursor the feed cannot go on from (410): the client syncs from scratch.
func errGone(why string) error {
	return &statusError{http.StatusGone, why + ": sync from scratch (the feed without since, or the stream without Last-Event-ID)"}
}

// readFeed reads the page of the user's feed after cursor (first: a first sync), at
// most limit changes; a cursor it cannot go on from (too old, or ahead) is errGone.
func readFeed(ctx context.Context, db *store, userID string, cursor feedCursor, first bool, limit int, now time.Time, retention time.Duration) (feedPage, error) {
	if now.Sub(cursor.Issued) > retention {
		return feedPage{}, errGone("This cursor is older than the feed keeps deletions (SYNC_RETENTION)")
	}
	floor := cursor.Floor
	if first {
		floor = math.MaxInt64 // the client holds nothing to delete
	}
	changes, current, err := db.changes(ctx, userID, cursor.Version, floor, limit+1)
	if errors.Is(err, errCursorAhead) {
		return feedPage{}, errGone("This cursor is ahead of the feed (the database was restored from a backup?)")
	}
	if err != nil {
		return feedPage{}, err
	}
	p := feedPage{changes: changes, more: len(changes) > limit}
	if p.more {
		p.changes = changes[:limit]
		// Not yet whole: the deletions after this page are as old as the cursor's.
		p.next = feedCursor{p.changes[limit-1].Version, cursor.Issued, cursor.Floor, cursor.User}
		if first { // deletions up to the user's version now were done before this page was read
			p.next.Floor = current
		}
		return p, nil
	}
	// Every version up to the user's current one has been read: whole as of now.
	p.next = feedCursor{max(current, cursor.Version), now, -1, cursor.User}
	if n := len(changes); n > 0 {
		p.next.Version = max(p.next.Version, changes[n-1].Version)
	}
	return p, nil
}

// appendJSON appends the page as handleChanges sends it; each list's entries end with a comma, the last one trimmed.
func (p feedPage) appendJSON(b []byte) []byte {
	b = append(b, `{"tasks":[`...)
	for i := range p.changes {
		if p.changes[i].Kind == entryTask {
			b = append(appendTask(b, &p.changes[i].Task), ',')
		}
	}
	b = append(bytes.TrimSuffix(b, []byte{','}), `],"deleted":[`...)
	for i := range p.changes {
		if p.changes[i].Kind == entryDeleted {
			b = append(strconv.AppendInt(b, p.changes[i].ID, 10), ',')
		}
	}
	b = append(bytes.TrimSuffix(b, []byte{','}), `],"reminders":[`...)
	for _, e := range p.changes {
		if e.Kind == entryReminder {
			b = strconv.AppendInt(append(b, `{"task_id":`...), e.ID, 10)
			b = appendTime(append(b, `,"at":`...), e.DueDate.At)
			b = append(appendTime(append(b, `,"fired_at":`...), e.UpdatedAt), '}', ',')
		}
	}
	b = append(bytes.TrimSuffix(b, []byte{','}), `],"cursor":"`...)
	b = append(b, p.next.String()...)
	b = append(b, `","has_more":`...)
	b = strconv.AppendBool(b, p.more)
	return append(b, '}')
}
