"""Importing the heavy libraries (LiteLLM, the OpenAI SDK's resources, the
scoring libraries) with Python's cyclic garbage collector paused.

An import creates objects by the hundred thousand (LiteLLM ~430k, most of
them pydantic models' schemas), nearly all of them kept for the life of the
process. The collector, triggered every 700 new container objects, walks the
young ones again and again during the import and, as they age, runs full
collections over all of them — and frees almost nothing: 1,830 objects of
LiteLLM's import were garbage. Paused, ``import litellm`` took 1.64–1.88 s
against 2.03–2.59 s here (3 runs each, a quiet 2-core machine), with the
same RSS (165 vs 164 MB). See the :mod:`gc` docs ("Automatic garbage
collection can be disabled ... if you are sure your program does not
create reference cycles", and ``gc.freeze`` for objects that live to the
end).
"""

from __future__ import annotations

import contextlib
import gc
from typing import Iterator


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector for the ``with`` block (an
    import); it is enabled again afterwards only if it was enabled before,
    and nothing else changes (reference counting still frees what is not in
    a cycle)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
