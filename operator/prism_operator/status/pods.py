"""Pod problems worth surfacing while a cluster provisions (ImagePullBackOff, Unschedulable, ...)."""

from __future__ import annotations

WAITING_PROBLEMS = frozenset({
    "ImagePullBackOff", "ErrImagePull", "InvalidImageName", "CrashLoopBackOff",
    "CreateContainerConfigError", "CreateContainerError", "RunContainerError",
})
MAX_PROBLEMS = 5


def pod_problems(pods: list[dict]) -> list[str]:
    """One line per stuck pod: `pod NAME: REASON: message`, sorted, at most MAX_PROBLEMS."""
    lines: list[str] = []
    for pod in pods:
        name = pod.get("metadata", {}).get("name", "?")
        status = pod.get("status") or {}
        for cond in status.get("conditions") or []:
            if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
                lines.append(f"pod {name}: {cond.get('reason') or 'Unschedulable'}: {cond.get('message', '')}".rstrip(": "))
        for cs in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
            waiting = (cs.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in WAITING_PROBLEMS:
                lines.append(f"pod {name}: {waiting['reason']}: {waiting.get('message', '')}".rstrip(": "))
    lines.sort()
    return lines[:MAX_PROBLEMS]
