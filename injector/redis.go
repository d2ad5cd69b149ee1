package main

// redis: a variable number of long-lived workers leasing items until the queue is drained
// (airflow_batchjob/worker/redis_mode.py and queues/redis.py). Items move between the queue's
// keys only through the Lua scripts of lua.go, the same scripts the Python worker runs.

import (
	"context"
	"crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

const redisURLEnv = "BATCHJOB_REDIS_URL"

var (
	scriptLease    = redis.NewScript(luaLease)
	scriptRenew    = redis.NewScript(luaRenew)
	scriptComplete = redis.NewScript(luaComplete)
	scriptFail     = redis.NewScript(luaFail)
	scriptRelease  = redis.NewScript(luaRelease)
	scriptReclaim  = redis.NewScript(luaReclaim)
)

// quiet drops go-redis' own log lines: the worker's messages say what went wrong, prefixed.
type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}

func init() { redis.SetLogger(quiet{}) }

// envelope is one message as taken from a queue; raw is kept byte for byte to find it again.
type envelope struct {
	id, item, raw string
}

// parseEnvelope reads {"id": ..., "item": ...}; anything else is the item itself (queues/envelope.py).
func parseEnvelope(raw string) envelope {
	if v, err := loads(raw); err == nil {
		if o, ok := v.(*object); ok {
			id, okID := o.vals["id"].(string)
			item, okItem := o.vals["item"].(string)
			if okID && okItem {
				return envelope{id, item, raw}
			}
		}
	}
	sum := sha1.Sum([]byte(raw))
	return envelope{"raw-" + hex.EncodeToString(sum[:])[:16], raw, raw}
}

// resultRecord is what the queue keeps of an item's result (queues/envelope.py result_record).
func resultRecord(env envelope, result any) string {
	o := &object{}
	o.set("id", env.id)
	o.set("item", env.item)
	o.set("result", result)
	return dumps(o, true)
}

// redisClient reads redis://[user:password@]host:port/db or rediss://...?ssl_ca_certs=... as
// queues/urls.py's redis_from_url does (core/brokerconn.py writes these URLs).
func redisClient(raw string) (*redis.Client, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("the URL in %s cannot be read: %s", redisURLEnv, strings.ReplaceAll(err.Error(), raw, "<url>"))
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		return nil, fmt.Errorf("%s must be a redis:// or rediss:// URL", redisURLEnv)
	}
	port := u.Port()
	if port == "" {
		port = "6379"
	}
	opt := &redis.Options{
		Addr:            net.JoinHostPort(u.Hostname(), port),
		DialTimeout:     10 * time.Second,
		ReadTimeout:     60 * time.Second, // no blocking commands: a slower reply means a dead connection
		WriteTimeout:    60 * time.Second,
		PoolSize:        2, // the loop and the lease renewer
		MaxRetries:      -1,
		DisableIdentity: true,
		Protocol:        2,
	}
	if u.User != nil {
		opt.Username = u.User.Username()
		opt.Password, _ = u.User.Password()
	}
	if db := strings.Trim(u.Path, "/"); db != "" {
		if opt.DB, err = strconv.Atoi(db); err != nil {
			return nil, fmt.Errorf("%s: database %s is not a number", redisURLEnv, pyRepr(db))
		}
	}
	if u.Scheme == "rediss" {
		q := u.Query()
		if opt.TLSConfig, err = tlsConfig(u.Hostname(), q.Get("ssl_ca_certs"), q.Get("ssl_certfile"),
			q.Get("ssl_keyfile"), q.Get("ssl_cert_reqs"), q.Get("ssl_check_hostname")); err != nil {
			return nil, err
		}
	}
	return redis.NewClient(opt), nil
}

// tlsConfig is core/brokerconn.py's client_ssl_context: the CA file (else the system's), the
// client certificate, peer verification unless cert_reqs is none, the host name checked unless
// check_hostname is false.
func tlsConfig(host, caFile, certFile, keyFile, certReqs, checkHostname string) (*tls.Config, error) {
	cfg := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("the TLS files named by the broker URL cannot be used: %s", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("the TLS files named by the broker URL cannot be used: no certificate in %s", caFile)
		}
	}
	if certFile != "" {
		if keyFile == "" {
			keyFile = certFile // a PEM with both, as Python's load_cert_chain takes it
		}
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("the TLS files named by the broker URL cannot be used: %s", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	verify := strings.ToLower(certReqs) != "none"
	checkName := verify && !(strings.EqualFold(checkHostname, "false") || checkHostname == "0" || strings.EqualFold(checkHostname, "no"))
	if checkHostname == "" {
		checkName = verify
	}
	if !checkName {
		cfg.InsecureSkipVerify = true // the chain is still verified below unless cert_reqs is none
		if verify {
			roots := cfg.RootCAs
			cfg.VerifyPeerCertificate = func(rawCerts [][]byte, _ [][]*x509.Certificate) error {
				certs := make([]*x509.Certificate, len(rawCerts))
				for i, raw := range rawCerts {
					c, err := x509.ParseCertificate(raw)
					if err != nil {
						return err
					}
					certs[i] = c
				}
				inter := x509.NewCertPool()
				for _, c := range certs[1:] {
					inter.AddCert(c)
				}
				_, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter})
				return err
			}
		}
	}
	return cfg, nil
}

