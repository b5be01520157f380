"""`prism render FILE...`: print the RayCluster and RayJob the operator would create (for GitOps review)."""

from __future__ import annotations

import argparse
import sys

HELP = ("Print, as YAML, the RayCluster and RayJob the operator would create for each ExtractionJob "
        "(for review; names carry a hash of the job's uid, so pass --uid to match a live job).")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help="ExtractionJob manifests (YAML)")
    parser.add_argument("-n", "--namespace", default=None,
                        help="namespace for manifests that name none (default: 'default')")
    parser.add_argument("--uid", default=None,
                        help="the job's metadata.uid: gives the exact child names and owner references")
    parser.add_argument("--attempt", type=int, default=1, help="RayJob attempt number (default 1)")


def run(args: argparse.Namespace) -> int:
    import yaml

    from prism_api import SpecError, parse_job
    from prism_api.child_names import MAX_ATTEMPT
    from prism_api.entrypoint import EntrypointError
    from prism_operator.builders import build_ray_cluster, build_ray_job

    from .manifests import documents_of

    if not 1 <= args.attempt <= MAX_ATTEMPT:
        print(f"--attempt: must be between 1 and {MAX_ATTEMPT} (got {args.attempt})", file=sys.stderr)
        return 2
    documents, bad = documents_of(args.files)
    out: list[dict] = []
    for doc in documents:
        body = doc.body
        if isinstance(body, dict) and isinstance(body.get("metadata"), dict):
            body = {**body, "metadata": {**body["metadata"]}}
            body["metadata"].setdefault("namespace", args.namespace or "default")
            if args.uid:
                body["metadata"]["uid"] = args.uid
        try:
            job = parse_job(body, target="cluster")
        except SpecError as exc:
            bad += 1
            for err in exc.errors:
                print(f"{doc.where}: {err}", file=sys.stderr)
            continue
        try:
            rayjob = build_ray_job(job, args.attempt)
        except EntrypointError as exc:
            bad += 1
            print(f"{doc.where}: spec: {exc}", file=sys.stderr)
            continue
        if not job.spec.cluster.existing:
            out.append(build_ray_cluster(job))
        out.append(rayjob)
    if out:
        print(yaml.safe_dump_all(out, sort_keys=False, width=120), end="")
    return 1 if bad else 0
