"""The hostile-input corpus: one JSON file per case in ``tests/data/hostile/``.

A case names the URL path, the body and the outcomes allowed. The body is given as one of:

- ``body``: a JSON value, sent as is;
- ``raw`` / ``raw_base64``: exact bytes (truncated JSON, bad encodings);
- ``base`` + ``patch``: a valid request from ``_base/`` with ``set``/``remove`` operations at
  JSON Pointer paths (``raw`` in a ``set`` puts a non-standard literal such as ``NaN`` in place);
- ``generate``: built at test time (10 MiB bodies, recursion bombs, thousands of orders), so
  nothing big is committed.

``expect`` holds ``status`` (the code: one, when 200 is possible; several 4xx codes may be
allowed), optionally ``diagnostics`` (text the 4xx must contain), ``cards`` (``valid`` |
``empty`` | ``same_as_base``), ``advice`` (an expected outcome in the fixture-scenario format,
judged by ``cds_service.compare`` as replay judges it: topics, indicators, alternatives, capped
days; never wording), ``answer`` (members the JSON answer must have, e.g. feedback counts) and
``max_seconds`` (the CPU time the in-process request may use).
``real_server`` marks the subset also sent to a real multi-worker ``diazepam-cds serve``;
``known_issue`` marks a case that still fails because of a bug in another module (strict xfail).
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

CORPUS = Path(__file__).resolve().parents[1] / "data" / "hostile"
DEFAULT_MAX_SECONDS = 5.0
_RAW = "\x00raw:{}\x00"


@dataclass(frozen=True)
class Case:
    name: str
    spec: dict[str, Any]

    @property
    def path(self) -> str:
        return self.spec["path"]

    @property
    def content_type(self) -> str | None:
        return self.spec.get("content_type", "application/json")

    @property
    def expect(self) -> dict[str, Any]:
        return self.spec["expect"]

    @property
    def max_seconds(self) -> float:
        return float(self.expect.get("max_seconds", DEFAULT_MAX_SECONDS))

    @property
    def real_server(self) -> bool:
        return bool(self.spec.get("real_server"))

    @property
    def in_process(self) -> bool:
        return not self.spec.get("real_server_only")

    @property
    def chunked(self) -> bool:
        return bool(self.spec.get("generate", {}).get("chunked"))

    def body(self) -> bytes:
        return build_body(self.spec)


def load_cases() -> list[Case]:
    return [
        Case(path.stem, json.loads(path.read_text(encoding="utf-8")))
        for path in sorted(CORPUS.glob("*.json"))
    ]


@cache
def base_request(name: str) -> dict[str, Any]:
    return json.loads((CORPUS / "_base" / f"{name}.json").read_text(encoding="utf-8"))


def _walk(doc: Any, pointer: str) -> tuple[Any, str | int]:
    parts = [p.replace("~1", "/").replace("~0", "~") for p in pointer.lstrip("/").split("/")]
    for part in parts[:-1]:
        doc = doc[int(part)] if isinstance(doc, list) else doc[part]
    last = parts[-1]
    return doc, int(last) if isinstance(doc, list) else last


def get(doc: Any, pointer: str) -> Any:
    parent, key = _walk(doc, pointer)
    return parent[key]


def put(doc: Any, pointer: str, value: Any) -> None:
    parent, key = _walk(doc, pointer)
    parent[key] = value


def _dump(doc: Any, raws: list[str]) -> bytes:
    text = json.dumps(doc, ensure_ascii=False)
    for i, raw in enumerate(raws):
        text = text.replace(json.dumps(_RAW.format(i)), raw)
    return text.encode("utf-8")


def _patched(spec: dict[str, Any]) -> bytes:
    doc = copy.deepcopy(base_request(spec["base"]))
    raws: list[str] = []
    for op in spec.get("patch", []):
        if op["op"] == "remove":
            parent, key = _walk(doc, op["path"])
            del parent[key]
        elif "raw" in op:
            put(doc, op["path"], _RAW.format(len(raws)))
            raws.append(op["raw"])
        else:
            put(doc, op["path"], op["value"])
    return _dump(doc, raws)


def _generated(gen: dict[str, Any]) -> bytes:
    kind = gen["kind"]
    if kind == "nesting":
        return (gen["open"] * gen["depth"] + gen["close"] * gen["depth"]).encode()
    doc = copy.deepcopy(base_request(gen["base"]))
    if kind == "truncate":
        return json.dumps(doc).encode()[: gen["length"]]
    if kind == "suffix":
        return json.dumps(doc).encode() + gen["suffix"].encode()
    if kind == "prefix":
        return base64.b64decode(gen["prefix_base64"]) + json.dumps(doc).encode()
    if kind == "padding":
        doc["extension"] = {"org.example.padding": ""}
        room = gen["bytes"] - len(json.dumps(doc).encode())
        doc["extension"]["org.example.padding"] = "x" * max(room, 0)
        return json.dumps(doc).encode()
    if kind == "nested_extension":
        nested: Any = {}
        for _ in range(gen["depth"]):
            nested = {"n": nested}
        doc["extension"] = {"org.example.nested": nested}
        return json.dumps(doc).encode()
    if kind == "raw_patch":
        put(doc, gen["path"], _RAW.format(0))
        return _dump(doc, [gen["raw"]])
    if kind == "long_string":
        put(doc, gen["path"], "x" * gen["length"])
        return json.dumps(doc).encode()
    if kind == "list":
        put(doc, gen["path"], [gen["item"]] * gen["count"])
        return json.dumps(doc).encode()
    if kind == "repeat":
        template = gen.get("item") or get(doc, gen["path"])[0]
        out = []
        for i in range(gen["count"]):
            item = copy.deepcopy(template)
            resource = item.get("resource") if isinstance(item, dict) else None
            if gen.get("unique_ids") and isinstance(resource, dict):
                resource["id"] = f"{resource.get('id', 'r')}-{i}"
                item["fullUrl"] = f"urn:uuid:00000000-0000-4000-8000-{i:012d}"
            out.append(item)
        put(doc, gen["path"], out)
        return json.dumps(doc).encode()
    raise ValueError(f"unknown generator {kind!r}")


def build_body(spec: dict[str, Any]) -> bytes:
    if "raw" in spec:
        return spec["raw"].encode("utf-8")
    if "raw_base64" in spec:
        return base64.b64decode(spec["raw_base64"])
    if "body" in spec:
        return json.dumps(spec["body"]).encode("utf-8")
    if "base" in spec:
        return _patched(spec)
    return _generated(spec["generate"])


def chunks(data: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]
