// cursor.go holds the opaque cursors clients page with: the change feed's and the list's.
package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// feedCursor is where a client's copy of the feed stands: the user's version it has
// read up to (each version is one write, of one task or tombstone), and when its copy
// was last whole (Issued). Every deletion after Version came after Issued: while Issued
// is within SYNC_RETENTION its tombstones are all kept; past that, the client starts over.
type feedCursor struct {
	Version int64     // -1 before a first sync
	Issued  time.Time // to the millisecond
	Floor   int64     // tombstones at or below it are of tasks deleted before the client's first sync: -1 for none
	User    string    // whose feed it is: userTag of the user id
}

// String is the cursor as clients hold it: base64url (RFC 4648 §5, no padding)
// of "version.issued-unix-milliseconds.floor.user-tag". Clients treat it as opaque.
func (c feedCursor) String() string {
	s := strconv.FormatInt(c.Version, 10) + "." + strconv.FormatInt(c.Issued.UnixMilli(), 10) + "." + strconv.FormatInt(c.Floor, 10) + "." + c.User
	return base64.RawURLEncoding.EncodeToString([]byte(s))
}

// userTag tells one user's feed cursors from another's: the first 48 bits of
// the SHA-256 of the user id, base64url. Not a secret: it catches a cursor kept
// by a browser in which another account has since signed in.
func userTag(userID string) string {
	sum := sha256.Sum256([]byte(userID))
	return base64.RawURLEncoding.EncodeToString(sum[:6])
}

// parseFeedCursor reads a cursor String made for the user's feed; it accepts no
// other spelling. A message says what is wrong.
func parseFeedCursor(s, userID string, now time.Time) (feedCursor, string) {
	const bad = "Input should be a cursor this feed returned"
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	parts := strings.Split(string(b), ".")
	if err != nil || len(parts) != 4 {
		return feedCursor{}, bad
	}
	var n [3]int64
	for i, p := range parts[:3] {
		n[i], _ = strconv.ParseInt(p, 10, 64) // a bad number fails the round trip below
	}
	c := feedCursor{n[0], time.UnixMilli(n[1]), n[2], parts[3]}
	switch {
	case c.Version < -1 || c.Floor < -1 || c.String() != s:
		return feedCursor{}, bad
	case c.User != userTag(userID):
		return feedCursor{}, "This cursor is from another user's feed: sync from scratch (the feed without since, or the stream without Last-Event-ID)"
	}
	// Issued by a replica whose clock is ahead of this one's, or forged: it counts
	// as issued now, so that it still expires.
	if c.Issued.After(now) {
		c.Issued = now
	}
	return c, ""
}

// listKey is a place in a list: after the task whose sort key is Key (nil
// for a missing due date) and id is ID, in the list's order.
type listKey struct {
	Key any // a time.Time or a string, as the sort's value returns it; nil for NULL
	ID  int64
}

// listCursor is the cursor of the list page after task t, sorted by sort
// (descending when desc): base64url (RFC 4648 §5, no padding) of the JSON
// {"sort": ..., "desc": ..., "key": ..., "id": ...}, a time as microseconds since 1970.
func listCursor(sort listSort, desc bool, zone string, t Task) string {
	key := sort.value(t)
	if loc, ok := loadZone(zone); ok && t.DueDate != nil && t.DueDate.Kind != dueInstant {
		key = wallToInstant(t.DueDate.At, loc) // as store.listTasks orders it: task_instant
	}
	if at, ok := key.(time.Time); ok {
		key = at.UnixMicro()
	}
	b, _ := json.Marshal(struct { // cannot fail: strings, numbers, a bool
		Sort string `json:"sort"`
		Desc bool   `json:"desc"`
		Zone string `json:"tz,omitempty"`
		Key  any    `json:"key"`
		ID   int64  `json:"id"`
	}{sort.name, desc, zone, key, t.ID})
	return base64.RawURLEncoding.EncodeToString(b)
}

// parseListCursor reads a cursor listCursor made for the list sorted by sort
// (descending when desc); a message says what is wrong with another.
func parseListCursor(s string, sort listSort, desc bool, zone string) (*listKey, string) {
	const bad = "Input should be a cursor from this list's Link header"
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	var c struct {
		Sort string          `json:"sort"`
		Desc bool            `json:"desc"`
		Zone string          `json:"tz,omitempty"`
		Key  json.RawMessage `json:"key"`
		ID   int64           `json:"id"`
	}
	// Only as listCursor spells it: json matches names in any case, and takes the last of two.
	if err != nil || json.Unmarshal(b, &c) != nil || c.ID < 1 || c.Key == nil {
		return nil, bad
	}
	if canonical, err := json.Marshal(c); err != nil || !bytes.Equal(canonical, b) {
		return nil, bad
	}
	if _, known := findSort(c.Sort); !known {
		return nil, bad
	}
	if c.Sort != sort.name || c.Desc != desc || c.Zone != zone {
		order := map[bool]string{true: "desc", false: "asc"}[c.Desc]
		return nil, "This cursor pages a list with sort=" + c.Sort + ", order=" + order + " and tz=" + c.Zone + ": ask with the same"
	}
	k := &listKey{ID: c.ID}
	var micros int64
	switch {
	case string(c.Key) == "null":
		if !sort.nullable {
			return nil, bad
		}
	case sort.param == "timestamptz" && json.Unmarshal(c.Key, &micros) == nil && // years 1 to 9999, as stored
		micros >= -62135596800000000 && micros < 253402300800000000:
		k.Key = time.UnixMicro(micros)
	case sort.param == "text":
		var s string
		if json.Unmarshal(c.Key, &s) != nil || badText(s) != "" || sort.keys != nil && !slices.Contains(sort.keys, s) {
			return nil, bad
		}
		k.Key = s
	default:
		return nil, bad
	}
	return k, ""
}

// nextLink is the Link header (RFC 8288) of a list page with more after it: the
// same request r, at path, with the cursor of the page after it instead of an offset.
func nextLink(path string, r *http.Request, cursor string) string {
	q := r.URL.Query()
	delete(q, "offset")
	q.Set("cursor", cursor)
	return "<" + path + "?" + q.Encode() + `>; rel="next"`
}
