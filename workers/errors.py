"""The workers' one error for a job input that cannot work.

Standard library only: the tensor operations (:mod:`workers.ops`), the job
handlers (:mod:`workers.jobs`) and the runner all import it, and the runner is
imported by the API process's embedded executor, which must stay free of torch.
A submission the API refuses up front is :class:`registry.errors.InvalidJob`
(HTTP 422 ``invalid_job``); this is the same concept found later, by a worker.
"""

from __future__ import annotations

__all__ = ["JobInputError"]


class JobInputError(ValueError):
    """A job's inputs or parameters cannot work; the message says what is wrong and how to fix it.

    Raised by the tensor operations and the job handlers alike; the runner fails
    the job at once with the message, since running it again would not help.
    """
