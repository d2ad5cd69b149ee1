package main

// Running the user's unchanged program on one item, as airflow_batchjob/worker/run.py does: the
// item on stdin and in ITEM (plus one variable per scalar key of an object item), output passed
// through, SIGTERM/SIGINT forwarded, the result file read back into the one-line JSON summary.

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"unicode/utf8"
)

const (
	terminationLog      = "/dev/termination-log"
	terminationLogLimit = 4096          // the kubelet keeps at most this many bytes of the message
	envValueLimit       = 128*1024 - 64 // MAX_ARG_STRLEN: a longer variable makes exec fail (E2BIG)
	exitTerminated      = 128 + 15      // stopped by SIGTERM
	exitBadResult       = 65            // sysexits' EX_DATAERR: succeeded, but the result is unusable
	exitUsage           = 2
	exitBroker          = 1
	resultEnv           = "BATCHJOB_RESULT_FILE"
	tmpdirEnv           = "BATCHJOB_TMPDIR" // where result files go (set under injection: the root may be read-only)
	resultLimit         = 4096
)

// The broker URLs carry credentials: the worker needs them, the program does not.
var secretVars = map[string]bool{"BATCHJOB_AMQP_URL": true, "BATCHJOB_REDIS_URL": true}

// Variables the worker sets itself; an object item's keys never replace them.
var reservedVars = map[string]bool{"ITEM": true, "ITEM_ID": true, "ITEM_INDEX": true, "ITEM_FILE": true}

// Variables that make programs load code (core/items.py UNSAFE_VARS, UNSAFE_PREFIXES).
var unsafeVars = map[string]bool{
	"BASH_ENV": true, "ENV": true, "IFS": true, "PATH": true, "PS4": true, "SHELLOPTS": true,
	"GCONV_PATH": true, "PYTHONPATH": true, "PYTHONHOME": true, "PYTHONSTARTUP": true,
	"PYTHONINSPECT": true, "PERL5LIB": true, "PERL5OPT": true, "RUBYOPT": true, "RUBYLIB": true,
	"NODE_OPTIONS": true, "NODE_PATH": true, "JAVA_TOOL_OPTIONS": true,
}

var notEnvChar = regexp.MustCompile(`[^A-Za-z0-9_]`)

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "batchjob-worker: "+format+"\n", args...)
}

// stopper is set on SIGTERM/SIGINT (Pod deletion); the signal is passed on to the running program.
type stopper struct {
	mu     sync.Mutex
	sig    os.Signal
	child  *os.Process
	events chan struct{}
}

func newStopper() *stopper {
	s := &stopper{events: make(chan struct{})}
	ch := make(chan os.Signal, 4)
	signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		for sig := range ch {
			s.mu.Lock()
			first := s.sig == nil
			s.sig = sig
			s.mu.Unlock()
			if first {
				close(s.events)
			}
			s.forward()
		}
	}()
	return s
}

func (s *stopper) requested() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sig != nil
}

func (s *stopper) forward() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sig != nil && s.child != nil {
		_ = s.child.Signal(s.sig)
	}
}

func (s *stopper) setChild(p *os.Process) {
	s.mu.Lock()
	s.child = p
	s.mu.Unlock()
}

// checkProgram says why the program cannot run (before any item is taken), or "".
func checkProgram(program []string) string {
	name := program[0]
	if strings.Contains(name, "/") {
		st, err := os.Stat(name)
		if err != nil || !st.Mode().IsRegular() {
			return fmt.Sprintf("program %s not found", pyRepr(name))
		}
		if syscall.Access(name, 1) != nil { // X_OK
			return fmt.Sprintf("program %s is not executable", pyRepr(name))
		}
		return ""
	}
	if _, err := exec.LookPath(name); err != nil && !errors.Is(err, exec.ErrDot) {
		return fmt.Sprintf("program %s not found on PATH", pyRepr(name))
	}
	return ""
}

type kv struct{ k, v string }

func envSafe(v string) bool {
	return !strings.Contains(v, "\x00") && len(v) <= envValueLimit
}

