"""The RayJob entrypoint: the command line the operator writes and the driver parses. One writer
(`Entrypoint.command`) and one parser (`Entrypoint.parse`, whose options the driver's own argument
parser also registers with `add_arguments`), round-trip tested.

The job document (the whole ExtractionJob object: apiVersion, kind, metadata, spec) travels as
`--job <base64url(zlib(JSON))>`: no shell pass between the RayJob and the driver (the submitter's
`bash -c`, `ray job submit`'s re-joining, Ray's `/bin/sh`) acts on base64url, and compression keeps
large specs well under Linux's 128 KiB limit on one argument (MAX_ARG_STRLEN), past which the
submitter fails with "Argument list too long". The driver validates the document with
`prism_api.parse_job`, the one job loader both sides share.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import shlex
import zlib
from dataclasses import dataclass

from .child_names import MAX_ATTEMPT
from .job import API_VERSION, KIND, ExtractionJob
from .progress_report import PROGRESS_PORT

MODULE = "prism_pipeline"
COMMAND = "run"
JOB_ARG = "--job"
ATTEMPT_ARG = "--attempt"
PROGRESS_PORT_ARG = "--progress-port"

# An encoded document above this is refused before a RayJob is created (the submitter's bash -c
# command line also carries the rest of the entrypoint and `ray job submit`'s own options).
MAX_ENCODED_BYTES = 96 * 1024
# A decoded document above this is refused by the driver (a zlib bomb is not a job).
MAX_DECODED_BYTES = 16 * 1024 * 1024


class EntrypointError(ValueError):
    """The job document cannot be encoded (too large) or decoded (corrupt)."""


def encode_document(document: dict) -> str:
    raw = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    encoded = base64.urlsafe_b64encode(zlib.compress(raw, 9)).decode("ascii").rstrip("=")
    if len(encoded) > MAX_ENCODED_BYTES:
        raise EntrypointError(
            f"the job document is {len(raw)} bytes ({len(encoded)} encoded), above the entrypoint limit of "
            f"{MAX_ENCODED_BYTES} encoded bytes; shorten extractor options or split the job")
    return encoded


def decode_document(encoded: str) -> dict:
    try:
        packed = base64.urlsafe_b64decode(encoded.strip() + "=" * (-len(encoded.strip()) % 4))
        inflater = zlib.decompressobj()
        raw = inflater.decompress(packed, MAX_DECODED_BYTES + 1)
        if len(raw) > MAX_DECODED_BYTES or inflater.unconsumed_tail:
            raise EntrypointError(f"{JOB_ARG}: the document inflates above {MAX_DECODED_BYTES} bytes")
        document = json.loads(raw)
    except (binascii.Error, zlib.error, ValueError) as exc:
        if isinstance(exc, EntrypointError):
            raise
        raise EntrypointError(f"{JOB_ARG}: not a job document written by the operator: {exc}") from None
    if not isinstance(document, dict):
        raise EntrypointError(f"{JOB_ARG}: expected a mapping, got {type(document).__name__}")
    return document


def _whole_number(low: int, high: int):
    """An argparse type: a whole number from `low` to `high`."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high} (got {value})")
        return value
    return parse


_attempt = _whole_number(1, MAX_ATTEMPT)
_port = _whole_number(0, 65535)


def add_arguments(parser: argparse.ArgumentParser | argparse._ActionsContainer, job_required: bool = True) -> None:
    """Register the entrypoint's options (the driver's parser adds its local ones beside them).
    `--job` stays encoded here; `Entrypoint.from_args` decodes it."""
    if job_required:
        parser.add_argument(JOB_ARG, dest="job", metavar="ENCODED", required=True,
                            help="the ExtractionJob as the operator encodes it (base64url of zlib-compressed JSON)")
    parser.add_argument(ATTEMPT_ARG, dest="attempt", type=_attempt, default=1,
                        help="which attempt of the job this is, from 1 (labels the progress samples)")
    parser.add_argument(PROGRESS_PORT_ARG, dest="progress_port", type=_port, default=PROGRESS_PORT,
                        help=f"Prometheus progress endpoint port on the driver's node (default {PROGRESS_PORT})")


def job_document(job: ExtractionJob) -> dict:
    """What the entrypoint carries: the job's identity and its spec in wire form (the driver reads
    it back with prism_api.parse_job)."""
    m = job.metadata
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": m.name, "namespace": m.namespace, "uid": m.uid},
        "spec": job.spec.to_wire(),
    }


@dataclass(frozen=True)
class Entrypoint:
    """What one RayJob attempt runs: the job document, the attempt number and the progress port."""

    document: dict
    attempt: int = 1
    progress_port: int = PROGRESS_PORT

    @classmethod
    def for_job(cls, job: ExtractionJob, attempt: int, progress_port: int = PROGRESS_PORT) -> Entrypoint:
        return cls(job_document(job), attempt, progress_port)

    def command(self) -> str:
        """The RayJob's `spec.entrypoint`. Raises EntrypointError when the document is too large."""
        argv = ["python", "-m", MODULE, COMMAND, JOB_ARG, encode_document(self.document),
                ATTEMPT_ARG, str(_attempt(str(self.attempt))), PROGRESS_PORT_ARG, str(_port(str(self.progress_port)))]
        return shlex.join(argv)

    @classmethod
    def parse(cls, command: str) -> Entrypoint:
        """Read back a command written by `command()`. Raises EntrypointError."""
        argv = shlex.split(command)
        if argv[:4] != ["python", "-m", MODULE, COMMAND]:
            raise EntrypointError(f"not a Prism entrypoint: {command[:80]!r}")
        parser = _Parser(prog=f"python -m {MODULE} {COMMAND}", add_help=False)
        add_arguments(parser)
        return cls.from_args(parser.parse_args(argv[4:]))

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Entrypoint:
        return cls(decode_document(args.job), args.attempt, args.progress_port)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # raise instead of exiting
        raise EntrypointError(message)