type redisQueue struct {
	c                                                               *redis.Client
	name, processing, attempts, dead, done, results, marker, prefix string
}

func newRedisQueue(c *redis.Client, name string) *redisQueue {
	return &redisQueue{c, name, name + ":processing", name + ":attempts", name + ":dead", name + ":done",
		name + ":results", name + ":prefill", name + ":lease:"}
}

func (q *redisQueue) lease(ctx context.Context, me string, seconds int) (*envelope, error) {
	v, err := scriptLease.Run(ctx, q.c, []string{q.name, q.processing}, q.prefix, me, seconds).Text()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	env := parseEnvelope(v)
	return &env, nil
}

func (q *redisQueue) renew(ctx context.Context, env *envelope, me string, seconds int) (bool, error) {
	n, err := scriptRenew.Run(ctx, q.c, []string{q.prefix + env.id, q.processing}, me, seconds, env.raw).Int()
	return n != 0, err
}

func (q *redisQueue) complete(ctx context.Context, env *envelope, me string, result any) (bool, error) {
	stored := ""
	if result != nil {
		stored = resultRecord(*env, result)
	}
	keys := []string{q.name, q.processing, q.prefix + env.id, q.done, q.results}
	out, err := scriptComplete.Run(ctx, q.c, keys, me, env.raw, env.id, stored).Text()
	return out == "done", err
}

func (q *redisQueue) fail(ctx context.Context, env *envelope, me string, maxAttempts int) (string, error) {
	keys := []string{q.name, q.processing, q.prefix + env.id, q.attempts, q.dead}
	out, err := scriptFail.Run(ctx, q.c, keys, me, env.raw, env.id, maxAttempts).Text()
	if err != nil {
		return "", err
	}
	if out != "dead" && out != "retry" {
		out = "lost"
	}
	return out, nil
}

func (q *redisQueue) release(ctx context.Context, env *envelope, me string) (bool, error) {
	out, err := scriptRelease.Run(ctx, q.c, []string{q.name, q.processing, q.prefix + env.id}, me, env.raw).Text()
	return out == "released", err
}

func (q *redisQueue) reclaimExpired(ctx context.Context, maxAttempts int) (int, error) {
	keys := []string{q.name, q.processing, q.attempts, q.dead}
	n, err := scriptReclaim.Run(ctx, q.c, keys, q.prefix, maxAttempts).Int()
	return n, err
}

// drained: nothing pending and nothing in flight, read in one transaction.
func (q *redisQueue) drained(ctx context.Context) (bool, error) {
	var pending, processing *redis.IntCmd
	_, err := q.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		pending = p.LLen(ctx, q.name)
		processing = p.LLen(ctx, q.processing)
		return nil
	})
	if err != nil {
		return false, err
	}
	return pending.Val() == 0 && processing.Val() == 0, nil
}

