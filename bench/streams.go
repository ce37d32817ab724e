//go:build ignore

// streams.go opens many idle event streams against a running API and reports
// the API process's memory before and after: what an idle stream costs. With
// -writes, it then measures how long a write's change takes to reach a stream:
// it creates tasks one at a time through -writer (another replica, say) for a
// user whose one stream is open on -api, and reports the time from each
// create's answer to the event carrying it, p50, p99 and max.
//
//	go run bench/streams.go -api http://127.0.0.1:8000 -pid $(pgrep -n tasks) -n 1000
//	go run bench/streams.go -api URL -writer URL2 -n 1000 -writes 200
//
// It mints its own HS256 tokens, so the API must run with the same
// BETTER_AUTH_SECRET (read from the environment here too), RATE_LIMIT_PER_SECOND=0
// and MAX_STREAMS of at least -n. Streams go to -n/10 users, 10 each (the
// per-user bound); with -writes, one of the -n is the writing user's. -hold
// keeps the streams open until the process is killed, after printing "ready".
package main

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

var secret = []byte(os.Getenv("BETTER_AUTH_SECRET"))

func main() {
	api := flag.String("api", "http://127.0.0.1:8000", "the API's base URL, where the streams are opened")
	writer := flag.String("writer", "", "the base URL that -writes go through (default: -api)")
	pid := flag.Int("pid", 0, "the API's process id, for its memory (0: not measured)")
	n := flag.Int("n", 1000, "streams to open")
	writes := flag.Int("writes", 0, "creates whose latency to a stream is measured")
	hold := flag.Bool("hold", false, "keep the streams open until killed")
	flag.Parse()
	before := rss(*pid)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: *n}}
	run := time.Now().UnixNano()
	ready := make(chan error, *n)
	probe, seen := fmt.Sprintf("streams-%d-probe", run), make(chan seenTask, 100)
	for i := range *n {
		user := fmt.Sprintf("streams-%d-%d", run, i/10)
		if *writes > 0 && i == *n-1 {
			user = probe
		}
		go func() {
			req, _ := http.NewRequest("GET", *api+"/api/"+user+"/events", nil)
			req.Header.Set("Authorization", "Bearer "+token(user))
			resp, err := client.Do(req)
			if err != nil || resp.StatusCode != 200 {
				ready <- fmt.Errorf("stream %d: %v %v", i, err, resp)
				return
			}
			r := bufio.NewReader(resp.Body)
			for first := true; ; {
				line, err := r.ReadString('\n')
				if err != nil {
					log.Fatalf("stream %d ended: %v", i, err)
				}
				data, ok := strings.CutPrefix(line, "data: ")
				if !ok {
					continue
				}
				at := time.Now()
				if first { // the first sync: the stream is open and idle
					ready <- nil
					first = false
				} else if user == probe {
					var page struct{ Tasks []struct{ ID int64 } }
					json.Unmarshal([]byte(data), &page)
					for _, t := range page.Tasks {
						seen <- seenTask{t.ID, at}
					}
				}
			}
		}()
	}
	for range *n {
		if err := <-ready; err != nil {
			log.Fatal(err)
		}
	}
	time.Sleep(3 * time.Second) // settle: the watcher and its session are up
	if *pid != 0 {
		after := rss(*pid)
		fmt.Printf("%d idle streams: API RSS %.1f MiB → %.1f MiB, %.1f KiB per stream\n",
			*n, float64(before)/1024, float64(after)/1024, float64(after-before)/float64(*n))
	}
	if *writes > 0 {
		latency(client, cmp.Or(*writer, *api), probe, *writes, seen, *n)
	}
	if *hold {
		fmt.Println("ready")
		select {}
	}
}

type seenTask struct {
	id int64
	at time.Time
}

// latency creates tasks for user through base, one at a time, and reports
// the time from each answer to the stream's event carrying the task.
func latency(client *http.Client, base, user string, writes int, seen <-chan seenTask, n int) {
	var ds []time.Duration
	early := 0
	for k := range writes {
		req, _ := http.NewRequest("POST", base+"/api/"+user+"/tasks", bytes.NewBufferString(fmt.Sprintf(`{"title":"probe %d"}`, k)))
		req.Header.Set("Authorization", "Bearer "+token(user))
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			log.Fatal(err)
		}
		var created struct{ ID int64 }
		err = json.NewDecoder(resp.Body).Decode(&created)
		answered := time.Now()
		resp.Body.Close()
		if err != nil || resp.StatusCode != 201 {
			log.Fatalf("create: %d %v", resp.StatusCode, err)
		}
		for got := false; !got; {
			select {
			case s := <-seen:
				if got = s.id == created.ID; got {
					d := s.at.Sub(answered)
					if d < 0 { // the event came before the answer was read
						d, early = 0, early+1
					}
					ds = append(ds, d)
				}
			case <-time.After(10 * time.Second):
				log.Fatalf("task %d never reached the stream", created.ID)
			}
		}
		// Writes at random moments, not in step with the watcher's polls (when it polls).
		time.Sleep(time.Duration(rand.Int64N(int64(500 * time.Millisecond))))
	}
	slices.Sort(ds)
	at := func(q float64) float64 { return float64(ds[int(q*float64(len(ds)-1))].Microseconds()) / 1000 }
	fmt.Printf("%d streams open: %d writes, answer → event p50 %.1f ms, p99 %.1f ms, max %.1f ms (%d events before the answer)\n",
		n, len(ds), at(0.5), at(0.99), at(1), early)
}

func token(user string) string {
	t, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": user, "exp": time.Now().Add(time.Hour).Unix()}).SignedString(secret)
	if err != nil {
		log.Fatal(err)
	}
	return t
}

// rss is a process's resident memory in KiB (0 for pid 0).
func rss(pid int) int {
	if pid == 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		log.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			var kib int
			fmt.Sscan(rest, &kib)
			return kib
		}
	}
	log.Fatal("no VmRSS")
	return 0
}
