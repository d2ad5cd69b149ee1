package main

// rabbitmq: one item per Pod (airflow_batchjob/worker/rabbitmq_mode.py). The message is
// acknowledged only after the program succeeded (and its result was published, confirmed); a
// failure is republished (confirmed) with x-batchjob-attempts raised, or to <queue>.dead at
// --max-attempts, and only then acknowledged: at least once, never lost.

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

const (
	amqpURLEnv       = "BATCHJOB_AMQP_URL"
	attemptsHeader   = "x-batchjob-attempts"
	exitCodeHeader   = "x-batchjob-exit-code"
	emptyGrace       = 10 * time.Second // how long a Pod that finds the queue empty looks again
	exitUnacked      = 75               // EX_TEMPFAIL: processed, but the ack did not reach the broker
	persistent       = 2
	jsonContentType  = "application/json"
	connectAttempts  = 3
	connectRetryWait = time.Second
)

var queueArgs = amqp.Table{"x-queue-type": "classic"}

// pyDict reads the ssl_options value core/brokerconn.py writes: a Python dict repr of str and
// bool values ({'ca_certs': '/x/ca.crt', 'check_hostname': True}).
func pyDict(s string) (map[string]string, error) {
	out := map[string]string{}
	s = strings.TrimSpace(s)
	if !strings.HasPrefix(s, "{") || !strings.HasSuffix(s, "}") {
		return nil, errors.New("ssl_options in an amqps:// URL must be a dict")
	}
	rest := strings.TrimSpace(s[1 : len(s)-1])
	readStr := func() (string, error) {
		if rest == "" || (rest[0] != '\'' && rest[0] != '"') {
			return "", errors.New("ssl_options: expected a quoted string")
		}
		q := rest[0]
		var b strings.Builder
		for i := 1; i < len(rest); i++ {
			switch c := rest[i]; {
			case c == '\\' && i+1 < len(rest):
				i++
				b.WriteByte(rest[i])
			case c == q:
				rest = strings.TrimSpace(rest[i+1:])
				return b.String(), nil
			default:
				b.WriteByte(c)
			}
		}
		return "", errors.New("ssl_options: unterminated string")
	}
	for rest != "" {
		k, err := readStr()
		if err != nil {
			return nil, err
		}
		if !strings.HasPrefix(rest, ":") {
			return nil, errors.New("ssl_options: expected ':'")
		}
		rest = strings.TrimSpace(rest[1:])
		var v string
		switch {
		case strings.HasPrefix(rest, "True"):
			v, rest = "true", rest[4:]
		case strings.HasPrefix(rest, "False"):
			v, rest = "false", rest[5:]
		case strings.HasPrefix(rest, "None"):
			v, rest = "", rest[4:]
		default:
			if v, err = readStr(); err != nil {
				return nil, err
			}
		}
		out[k] = v
		rest = strings.TrimPrefix(strings.TrimSpace(rest), ",")
		rest = strings.TrimSpace(rest)
	}
	return out, nil
}

// dialRabbit connects as queues/urls.py's rabbit_params_from_url does: a few tries, TLS from ssl_options.
func dialRabbit(raw string) (*amqp.Connection, error, bool) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("the URL in %s cannot be read", amqpURLEnv), true
	}
	cfg := amqp.Config{Heartbeat: 60 * time.Second, Locale: "en_US"}
	if u.Scheme == "amqps" {
		opts := map[string]string{}
		if v := u.Query().Get("ssl_options"); v != "" {
			if opts, err = pyDict(v); err != nil {
				return nil, err, true
			}
		}
		host := u.Hostname()
		if opts["server_hostname"] != "" {
			host = opts["server_hostname"]
		}
		ca := opts["ca_certs"]
		if ca == "" {
			ca = opts["cafile"]
		}
		reqs := opts["cert_reqs"]
		if reqs == "" {
			reqs = "required"
		}
		check := opts["check_hostname"]
		if check == "" {
			check = "true"
		}
		if cfg.TLSClientConfig, err = tlsConfig(host, ca, opts["certfile"], opts["keyfile"], reqs, check); err != nil {
			return nil, err, true
		}
	}
	u.RawQuery = ""
	var conn *amqp.Connection
	for attempt := 1; ; attempt++ {
		conn, err = amqp.DialConfig(u.String(), cfg)
		if err == nil || attempt >= connectAttempts {
			return conn, err, false
		}
		time.Sleep(connectRetryWait)
	}
}