func envName(key string) string {
	name := strings.ToUpper(notEnvChar.ReplaceAllString(strings.ToValidUTF8(key, "\uFFFD"), "_"))
	if name == "" || (name[0] >= '0' && name[0] <= '9') || name == "ITEM" {
		return ""
	}
	return name
}

func unsafeEnvName(name string) bool {
	return unsafeVars[name] || strings.HasPrefix(name, "LD_") || strings.HasPrefix(name, "DYLD_")
}

// programEnv is ours without broker secrets, then ITEM, the extra variables and an object item's keys.
func programEnv(text string, extra []kv) []string {
	env := map[string]string{}
	var order []string
	for _, e := range os.Environ() {
		k, v, _ := strings.Cut(e, "=")
		if secretVars[k] {
			continue
		}
		if _, seen := env[k]; !seen {
			order = append(order, k)
		}
		env[k] = v
	}
	fixed := map[string]string{}
	var fixedOrder []string
	if envSafe(text) {
		fixed["ITEM"], fixedOrder = text, append(fixedOrder, "ITEM")
	} else {
		logf("the item (%d characters) cannot travel in ITEM (too big or NUL): read it from stdin", utf8.RuneCountInString(text))
	}
	for _, e := range extra {
		if _, seen := fixed[e.k]; !seen {
			fixedOrder = append(fixedOrder, e.k)
		}
		fixed[e.k] = e.v
	}
	if obj := itemObject(text); obj != nil {
		for _, key := range obj.keys {
			name := envName(key)
			_, inEnv := env[name]
			_, inFixed := fixed[name]
			if name == "" || inEnv || inFixed || reservedVars[name] || unsafeEnvName(name) {
				continue
			}
			var s string
			switch v := obj.vals[key].(type) {
			case string:
				s = v
			case nil, bool, pyInt, float64:
				s = dumps(v, true)
			default:
				continue
			}
			if envSafe(s) {
				env[name], order = s, append(order, name)
			}
		}
	}
	out := make([]string, 0, len(order)+len(fixedOrder))
	for _, k := range order {
		if _, over := fixed[k]; !over {
			out = append(out, k+"="+env[k])
		}
	}
	for _, k := range fixedOrder {
		out = append(out, k+"="+fixed[k])
	}
	return out
}

func itemObject(text string) *object {
	if !strings.HasPrefix(strings.TrimLeftFunc(text, pyIsSpace), "{") {
		return nil
	}
	v, err := loads(text)
	if err != nil {
		return nil
	}
	o, _ := v.(*object)
	return o
}

// pyIsSpace is str.isspace for one character (it counts the separators U+001C..U+001F too).
func pyIsSpace(r rune) bool {
	switch r {
	case ' ', '\t', '\n', '\v', '\f', '\r', 0x1c, 0x1d, 0x1e, 0x1f, 0x85, 0xa0, 0x1680, 0x2028, 0x2029, 0x202f, 0x205f, 0x3000:
		return true
	}
	return r >= 0x2000 && r <= 0x200a
}

// startError: the program could not be started at all (a setup problem, not the item's failure).
type startError struct {
	program string
	err     error
	code    int
}

func (e *startError) Error() string {
	msg := e.err.Error()
	var pe *fs.PathError
	if errors.As(e.err, &pe) {
		msg = pe.Err.Error()
	}
	return fmt.Sprintf("cannot run %s: %s", pyRepr(e.program), msg)
}

// runProgram runs the program with stdin (bytes, or an open file) and returns its exit code; a
// program killed by signal N gives 128+N, like a shell.
func runProgram(program []string, stdin io.Reader, env []string, stop *stopper) (int, error) {
	cmd := exec.Command(program[0], program[1:]...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if f, ok := stdin.(*os.File); ok {
		cmd.Stdin = f
	} else {
		cmd.Stdin = stdin // copied by a goroutine; a program that does not read it all is fine
	}
	if err := cmd.Start(); err != nil {
		code := 126
		if errors.Is(err, fs.ErrNotExist) {
			code = 127
		}
		return 0, &startError{program[0], err, code}
	}
	stop.setChild(cmd.Process)
	stop.forward() // a signal that came between taking the item and starting the program
	err := cmd.Wait()
	stop.setChild(nil)
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			return 0, err
		}
	}
	ws := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		return 128 + int(ws.Signal()), nil
	}
	return ws.ExitStatus(), nil
}

