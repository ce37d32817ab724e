// pooler_test.go tests the query mode the pool picks, behind a transaction-mode pooler or not.
package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestPoolerModeWorks starts three replicas of the program on
// TEST_DATABASE_URL without the query mode it may carry, while other clients
// keep the database busy, then sends concurrent creates, lists and reads on
// many connections: none may fail. Through CI's PgBouncer 1.18 in transaction
// mode, pgx's default mode (cache_statement) answered most of them 500: there
// a pool's connections must use cache_describe, and directly keep the default.
func TestPoolerModeWorks(t *testing.T) {
	u := must(url.Parse(testURL))
	q := u.Query()
	q.Del("default_query_exec_mode")
	u.RawQuery = q.Encode()
	env := map[string]string{"DATABASE_URL": u.String(), "BETTER_AUTH_SECRET": testSecret, "PORT": "0", "RATE_LIMIT_PER_SECOND": "0"}
	// Other clients' transactions run meanwhile, as other replicas' would.
	busy, quiet := context.WithCancel(context.Background())
	var traffic sync.WaitGroup
	for range 4 {
		traffic.Go(func() {
			for busy.Err() == nil {
				testDB.pool.Exec(busy, `SELECT pg_sleep(0.001)`)
			}
		})
	}
	var starts []func() error
	var replicas []string
	var logs []*syncBuffer
	for range 3 {
		base, stop, log := startRun(t, env)
		replicas, starts, logs = append(replicas, base), append(starts, stop), append(logs, log)
	}
	quiet()
	traffic.Wait()
	user := newUser(t)
	tok := tokenFor(t, user)
	var wg sync.WaitGroup
	failures := make(chan string, 1000)
	for w := range 16 {
		base := replicas[w%len(replicas)]
		wg.Go(func() {
			client := &http.Client{Transport: &http.Transport{}} // a connection of its own
			for i := range 10 {
				for _, req := range []*http.Request{
					must(http.NewRequest("POST", base+"/api/"+user+"/tasks", strings.NewReader(fmt.Sprintf(`{"title":"w%d-%d"}`, w, i)))),
					must(http.NewRequest("GET", base+"/api/"+user+"/tasks?q=w&sort=title", nil)),
					must(http.NewRequest("GET", base+"/readyz", nil)),
				} {
					req.Header.Set("Authorization", "Bearer "+tok)
					req.Header.Set("Content-Type", "application/json")
					resp, err := client.Do(req)
					if err != nil {
						failures <- err.Error()
						continue
					}
					resp.Body.Close()
					if resp.StatusCode >= 500 {
						failures <- fmt.Sprintf("%s %s = %d", req.Method, req.URL.Path, resp.StatusCode)
					}
				}
			}
		})
	}
	wg.Wait()
	close(failures)
	for f := range failures {
		t.Error(f)
	}
	for i, stop := range starts {
		if err := stop(); err != nil {
			t.Fatalf("replica %d: %v\n%s", i, err, logs[i])
		}
		// Behind the pooler, live updates poll, said at once from the probe's
		// finding rather than after waiting in vain for a NOTIFY.
		if l := logs[i].String(); testPooled && (!strings.Contains(l, "instead of listening: DATABASE_URL reaches a transaction-mode pooler") ||
			strings.Contains(l, "did not come back")) {
			t.Fatalf("replica %d's live updates at start:\n%s", i, l)
		}
	}
	conn := must(testStore(t, u.String(), 5*time.Second).pool.Acquire(t.Context()))
	defer conn.Release()
	want := pgx.QueryExecModeCacheStatement
	if testPooled {
		want = pgx.QueryExecModeCacheDescribe
	}
	if got := conn.Conn().Config().DefaultQueryExecMode; got != want {
		t.Fatalf("a pooled connection's query mode is %v, want %v (behind a transaction-mode pooler: %v)", got, want, testPooled)
	}
}