// renewer renews the lease every third of its length while the program runs.
func startRenewer(ctx context.Context, q *redisQueue, env *envelope, me string, seconds int) func() {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		lost := false
		tick := time.Duration(float64(seconds) / 3 * float64(time.Second))
		for {
			select {
			case <-done:
				return
			case <-time.After(tick):
			}
			ok, err := q.renew(ctx, env, me, seconds)
			switch {
			case err != nil: // a broker hiccup: the next renewal may succeed
				logf("lease renewal failed: %s", brokerErr(err))
			case !ok && !lost:
				lost = true
				logf("lease of item %s lost to another worker (it expired)", env.id)
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

func workerID() string {
	host, _ := os.Hostname()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b))
}

func brokerErr(err error) string {
	var ne net.Error
	switch {
	case errors.As(err, &ne):
		return "ConnectionError: " + err.Error()
	case errors.As(err, new(redis.Error)):
		return "ResponseError: " + err.Error()
	}
	return err.Error()
}

func runRedis(o *options, stop *stopper) int {
	raw := os.Getenv(redisURLEnv)
	if raw == "" {
		logf("%s is not set: it holds the redis:// or rediss:// URL of the broker", redisURLEnv)
		return exitUsage
	}
	client, err := redisClient(raw)
	if err != nil { // redis-py reads the URL's files when it connects: a broker error there too
		logf("broker error: ConnectionError: %s", err)
		return exitBroker
	}
	defer client.Close()
	code, err := redisLoop(o, stop, newRedisQueue(client, o.queue))
	if err != nil {
		logf("broker error: %s", brokerErr(err)) // go-redis errors carry no credentials
		return exitBroker
	}
	return code
}

func redisLoop(o *options, stop *stopper, q *redisQueue) (int, error) {
	ctx := context.Background()
	me := workerID()
	counts := map[string]int{}
	wait := 50 * time.Millisecond
	poll := time.Duration(o.pollSeconds * float64(time.Second))
	startErr := 0
	for !stop.requested() {
		env, err := q.lease(ctx, me, o.leaseSeconds)
		if err != nil {
			return 0, err
		}
		if env == nil {
			n, err := q.reclaimExpired(ctx, o.maxAttempts)
			if err != nil {
				return 0, err
			}
			counts["reclaimed"] += n
			if n > 0 {
				continue
			}
			drained, err := q.drained(ctx)
			if err != nil {
				return 0, err
			}
			if drained {
				exists, err := q.c.Exists(ctx, q.marker).Result()
				if err != nil {
					return 0, err
				}
				if exists == 0 {
					logf("queue %s was never pre-filled (no %s key): nothing to do", pyRepr(o.queue), pyRepr(q.marker))
				}
				break
			}
			select { // others still hold items: one may die and its item come back
			case <-stop.events:
			case <-time.After(wait):
			}
			wait = min(wait*2, poll)
			continue
		}
		wait = 50 * time.Millisecond
		stopRenewer := startRenewer(ctx, q, env, me, o.leaseSeconds)
		resultFile, err := newResultFile()
		if err != nil {
			stopRenewer()
			if _, rerr := q.release(ctx, env, me); rerr != nil {
				return 0, rerr
			}
			logf("cannot make the result file: %s", err)
			return exitUsage, nil
		}
		itemEnv := programEnv(env.item, []kv{{"ITEM_ID", env.id}, {resultEnv, resultFile}})
		code, runErr := runProgram(o.program, strings.NewReader(env.item), itemEnv, stop)
		stopRenewer()
		value, problem := itemResult(resultFile, "item "+env.id)
		if runErr != nil {
			var se *startError
			if !errors.As(runErr, &se) {
				return 0, runErr
			}
			logf("%s", se)
			if _, err := q.release(ctx, env, me); err != nil {
				return 0, err
			}
			startErr = se.code
			break
		}
		if code == 0 && problem != "" { // an unusable result fails the item like an exit code
			logf("%s", problem)
			code = exitBadResult
		}
		switch {
		case code == 0:
			ok, err := q.complete(ctx, env, me, value)
			if err != nil {
				return 0, err
			}
			if ok {
				counts["processed"]++
			} else {
				counts["lost_leases"]++
			}
		case stop.requested():
			ok, err := q.release(ctx, env, me)
			if err != nil {
				return 0, err
			}
			if ok {
				logf("stopped: item %s released to the queue", env.id)
			}
		default:
			counts["failed"]++
			outcome, err := q.fail(ctx, env, me, o.maxAttempts)
			if err != nil {
				return 0, err
			}
			switch outcome {
			case "dead":
				counts["dead_lettered"]++
				logf("item %s failed (exit %d): dead-lettered after %d attempts", env.id, code, o.maxAttempts)
			case "retry":
				logf("item %s failed (exit %d): requeued", env.id, code)
			default:
				counts["lost_leases"]++
			}
		}
	}
	// 0 only when drained; stopped early, the Job must not take this Pod's success as "all done".
	exit := 0
	if startErr != 0 {
		exit = startErr
	} else if stop.requested() {
		exit = exitTerminated
	}
	summary := &object{}
	summary.set("mode", "redis")
	summary.set("queue", o.queue)
	summary.set("worker", me)
	for _, k := range []string{"processed", "failed", "dead_lettered", "lost_leases", "reclaimed"} {
		summary.set(k, counts[k])
	}
	summary.set("exit_code", exit)
	writeSummary(o.terminationLog, summary)
	return exit, nil
}
