# ruff: noqa: UP024, UP031
# (This file must parse on old Pythons: no f-strings, and IOError is not OSError on Python 2.)
"""``@task.batch_map``'s program in each Pod: call the function on this Pod's item.

Run by the image's own Python (``python3 -u <items dir>/batch-map-boot.py <items dir>``; the
operator puts this file in the items' ConfigMap beside ``batch-map.json``, the function's source
and constant arguments). It reads item ``$JOB_COMPLETION_INDEX`` (a JSON file), defines the
function from its source, calls it, and writes the JSON result to ``$BATCHJOB_RESULT_FILE`` (the
container's termination message, where the operator reads every Pod's result).

A failure writes ``{"batch_map_error": {stage, type, message, traceback, python}}`` there instead
(cut to the message's 4 KiB) and exits with:

- 1: the function raised (``stage`` "call"; the full traceback is on stderr, the Pod log);
- 65: its result cannot travel (not JSON, or over the size limit; ``stage`` "result");
- 3: the function cannot run in this image at all (``stage`` "setup": a Python older than
  ``MIN_PYTHON``, source this Python cannot compile). The operator makes this exit code end the
  whole Job at once (a ``FailJob`` rule): every other Pod would fail the same way.

Standard library only, and written so that any Python, 2.7 included, parses it: an image whose
Python is too old gets a message naming both versions, not a syntax error in this file.
"""

import json
import linecache
import os
import sys
import traceback

MIN_PYTHON = (3, 9)
EXIT_RAISED = 1
EXIT_SETUP = 3
EXIT_RESULT = 65
MESSAGE_LIMIT = 4096  # the kubelet keeps at most this many bytes of a termination message
DEFAULT_MESSAGE_PATH = "/dev/termination-log"
PAYLOAD = "batch-map.json"
ERROR_KEY = "batch_map_error"


def version(info):
    return "%d.%d.%d" % tuple(info[:3])


def too_old(info, minimum=MIN_PYTHON):
    """Why this Python cannot run the bootstrap, or None."""
    if tuple(info[:2]) >= tuple(minimum):
        return None
    return (
        "the image's Python is %s; @task.batch_map needs Python %d.%d or newer in the image: use an "
        "image with a newer Python, or name one with python_command" % (version(info), minimum[0], minimum[1])
    )


