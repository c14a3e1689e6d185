"""The gunicorn glue: a worker's start-up objects are frozen out of the garbage collector
(full collections over them were the hook calls' worst-case pauses)."""

from __future__ import annotations

import gc

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


def test_freeze_collects_garbage_first():
    gc.unfreeze()
    try:
        cycle: list = []
        cycle.append(cycle)
        del cycle  # unreachable: must not be frozen alive
        freeze_startup_objects()
        assert gc.garbage == []
        assert gc.get_count()[0] < 50  # the collection ran just before freezing
    finally:
        gc.unfreeze()
