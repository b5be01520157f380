"""The driver's listing thread: list the source page by page, decide each file, feed the stream.

For each page of the listing (sources.iter_source) it
- counts the page's files into files_total and reports it (the progress actor's `listed`: filesTotal
  grows, and says Complete once the listing reached its end);
- looks up the page's file records in one batched request (Sink.records) and decides each file
  (incremental.Plan.decide): a file unchanged since its record is skipped here, from the listing
  alone, without a byte read; every other file is handed to the tracker (`expect`) and put into the
  feed (feed.py) in blocks;
- accounts entries the listing could not carry as failed files.

It runs beside the stream, so lookups overlap decoding and extraction, and it waits while
IN_FLIGHT_FILES files are in the stream, so the listing runs only that far ahead of the pipeline.
Nothing it holds grows with the source, except the listed uris when spec.deletedFiles is Delete (the files no longer listed are
only known once the whole listing is; about 100 bytes a file). The feed's queue is created when the
first file needs work, so a re-run where every file is unchanged starts no pipeline and loads no model.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

from prism_pipeline import feed
from prism_pipeline.incremental import Plan
from prism_pipeline.ledger import FileTracker
from prism_pipeline.sources import Listing, SourceError

log = logging.getLogger("prism.pipeline")

# Files the listing may have in the stream at once (sent, no outcome yet). Listing is much faster
# than extraction: without this bound the whole source would be queued in front of the read stage,
# in the object store and in the driver's tracker. Ten pages keeps every stage busy.
IN_FLIGHT_FILES = 10_000


class ListingError(Exception):
    """The listing or a lookup of file records broke off; the message says where and why."""


class Lister(threading.Thread):
    def __init__(self, uri: str, pages: Iterator[Listing], plan: Plan, sink: Any, tracker: FileTracker,
                 progress: Any, keep_uris: bool = False):
        super().__init__(name="prism-listing", daemon=True)
        self._uri, self._pages, self._plan, self._sink = uri, pages, plan, sink
        self._tracker, self._progress = tracker, progress
        self.listed_uris: set[str] | None = set() if keep_uris else None
        self.unlisted = 0            # entries the listing could not carry (failed files)
        self.sent = 0                # files put into the stream
        self.complete = False        # the listing reached its end
        self.error: ListingError | None = None
        self.queue: Any = None       # the feed, once a file needs work
        self._blocker = feed.Blocker()
        self.feeding = threading.Event()  # the queue exists: the stream can start
        self.done = threading.Event()     # the thread ended (complete, failed or stopped)
        self.stop = threading.Event()     # set by the driver: stop listing and feeding

    def run(self) -> None:
        try:
            for page in self._pages:
                if self.stop.is_set():
                    return
                self._page(page)
            self.complete = True
        except SourceError as err:
            self.error = ListingError(f"the listing of {self._uri} broke off after {self._tracker.files_total} "
                                      f"files: {err}")
        except ListingError as err:
            self.error = err
        except Exception as err:  # a bug must end the job with a message, not hang it
            self.error = ListingError(f"listing {self._uri} failed after {self._tracker.files_total} files: "
                                      f"{type(err).__name__}: {err}")
        finally:
            self._report()
            if self.queue is not None:
                self._put(None)  # the end of the stream
            self.done.set()

    def _page(self, page: Listing) -> None:
        tracker = self._tracker
        tracker.listed(len(page.refs), page.failures)
        self.unlisted += len(page.failures)
        records = self._records([r.uri for r in page.refs]) if page.refs else {}
        work, unchanged = [], 0
        for ref in page.refs:
            if self.listed_uris is not None:
                self.listed_uris.add(ref.uri)
            decision = self._plan.decide(ref, records.get(ref.uri))
            if decision.unchanged:
                unchanged += 1
            else:
                work.append((ref, decision))
        tracker.skip_unchanged(unchanged)
        self._report()
        if not work or not self._room_for(len(work)):
            return
        for ref, decision in work:
            tracker.expect(ref.uri, decision.pending)
        if self.queue is None:
            self.queue = feed.make_queue()
            self.feeding.set()
        rows = [{"uri": ref.uri, "size": int(ref.size), "prev_hash": decision.prev_hash} for ref, decision in work]
        for block in self._blocker.split(rows):
            if not self._put(block):
                return
        self.sent += len(rows)

    def _room_for(self, files: int) -> bool:
        """Wait until `files` more fit within IN_FLIGHT_FILES; False once the driver said stop."""
        while self._tracker.in_stream + files > max(IN_FLIGHT_FILES, files):
            if self.stop.wait(0.1):
                return False
        return not self.stop.is_set()

    def _records(self, uris: list[str]) -> dict[str, dict[str, Any]]:
        try:
            return self._sink.records(uris)
        except Exception as err:
            raise ListingError(f"reading the file records of {len(uris)} listed files from "
                               f"{self._sink.collection!r} failed: {err}") from err

    def _report(self) -> None:
        delta, failures = self._tracker.progress_delta()
        if not delta.is_zero() or failures:
            self._progress.add.remote(delta, failures)
        self._progress.listed.remote(self._tracker.files_total, self.complete)

    def _put(self, item: Any) -> bool:
        """Into the feed, waiting while it is full; False once the driver said stop."""
        from ray.util.queue import Full

        while not self.stop.is_set():
            try:
                self.queue.put(item, block=True, timeout=feed.FEED_WAIT_S)
                return True
            except Full:
                continue
        return False

    def close(self) -> None:
        """Stop listing and feeding, and let the feed's actor go."""
        self.stop.set()
        if self.is_alive():
            self.join(timeout=10)
        if self.queue is not None:
            import ray

            try:
                ray.kill(self.queue.actor)
            except Exception as err:  # already gone with Ray
                log.debug("stopping the feed: %s", err)