func runRabbit(o *options, stop *stopper) int {
	raw := os.Getenv(amqpURLEnv)
	if raw == "" {
		logf("%s is not set: it holds the amqp:// or amqps:// URL of the broker", amqpURLEnv)
		return exitUsage
	}
	conn, err, setup := dialRabbit(raw)
	if setup {
		logf("%s", strings.Replace(err.Error(), "the broker URL", amqpURLEnv, 1))
		return exitUsage
	}
	if err != nil {
		logf("broker error: %s", amqpErr(err))
		return exitBroker
	}
	defer conn.Close()
	code, err := consumeOne(conn, o, stop)
	if err != nil {
		logf("broker error: %s", amqpErr(err))
		return exitBroker
	}
	return code
}

func amqpErr(err error) string {
	var ae *amqp.Error
	if errors.As(err, &ae) {
		return fmt.Sprintf("AMQPError: %d %s", ae.Code, ae.Reason)
	}
	return err.Error() // a dial error names host and port, never the password
}

func declare(ch *amqp.Channel, name string) error {
	_, err := ch.QueueDeclare(name, true, false, false, false, queueArgs)
	return err
}

// publishConfirmed publishes and waits for the broker's confirm (pika's mandatory publish on a
// confirming channel returns only then).
func publishConfirmed(ch *amqp.Channel, queue string, msg amqp.Publishing) error {
	dc, err := ch.PublishWithDeferredConfirmWithContext(context.Background(), "", queue, true, false, msg)
	if err != nil {
		return err
	}
	ok, err := dc.WaitContext(context.Background())
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("the broker refused the message to %s", pyRepr(queue))
	}
	return nil
}

