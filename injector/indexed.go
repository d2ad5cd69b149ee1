package main

// indexed: the item of an Indexed Job's Pod is the file <items-dir>/$JOB_COMPLETION_INDEX
// (airflow_batchjob/worker/indexed_mode.py).

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

func itemPath(itemsDir, index string, set bool) (int, string, string) {
	if !set || index == "" {
		return 0, "", "JOB_COMPLETION_INDEX is not set: the indexed mode runs in an Indexed Job's Pods"
	}
	if strings.Trim(index, "0123456789") != "" {
		return 0, "", fmt.Sprintf("JOB_COMPLETION_INDEX=%s is not a non-negative integer", pyRepr(index))
	}
	i, err := strconv.Atoi(index)
	if err != nil {
		return 0, "", fmt.Sprintf("JOB_COMPLETION_INDEX=%s is not a non-negative integer", pyRepr(index))
	}
	path := pathClean(itemsDir + "/" + strconv.Itoa(i))
	if st, err := os.Stat(path); err != nil || !st.Mode().IsRegular() {
		return 0, "", fmt.Sprintf("no item file %s for index %d (is --items-dir the mounted items directory?)", path, i)
	}
	return i, path, ""
}

func runIndexed(o *options, stop *stopper) int {
	index, set := os.LookupEnv("JOB_COMPLETION_INDEX")
	i, path, problem := itemPath(o.itemsDir, index, set)
	if problem != "" {
		logf("%s", problem)
		return exitUsage
	}
	data, err := os.ReadFile(path)
	if err != nil {
		logf("cannot read %s: %s", path, strerror(err))
		return exitUsage
	}
	resultFile, err := newResultFile()
	if err != nil {
		logf("cannot make the result file: %s", err)
		return exitUsage
	}
	defer os.Remove(resultFile)
	env := programEnv(string(data), []kv{{"ITEM_INDEX", strconv.Itoa(i)}, {"ITEM_FILE", path}, {resultEnv, resultFile}})
	stdin, err := os.Open(path)
	if err != nil {
		logf("cannot read %s: %s", path, strerror(err))
		return exitUsage
	}
	code, err := runProgram(o.program, stdin, env, stop)
	stdin.Close()
	if err != nil { // the Python worker ends here with its traceback (exit 1): the program would not start
		logf("%s", err)
		return 1
	}
	summary := &object{}
	summary.set("mode", "indexed")
	summary.set("index", i)
	summary.set("exit_code", code)
	if code == 0 {
		if problem := takeResult(resultFile, summary, fmt.Sprintf("item %d", i)); problem != "" {
			logf("%s", problem)
			code = exitBadResult
			summary.set("exit_code", code)
			r := []rune(problem)
			if len(r) > 1000 {
				r = r[:1000]
			}
			summary.set("error", string(r))
		}
	}
	writeSummary(o.terminationLog, summary)
	return code
}
