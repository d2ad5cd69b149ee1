"""Job manifests in: a template given as a dict, YAML/JSON text, a file or a ``V1Job``, as a plain dict.

Everything downstream works on the API-form (camelCase) dict rather than ``V1Job``: it keeps every
field a user put in a template and is directly serialisable. :func:`to_api` turns the client's
models into that form. ``core/build.py`` builds the Job from what is loaded here.
"""

from __future__ import annotations

import copy
import functools
import os
from collections.abc import Mapping
from typing import Any

import yaml

from airflow_batchjob.core.errors import InvalidJobSpecError

JsonDict = dict[str, Any]

_TEMPLATE_FILE_SUFFIXES = (".yaml", ".yml", ".json")


@functools.cache
def _api_client() -> Any:
    """One client, used only for its pure model→dict conversion (it opens no connection)."""
    from kubernetes.client import ApiClient

    return ApiClient()


def to_api(value: Any) -> Any:
    """A fresh copy of ``value`` in API form: client models (even nested in dicts/lists) become
    camelCase dicts, datetimes ISO strings; plain data is copied."""
    return _api_client().sanitize_for_serialization(value)


def load_template(template: Mapping[str, Any] | str | Any | None) -> JsonDict:
    """Normalise a Job template given as a dict, YAML/JSON text, a file path or a ``V1Job``.

    Only full Job manifests are accepted (``apiVersion``/``kind`` may be omitted); the result is a
    private deep copy, so callers may mutate it freely.
    """
    if template is None:
        return {}
    if isinstance(template, str):
        data = parse_manifest_text(template)
    elif isinstance(template, Mapping):
        data = copy.deepcopy(dict(template))
    elif hasattr(template, "openapi_types"):
        data = to_api(template)
    else:
        raise InvalidJobSpecError(
            f"job template must be a dict, YAML/JSON text, a .yaml/.yml/.json path or a V1Job, "
            f"not {type(template).__name__}"
        )
    if not isinstance(data, dict):
        raise InvalidJobSpecError(
            f"job template must be a mapping (a Job manifest), got {type(data).__name__}"
        )
    api_version, kind = data.get("apiVersion"), data.get("kind")
    if api_version is not None and api_version != "batch/v1":
        raise InvalidJobSpecError(f"job template has apiVersion {api_version!r}; use 'batch/v1' or omit it")
    if kind is not None and kind != "Job":
        hint = " (use its spec.jobTemplate as the template)" if kind == "CronJob" else ""
        raise InvalidJobSpecError(f"job template has kind {kind!r}; it must be a 'Job' manifest{hint}")
    return data


def is_template_file(template: Any) -> bool:
    """Whether a template string names a file (one line ending .yaml/.yml/.json) or holds Jinja:
    both are read or rendered at run time. Other strings are YAML text, parsed at once."""
    if not isinstance(template, str):
        return False
    stripped = template.strip()
    one_file = "\n" not in stripped and stripped.lower().endswith(_TEMPLATE_FILE_SUFFIXES)
    return one_file or "{{" in template or "{%" in template


def parse_manifest_text(text: str, source: str = "job template") -> Any:
    """Read a manifest file or parse inline YAML (JSON is YAML too)."""
    stripped = text.strip()
    if "\n" not in stripped and stripped.lower().endswith(_TEMPLATE_FILE_SUFFIXES):
        if not os.path.isfile(stripped):
            raise InvalidJobSpecError(f"{source} file {stripped!r} does not exist")
        source = stripped
        with open(stripped, encoding="utf-8") as fh:
            text = fh.read()
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise InvalidJobSpecError(f"{source} is not valid YAML: {exc}") from exc
    if len(docs) != 1:
        raise InvalidJobSpecError(f"{source} must contain exactly one YAML document, found {len(docs)}")
    return docs[0]
