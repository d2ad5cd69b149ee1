// Command batchjob-worker is the in-Pod worker of airflow-batchjob as one static binary, for images
// without Python: `batchjob-worker <redis|rabbitmq|indexed> [options] -- PROGRAM [ARGS...]`, with
// the command line, broker protocol, envelope, results, exit codes and signals of
// `python -m airflow_batchjob.worker` (airflow_batchjob/worker/cli.py). tests/conformance runs
// one suite against both. `batchjob-worker install DIR` copies the binary into DIR (the injection's
// init container: core/inject.py).
package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

const prog = "batchjob-worker"

type options struct {
	mode           string
	program        []string
	queue          string
	maxAttempts    int
	leaseSeconds   int
	pollSeconds    float64
	itemsDir       string
	terminationLog *string // nil: /dev/termination-log if the container has one
}

type usageError string

func (e usageError) Error() string { return string(e) }

const usage = `usage: batchjob-worker {rabbitmq,redis,indexed} [options] -- PROGRAM [ARGS...]

Feed work items to an unchanged program, one at a time.

  rabbitmq --queue Q [--max-attempts 3]
  redis --queue Q [--lease-seconds 30] [--max-attempts 3] [--poll-seconds 1.0]
  indexed --items-dir DIR
  every mode: [--termination-log PATH]
  install DIR   copy this binary to DIR/batchjob-worker (the injection's init container)
`

// flags of each mode, as worker/cli.py's argparse parsers declare them.
var modeFlags = map[string][]string{
	"rabbitmq": {"--queue", "--max-attempts", "--termination-log"},
	"redis":    {"--queue", "--lease-seconds", "--max-attempts", "--poll-seconds", "--termination-log"},
	"indexed":  {"--items-dir", "--termination-log"},
}

func parseArgs(argv []string) (*options, error) {
	cut := -1
	for i, a := range argv {
		if a == "--" {
			cut = i
			break
		}
	}
	if cut < 0 {
		for _, a := range argv {
			if a == "-h" || a == "--help" {
				fmt.Print(usage)
				os.Exit(0)
			}
		}
		return nil, usageError("give the program after '--', e.g. ... redis --queue q -- python work.py")
	}
	o := &options{program: argv[cut+1:], maxAttempts: 3, leaseSeconds: 30, pollSeconds: 1.0}
	if len(o.program) == 0 {
		return nil, usageError("the program after '--' is empty")
	}
	args := argv[:cut]
	if len(args) == 0 {
		return nil, usageError(prog + ": the following arguments are required: mode")
	}
	o.mode = args[0]
	flags, ok := modeFlags[o.mode]
	if !ok {
		return nil, usageError(fmt.Sprintf("%s: argument mode: invalid choice: %s (choose from 'rabbitmq', 'redis', 'indexed')", prog, pyRepr(o.mode)))
	}
	sub := prog + " " + o.mode
	seen := map[string]bool{}
	for i := 1; i < len(args); i++ {
		name, value, hasValue := strings.Cut(args[i], "=")
		flag := ""
		for _, f := range flags { // argparse takes any unambiguous prefix of a long option
			if f == name {
				flag = f
				break
			}
			if strings.HasPrefix(f, name) && len(name) > 2 {
				if flag != "" {
					return nil, usageError(fmt.Sprintf("%s: ambiguous option: %s", sub, name))
				}
				flag = f
			}
		}
		if flag == "" {
			return nil, usageError(fmt.Sprintf("%s: unrecognized arguments: %s", sub, strings.Join(args[i:], " ")))
		}
		if !hasValue {
			if i+1 >= len(args) {
				return nil, usageError(fmt.Sprintf("%s: argument %s: expected one argument", sub, flag))
			}
			i++
			value = args[i]
		}
		seen[flag] = true
		var err error
		switch flag {
		case "--queue":
			o.queue = value
		case "--items-dir":
			o.itemsDir = value
		case "--termination-log":
			v := value
			o.terminationLog = &v
		case "--max-attempts":
			o.maxAttempts, err = positiveInt(value)
		case "--lease-seconds":
			o.leaseSeconds, err = positiveInt(value)
		case "--poll-seconds":
			o.pollSeconds, err = positiveFloat(value)
		}
		if err != nil {
			return nil, usageError(fmt.Sprintf("%s: argument %s: %s", sub, flag, err))
		}
	}
	for _, req := range []string{"--queue", "--items-dir"} {
		if contains(flags, req) && !seen[req] {
			return nil, usageError(fmt.Sprintf("%s: the following arguments are required: %s", sub, req))
		}
	}
	if o.terminationLog == nil {
		if v, ok := os.LookupEnv("BATCHJOB_TERMINATION_LOG"); ok {
			o.terminationLog = &v
		}
	}
	return o, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func positiveInt(text string) (int, error) {
	v, err := strconv.Atoi(strings.TrimSpace(text))
	if err != nil {
		return 0, fmt.Errorf("%s is not an integer", pyRepr(text))
	}
	if v < 1 {
		return 0, fmt.Errorf("%d must be at least 1", v)
	}
	return v, nil
}

func positiveFloat(text string) (float64, error) {
	v, err := strconv.ParseFloat(strings.TrimSpace(text), 64)
	if err != nil {
		return 0, fmt.Errorf("%s is not a number", pyRepr(text))
	}
	if !(v > 0) {
		return 0, fmt.Errorf("%s must be above 0", floatRepr(v))
	}
	return v, nil
}

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(argv []string) int {
	if len(argv) > 0 && argv[0] == "install" {
		return install(argv[1:])
	}
	o, err := parseArgs(argv)
	if err != nil {
		logf("%s", err)
		return exitUsage
	}
	if problem := checkProgram(o.program); problem != "" { // before any item: a setup error must not eat the queue
		logf("%s", problem)
		if strings.Contains(problem, "not found") {
			return 127
		}
		return 126
	}
	stop := newStopper()
	switch o.mode {
	case "indexed":
		return runIndexed(o, stop)
	case "redis":
		return runRedis(o, stop)
	default:
		return runRabbit(o, stop)
	}
}

// install copies this executable to DIR/batchjob-worker (mode 0755) and makes DIR/tmp, where the
// worker keeps its result files when the root filesystem is read-only.
func install(args []string) int {
	if len(args) != 1 {
		logf("usage: %s install DIR", prog)
		return exitUsage
	}
	self, err := os.ReadFile("/proc/self/exe")
	if err != nil {
		logf("cannot read this binary: %s", err)
		return exitUsage
	}
	dir := args[0]
	tmp := dir + "/.batchjob-worker.partial"
	if err := os.WriteFile(tmp, self, 0o755); err != nil {
		logf("cannot write %s: %s", tmp, err)
		return exitUsage
	}
	if err := os.Chmod(tmp, 0o755); err != nil { // the umask must not take the execute bits away
		logf("cannot chmod %s: %s", tmp, err)
		return exitUsage
	}
	if err := os.Rename(tmp, dir+"/batchjob-worker"); err != nil {
		logf("cannot install into %s: %s", dir, err)
		return exitUsage
	}
	// Sticky and world-writable, like /tmp: the main container may run as another user.
	if err := os.Mkdir(dir+"/tmp", 0o777); err != nil && !os.IsExist(err) {
		logf("cannot make %s/tmp: %s", dir, err)
		return exitUsage
	}
	if err := os.Chmod(dir+"/tmp", 0o1777); err != nil {
		logf("cannot chmod %s/tmp: %s", dir, err)
		return exitUsage
	}
	return 0
}