func consumeOne(conn *amqp.Connection, o *options, stop *stopper) (int, error) {
	summary := &object{}
	summary.set("mode", "rabbitmq")
	summary.set("queue", o.queue)
	ch, err := conn.Channel()
	if err != nil {
		return 0, err
	}
	if _, err := ch.QueueDeclarePassive(o.queue, true, false, false, false, queueArgs); err != nil {
		var ae *amqp.Error
		if errors.As(err, &ae) && ae.Code == amqp.NotFound {
			logf("queue %s does not exist: was it pre-filled (QueuePrefillOperator)?", pyRepr(o.queue))
			return exitUsage, nil
		}
		return 0, err
	}
	if err := ch.Confirm(false); err != nil {
		return 0, err
	}
	if err := ch.Qos(1, 0, false); err != nil {
		return 0, err
	}
	if stop.requested() { // stopped before taking anything: nothing to release
		return exitTerminated, nil
	}
	msg, ok, err := ch.Get(o.queue, false)
	deadline := time.Now().Add(emptyGrace)
	for err == nil && !ok && time.Now().Before(deadline) && !stop.requested() {
		// An item in flight elsewhere (unacknowledged, so invisible) may come back: look again.
		select {
		case <-stop.events:
		case <-time.After(500 * time.Millisecond):
		}
		msg, ok, err = ch.Get(o.queue, false)
	}
	if err != nil {
		return 0, err
	}
	if !ok { // its item was done by a Pod that died after acknowledging: succeed
		summary.set("item_id", nil)
		summary.set("exit_code", 0)
		summary.set("outcome", "empty")
		writeSummary(o.terminationLog, summary)
		return 0, nil
	}
	env := parseEnvelope(string(msg.Body))
	headers := amqp.Table{}
	for k, v := range msg.Headers {
		headers[k] = v
	}
	attempt := headerInt(headers[attemptsHeader]) + 1
	summary.set("item_id", env.id)
	summary.set("attempt", attempt)
	resultFile, err := newResultFile()
	if err != nil {
		_ = msg.Nack(false, true)
		logf("cannot make the result file: %s", err)
		return exitUsage, nil
	}
	itemEnv := programEnv(env.item, []kv{{"ITEM_ID", env.id}, {resultEnv, resultFile}})
	code, runErr := runProgram(o.program, strings.NewReader(env.item), itemEnv, stop)
	value, problem := itemResult(resultFile, "item "+env.id)
	if runErr != nil {
		var se *startError
		if !errors.As(runErr, &se) {
			return 0, runErr
		}
		logf("%s", se)
		_ = msg.Nack(false, true)
		summary.set("exit_code", se.code)
		summary.set("outcome", "released")
		writeSummary(o.terminationLog, summary)
		return se.code, nil
	}
	if code == 0 && problem != "" { // an unusable result fails the item like an exit code
		logf("%s", problem)
		code = exitBadResult
	}
	if code == 0 {
		err := func() error {
			if value != nil { // confirmed before the ack: a done item never lacks its result
				if err := declare(ch, o.queue+".results"); err != nil {
					return err
				}
				rec := amqp.Publishing{DeliveryMode: persistent, ContentType: jsonContentType, Body: []byte(resultRecord(env, value))}
				if err := publishConfirmed(ch, o.queue+".results", rec); err != nil {
					return err
				}
			}
			return msg.Ack(false)
		}()
		if err != nil {
			logf("item %s processed, but its ack failed (%s); it will be redelivered", env.id, amqpErr(err))
			summary.set("exit_code", exitUnacked)
			summary.set("outcome", "unacked")
			writeSummary(o.terminationLog, summary)
			return exitUnacked, nil
		}
		summary.set("exit_code", 0)
		summary.set("outcome", "acked")
		writeSummary(o.terminationLog, summary)
		return 0, nil
	}
	if stop.requested() {
		_ = msg.Nack(false, true)
		logf("stopped: item %s released to the queue", env.id)
		summary.set("exit_code", exitTerminated)
		summary.set("outcome", "released")
		writeSummary(o.terminationLog, summary)
		return exitTerminated, nil
	}
	headers[attemptsHeader] = int32(attempt)
	headers[exitCodeHeader] = int32(code)
	dead := attempt >= o.maxAttempts
	target := o.queue
	if dead {
		target = o.queue + ".dead"
		if err := declare(ch, target); err != nil {
			return 0, err
		}
	}
	contentType := msg.ContentType
	if contentType == "" {
		contentType = jsonContentType
	}
	out := amqp.Publishing{DeliveryMode: persistent, ContentType: contentType, Headers: headers, Body: msg.Body}
	if err := publishConfirmed(ch, target, out); err != nil {
		return 0, err
	}
	if err := msg.Ack(false); err != nil {
		return 0, err
	}
	outcome := "retry"
	if dead {
		outcome = "dead"
		logf("item %s failed (exit %d) %d times: moved to %s", env.id, code, attempt, pyRepr(target))
	} else {
		logf("item %s failed (exit %d), attempt %d of %d: requeued", env.id, code, attempt, o.maxAttempts)
	}
	summary.set("exit_code", code)
	summary.set("outcome", outcome)
	writeSummary(o.terminationLog, summary)
	return code, nil
}

func headerInt(v any) int {
	var n int64
	switch x := v.(type) {
	case int8:
		n = int64(x)
	case int16:
		n = int64(x)
	case int32:
		n = int64(x)
	case int64:
		n = x
	case int:
		n = int64(x)
	case uint8:
		n = int64(x)
	case uint16:
		n = int64(x)
	case uint32:
		n = int64(x)
	case float64:
		n = int64(x)
	case float32:
		n = int64(x)
	case string:
		n, _ = strconv.ParseInt(strings.TrimSpace(x), 10, 64)
	case []byte:
		n, _ = strconv.ParseInt(strings.TrimSpace(string(x)), 10, 64)
	}
	return int(max(n, 0))
}