def fit(doc, limit=MESSAGE_LIMIT):
    """The error document as JSON bytes under ``limit``: the traceback's tail and the message's
    head are kept, the rest cut."""
    err = doc[ERROR_KEY]
    for _ in range(40):
        data = json.dumps(doc, sort_keys=True).encode("ascii")
        if len(data) < limit:
            return data
        tb = err.get("traceback") or ""
        if len(tb) > 200:
            err["traceback"] = "..." + tb[len(tb) // 2 :]
        elif tb:
            err["traceback"] = None
        else:
            message = err.get("message") or ""
            err["message"] = message[: max(80, len(message) // 2)] + "..."
    return data[: limit - 1]


def write(path, data):
    try:
        with open(path, "wb") as f:
            f.write(data)
        return True
    except (IOError, OSError) as e:
        sys.stderr.write("batch_map: cannot write %s: %s\n" % (path, e))
        return False


def fail(path, info, stage, message, error_type=None, tb=None, code=EXIT_SETUP, said=None):
    """Say why on stderr (``said``, else the message) and in the termination message; return the
    exit code."""
    sys.stderr.write("batch_map: %s\n" % (said or message))
    doc = {ERROR_KEY: {"stage": stage, "type": error_type, "message": message, "traceback": tb}}
    doc[ERROR_KEY]["python"] = version(info)
    write(path, fit(doc))
    return code


def read_inputs(items_dir, index):
    """``(payload, item, None)``, or ``(None, None, why not)``."""
    if not index or not index.isdigit():
        return None, None, "JOB_COMPLETION_INDEX=%r: batch_map runs in an Indexed Job's Pods" % (index,)
    try:
        with open(os.path.join(items_dir, PAYLOAD), "rb") as f:
            payload = json.loads(f.read().decode("utf-8"))
        with open(os.path.join(items_dir, str(int(index))), "rb") as f:
            item = json.loads(f.read().decode("utf-8"))
    except (IOError, OSError, ValueError) as e:
        return None, None, "cannot read the function or item %s in %s: %s" % (index, items_dir, e)
    return payload, item, None


def compile_flags():
    """Annotations stay unevaluated text: they may name types only the DAG file imports."""
    import __future__

    feature = getattr(__future__, "annotations", None)
    return feature.compiler_flag if feature is not None else 0


def load_function(payload, info):
    """``(function, None)``, or ``(None, why it cannot run here)``."""
    name, source = payload["name"], payload["source"]
    filename = payload.get("filename") or "<batch_map>"
    built = payload.get("built_with") or "?"
    text = "\n" * (int(payload.get("first_line") or 1) - 1) + source  # tracebacks name the DAG file's lines
    try:
        code = compile(text, filename, "exec", compile_flags(), True)
    except SyntaxError as e:
        where = "line %s: %s" % (e.lineno, (e.text or "").strip()) if e.lineno else ""
        if tuple(info[:2]) < tuple(int(p) for p in built.split(".")[:2] if p.isdigit()):
            fix = "use an image whose Python is %s or newer, or write the function for Python %s" % (
                ".".join(built.split(".")[:2]),
                "%d.%d" % tuple(info[:2]),
            )
        else:
            fix = "write the function for both Pythons"
        return None, (
            "the function %s does not compile on the image's Python %s (the DAG was parsed by Python "
            "%s): SyntaxError: %s %s; %s" % (name, version(info), built, e.msg, where, fix)
        )
    linecache.cache[filename] = (len(text), None, text.splitlines(True), filename)
    namespace = {"__name__": "__batch_map__", "__builtins__": __builtins__}
    try:
        exec(code, namespace)
    except Exception as e:
        return None, "defining the function %s failed: %s: %s" % (name, type(e).__name__, e)
    function = namespace.get(name)
    if not callable(function):
        return None, "the source does not define a function %s" % name
    return function, None


def traceback_text(error):
    """The traceback without this bootstrap's own frame (the call)."""
    tb = error.__traceback__
    tb = tb.tb_next if tb is not None and tb.tb_next is not None else tb
    return "".join(traceback.format_exception(type(error), error, tb))


def encode_result(value, limit):
    """``(bytes, None)``, or ``(None, why the result cannot travel)``."""
    try:
        data = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except (TypeError, ValueError) as e:
        return None, (
            "the function returned a %s, which is not JSON (%s): return JSON values (dict, list, str, "
            "int, float, bool, None)" % (type(value).__name__, e)
        )
    if len(data) >= limit:
        return None, (
            "the function's result is %d bytes as JSON, over the %d-byte limit of a result (a Pod's "
            "termination message carries it): store the data elsewhere and return a reference to it "
            "(a path or URI)" % (len(data), limit - 1)
        )
    return data, None


def preview(item, limit=60):
    text = json.dumps(item)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def main(argv, environ=None, info=None):
    environ = os.environ if environ is None else environ
    info = sys.version_info if info is None else info
    path = environ.get("BATCHJOB_RESULT_FILE") or DEFAULT_MESSAGE_PATH
    why = too_old(info)
    if why is not None:
        return fail(path, info, "setup", why)
    payload, item, why = read_inputs(
        argv[0] if argv else "/batchjob/items", environ.get("JOB_COMPLETION_INDEX")
    )
    if why is None:
        function, why = load_function(payload, info)
    if why is not None:
        return fail(path, info, "setup", why)
    try:
        value = function(item, *payload.get("args", ()), **payload.get("kwargs", {}))
    except (Exception, SystemExit) as e:
        sys.stdout.flush()
        text = traceback_text(e)
        sys.stderr.write(text)
        lines = text.rstrip("\n").split("\n")
        message = ("%s: %s" % (type(e).__name__, e))[:2000]
        said = "the function raised on item %s: %s" % (preview(item), message)
        return fail(path, info, "call", message, type(e).__name__, "\n".join(lines[-40:]), EXIT_RAISED, said)
    data, why = encode_result(value, int(payload.get("max_result_bytes") or MESSAGE_LIMIT))
    if why is not None:
        return fail(path, info, "result", why, code=EXIT_RESULT)
    sys.stdout.flush()
    return 0 if write(path, data) else EXIT_RESULT


if __name__ == "__main__":
    if sys.path and sys.path[0] == os.path.dirname(os.path.abspath(__file__)):
        del sys.path[0]  # the items directory is no place to import modules from
    sys.exit(main(sys.argv[1:]))
