//go:build ignore

// streams.go opens many idle event streams against a running API and reports
// the API process's memory before and after: what an idle stream costs.
//
//	go run bench/streams.go -api http://127.0.0.1:8000 -pid $(pgrep -n tasks) -n 1000
//
// It mints its own HS256 tokens, so the API must run with the same
// BETTER_AUTH_SECRET (read from the environment here too), RATE_LIMIT_PER_SECOND=0
// and MAX_STREAMS of at least -n. Streams go to -n/10 users, 10 each (the per-user bound).
package main

import (
	"bufio"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func main() {
	api := flag.String("api", "http://127.0.0.1:8000", "the API's base URL")
	pid := flag.Int("pid", 0, "the API's process id, for its memory")
	n := flag.Int("n", 1000, "streams to open")
	flag.Parse()
	secret := []byte(os.Getenv("BETTER_AUTH_SECRET"))
	before := rss(*pid)
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 0, MaxIdleConnsPerHost: *n}}
	run := time.Now().UnixNano()
	ready := make(chan error, *n)
	for i := range *n {
		user := fmt.Sprintf("streams-%d-%d", run, i/10)
		token, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": user, "exp": time.Now().Add(time.Hour).Unix()}).SignedString(secret)
		if err != nil {
			log.Fatal(err)
		}
		go func() {
			req, _ := http.NewRequest("GET", *api+"/api/"+user+"/events", nil)
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := client.Do(req)
			if err != nil || resp.StatusCode != 200 {
				ready <- fmt.Errorf("stream %d: %v %v", i, err, resp)
				return
			}
			r := bufio.NewReader(resp.Body)
			for { // until the first sync's event: the stream is open and idle
				line, err := r.ReadString('\n')
				if err != nil {
					ready <- err
					return
				}
				if strings.HasPrefix(line, "data: ") {
					ready <- nil
					break
				}
			}
			select {} // hold it open
		}()
	}
	for range *n {
		if err := <-ready; err != nil {
			log.Fatal(err)
		}
	}
	time.Sleep(3 * time.Second) // a few rounds of the watcher
	after := rss(*pid)
	fmt.Printf("%d idle streams: API RSS %.1f MiB → %.1f MiB, %.1f KiB per stream\n",
		*n, float64(before)/1024, float64(after)/1024, float64(after-before)/float64(*n))
}

// rss is a process's resident memory in KiB.
func rss(pid int) int {
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
