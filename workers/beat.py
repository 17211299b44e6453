"""``celery -A workers.beat beat``: Celery beat on its own, for the scheduled gc.

The app is the workers' (:func:`workers.celery_app.make_celery`) built from the
``LOREG_*`` environment, so its ``beat_schedule`` is the one ``loreg worker --beat``
runs. Run exactly one beat per deployment: each sends its own gc messages.
"""

from __future__ import annotations

from registry.settings import Settings
from workers.celery_app import make_celery

app = make_celery(Settings.from_env())