// writeSummary writes the one JSON line of the termination message; the default path only if it
// exists and is writable (as in a container), an explicit one is created.
func writeSummary(path *string, summary *object) {
	line := dumps(summary, false)
	target := terminationLog
	if path != nil {
		target = *path
	}
	if target == "" {
		return
	}
	if path == nil {
		st, err := os.Stat(target)
		if err != nil || !st.Mode().IsRegular() || syscall.Access(target, 2) != nil {
			return
		}
	}
	data := []byte(line)
	if len(data) > terminationLogLimit {
		data = data[:terminationLogLimit]
	}
	if err := os.WriteFile(target, data, 0o666); err != nil {
		logf("cannot write the termination message to %s: %s", target, strerror(err))
	}
}

func strerror(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		if errno, ok := pe.Err.(syscall.Errno); ok {
			s := errno.Error()
			return strings.ToUpper(s[:1]) + s[1:] // Python's strerror is capitalised
		}
	}
	return err.Error()
}

// newResultFile is the program's private BATCHJOB_RESULT_FILE.
func newResultFile() (string, error) {
	dir := os.Getenv(tmpdirEnv)
	if dir == "" {
		dir = os.TempDir()
	}
	f, err := os.CreateTemp(dir, "batchjob-result-")
	if err != nil {
		return "", err
	}
	f.Close()
	return f.Name(), nil
}

// itemResult reads (and deletes) the result file: the value, or why it is unusable.
func itemResult(path, where string) (any, string) {
	text := ""
	if f, err := os.Open(path); err == nil {
		data, _ := io.ReadAll(io.LimitReader(f, terminationLogLimit+1))
		f.Close()
		text = string(data)
	}
	os.Remove(path)
	return checkResult(text, where)
}

// checkResult is core/results.py's check_result.
func checkResult(text, where string) (any, string) {
	if strings.TrimFunc(text, pyIsSpace) == "" {
		return nil, ""
	}
	if len(text) >= resultLimit {
		return nil, fmt.Sprintf("%s: its result is %d bytes or more, over the %d-byte limit of a "+
			"termination message: return a reference (a path or URI) to the data instead", where, len(text), resultLimit-1)
	}
	v, err := loads(text)
	if err != nil {
		head := []rune(text)
		if len(head) > 200 {
			head = head[:200]
		}
		return nil, fmt.Sprintf("%s: its result ($%s) is not JSON: %s: %s", where, resultEnv, err, pyRepr(string(head)))
	}
	return v, ""
}

// takeResult moves the program's result into the summary (it must fit the termination message).
func takeResult(path string, summary *object, where string) string {
	value, problem := itemResult(path, where)
	if problem != "" || value == nil {
		return problem
	}
	probe := &object{}
	for _, k := range summary.keys {
		probe.set(k, summary.vals[k])
	}
	probe.set("result", nil)
	room := terminationLogLimit - 1 - utf8.RuneCountInString(dumps(probe, true))
	size := len(dumps(value, false))
	if size > room {
		return fmt.Sprintf("%s: its result is %d bytes; beside the worker's summary at most %d fit the "+
			"%d-byte termination message: return a reference (a path or URI)", where, size, room, terminationLogLimit-1)
	}
	summary.set("result", value)
	return ""
}

// pathClean is str(pathlib.Path(p)): repeated and trailing slashes and "." parts dropped.
func pathClean(p string) string {
	var parts []string
	for _, s := range strings.Split(p, "/") {
		if s != "" && s != "." {
			parts = append(parts, s)
		}
	}
	out := strings.Join(parts, "/")
	if strings.HasPrefix(p, "/") {
		return "/" + out
	}
	if out == "" {
		return "."
	}
	return filepath.ToSlash(out)
}
