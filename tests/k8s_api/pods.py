"""Pods of the Kubernetes API test double: the status the kubelet of its one imaginary node would report.

Part of a test double for the collection's tests, not a kubelet. The controller (controller.py) decides which pods
exist; this module builds their status:
- a pod runs on node-1 at once (phase Running, an IP from 10.244.0.0/16), and is Ready unless one of its containers
  has an image whose tag ends with ":bad";
- a ":bad" container crash-loops: its first run has just failed (state terminated, reason Error, exit code 1); from
  then on crashed() counts restarts (state waiting, reason CrashLoopBackOff, lastState terminated with exit code 1);
- imageID is what containerd reports: the image's repository normalized (docker.io/library/ for a short name,
  docker.io/ for a name without a registry), the tag dropped, and a digest. The digest is the sha256 of the normalized
  reference with its tag (so nginx:1.25 and docker.io/library/nginx:1.25 are the same image, nginx:1.26 another one);
  an image given by digest keeps its own. `image` is the spec's image as written (containerd often reports the
  normalized name there; the double does not).
"""
import hashlib

NODE_NAME = "node-1"
HOST_IP = "10.0.0.1"
# The alphabet of generated name suffixes in k8s.io/apimachinery (no vowels, no 0 1 3: suffixes spell no words).
NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"
CONDITIONS = ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled")


def is_bad_image(image):
    return str(image or "").endswith(":bad")


def normalize(image):
    """'nginx:1.25' -> ('docker.io/library/nginx', '1.25', None), as the docker reference grammar normalizes names."""
    name, _at, digest = str(image).partition("@")
    tag = None
    if ":" in name.rsplit("/", 1)[-1]:  # a colon before the last slash is a registry port, not a tag
        name, tag = name.rsplit(":", 1)
    first, slash, rest = name.partition("/")
    if not slash:
        name = "docker.io/library/" + name
    elif first in ("index.docker.io", "docker.io"):
        name = "docker.io/" + (rest if "/" in rest else "library/" + rest)
    elif "." not in first and ":" not in first and first != "localhost":
        name = "docker.io/" + name
    if tag is None and not digest:
        tag = "latest"
    return name, tag, digest or None


def image_id(image):
    """The imageID a container runtime reports for image: REPOSITORY@sha256:DIGEST (deterministic, see above)."""
    name, tag, digest = normalize(image)
    if digest:
        return "%s@%s" % (name, digest)
    return "%s@sha256:%s" % (name, hashlib.sha256(("%s:%s" % (name, tag)).encode()).hexdigest())


def container_id(pod, container_name, restarts):
    """A containerd ID per run of a container: every restart is a new container."""
    text = "%s/%s/%d" % (pod["metadata"]["uid"], container_name, restarts)
    return "containerd://" + hashlib.sha256(text.encode()).hexdigest()


def _backoff(restarts):
    """The kubelet's crash-loop back-off as Go prints it: 10s doubling per restart up to 5m0s."""
    seconds = min(10 * 2 ** max(restarts - 1, 0), 300)
    return "%dm%ds" % divmod(seconds, 60) if seconds >= 60 else "%ds" % seconds


def container_status(pod, container, stamp, restarts=0):
    """The status of one container: running and ready, or (":bad") crashed `restarts` times, the last one at stamp."""
    name, image = container.get("name", ""), container.get("image", "")
    cid = container_id(pod, name, restarts)
    status = {"name": name, "image": image, "imageID": image_id(image), "containerID": cid,
              "ready": True, "started": True, "restartCount": restarts, "lastState": {},
              "state": {"running": {"startedAt": stamp}}}
    if not is_bad_image(image):
        return status
    crash = {"exitCode": 1, "reason": "Error", "startedAt": stamp, "finishedAt": stamp, "containerID": cid}
    status.update(ready=False, started=False)
    if restarts == 0:  # the first run has failed and has not been restarted yet
        status["state"] = {"terminated": crash}
        return status
    meta = pod["metadata"]
    message = "back-off %s restarting failed container=%s pod=%s_%s(%s)" % (
        _backoff(restarts), name, meta["name"], meta["namespace"], meta["uid"])
    status["lastState"] = {"terminated": crash}
    status["state"] = {"waiting": {"reason": "CrashLoopBackOff", "message": message}}
    return status


def _conditions(ready, unready_names, stamp):
    conditions = []
    for kind in CONDITIONS:
        cond = {"type": kind, "status": "True", "lastProbeTime": None, "lastTransitionTime": stamp}
        if kind in ("Ready", "ContainersReady") and not ready:
            cond.update(status="False", reason="ContainersNotReady",
                        message="containers with unready status: [%s]" % " ".join(unready_names))
        conditions.append(cond)
    return conditions


def _qos_class(containers):
    resources = [c.get("resources") or {} for c in containers]
    if not any(r.get("requests") or r.get("limits") for r in resources):
        return "BestEffort"
    for res in resources:
        limits, requests = res.get("limits") or {}, res.get("requests") or {}
        if any(limits.get(k) is None or requests.get(k, limits[k]) != limits[k] for k in ("cpu", "memory")):
            return "Burstable"
    return "Guaranteed"


def running_status(pod, pod_ip):
    """The status of a pod that the node has just started (its containers' first runs)."""
    stamp = pod["metadata"]["creationTimestamp"]
    containers = (pod.get("spec") or {}).get("containers") or []
    status = {"phase": "Running", "hostIP": HOST_IP, "hostIPs": [{"ip": HOST_IP}], "podIP": pod_ip,
              "podIPs": [{"ip": pod_ip}], "startTime": stamp, "qosClass": _qos_class(containers),
              "containerStatuses": [container_status(pod, c, stamp) for c in containers]}
    unready = [c["name"] for c in status["containerStatuses"] if not c["ready"]]
    status["conditions"] = _conditions(not unready, unready, stamp)
    return status


def crash_looping(pod):
    return any(is_bad_image(c.get("image")) for c in (pod.get("spec") or {}).get("containers") or [])


def crashed(pod, stamp):
    """The pod's status after its ":bad" containers crashed once more, at stamp (their restartCount goes up by one)."""
    status = dict(pod["status"])
    by_name = {c.get("name"): c for c in (pod.get("spec") or {}).get("containers") or []}
    statuses = []
    for current in status.get("containerStatuses") or []:
        container = by_name.get(current["name"]) or {}
        if is_bad_image(container.get("image")):
            current = container_status(pod, container, stamp, current.get("restartCount", 0) + 1)
        statuses.append(current)
    status["containerStatuses"] = statuses
    # a condition keeps the time it last changed: the pod's readiness does not change by crashing again
    status["conditions"] = pod["status"].get("conditions") or []
    return status


def is_ready(pod):
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])
