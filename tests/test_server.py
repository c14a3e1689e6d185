"""The gunicorn glue: a worker's start-up objects are frozen out of the garbage collector
(full collections over them were the hook calls' worst-case pauses)."""

from __future__ import annotations

import gc
import weakref

from cds_service.config import load_settings
from cds_service.server import _Gunicorn, freeze_startup_objects


def test_worker_load_freezes_what_start_up_built(tmp_path):
    settings = load_settings(overrides={"data_dir": str(tmp_path), "auth": "disabled"})
    gc.unfreeze()
    try:
        app = _Gunicorn(settings, {"bind": "127.0.0.1:0"}).load()
        assert app.extensions["cds.advisor"] is not None
        frozen = gc.get_freeze_count()
        assert frozen > 10_000  # modules, value sets, validators: not a handful
        # what start-up made is out of the collector's tracked generations
        tracked = {id(o) for o in gc.get_objects()}
        assert id(app) not in tracked
    finally:
        gc.unfreeze()


class _Node:
    """Weak-referenceable, so the test can see whether a cycle of them was freed."""


def test_freeze_collects_garbage_first():
    gc.unfreeze()
    gc.disable()  # only freeze_startup_objects may collect during this test
    try:
        node = _Node()
        node.self = node  # a reference cycle: only the cyclic collector frees it
        alive = weakref.ref(node)
        del node
        assert alive() is not None
        freeze_startup_objects()
        # collected before the freeze, not kept alive forever in the permanent generation
        assert alive() is None
    finally:
        gc.enable()
        gc.unfreeze()
