"""PodSecurity admission: the Pod Security Standards' baseline and restricted checks.

Ported from k8s.io/pod-security-admission (kubernetes/kubernetes, staging/src/k8s.io/
pod-security-admission), with the checks' own wording, so a test sees the message a real API
server sends:
- policy/check_*.go: each check's ForbiddenReason and ForbiddenDetail (cited per check below);
- policy/checks.go AggregateCheckResult.ForbiddenDetail: `reason (detail), reason (detail)`;
- policy/registry.go EvaluatePod: baseline checks first, then restricted ones, each group in
  the order its files register (file name order);
- api/helpers.go PolicyToEvaluate: levels and versions from the namespace's
  `pod-security.kubernetes.io/<mode>[-version]` labels, default privileged:latest;
- admission/admission.go EvaluatePod: a pod (enforce) answers 403 `pods "<name>" is forbidden:
  violates PodSecurity "<level>:<version>": <detail>` (admission/response.go forbiddenResponse is
  apierrors.NewForbidden); a pod controller such as a Deployment (ValidatePodController) is never
  refused: it gets `would violate PodSecurity ...` as a warning when the *warn* level forbids it.

Covered checks: baseline privileged, host namespaces, hostPath volumes, host ports, baseline
capabilities; restricted allowPrivilegeEscalation, capabilities, volume types, runAsNonRoot,
runAsUser and seccompProfile. Not modelled: baseline seccomp (Unconfined), AppArmor, SELinux,
/proc mount, sysctls, probes' host field, Windows host process, exemptions, user-namespace
relaxations and per-version differences (every version behaves as latest).
"""

from .status import ApiError

LEVELS = ("privileged", "baseline", "restricted")
LABEL = "pod-security.kubernetes.io/"
# policy/check_capabilities_baseline.go: what a baseline pod may add.
_BASELINE_CAPABILITIES = {
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
}
# policy/check_restrictedVolumes.go: the volume types a restricted pod may use.
_RESTRICTED_VOLUMES = (
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
)


def _join_quote(items) -> str:
    """policy/helpers.go joinQuote."""
    return '"' + '", "'.join(items) + '"' if items else ""


def _containers(name_word: str, names: list) -> str:
    """policy/helpers.go pluralize + joinQuote: `container "a"` or `containers "a", "b"`."""
    return f"{name_word if len(names) == 1 else name_word + 's'} {_join_quote(names)}"


def _every_container(spec: dict) -> list[dict]:
    """policy/visitor.go visitContainers: init containers, then containers (ephemeral ones too)."""
    return [
        *(spec.get("initContainers") or []),
        *(spec.get("containers") or []),
        *(spec.get("ephemeralContainers") or []),
    ]


def _sc(container: dict) -> dict:
    return container.get("securityContext") or {}


# --- baseline ---


def _privileged(spec):  # policy/check_privileged.go
    bad = [c["name"] for c in _every_container(spec) if _sc(c).get("privileged") is True]
    return bad and ("privileged", f"{_containers('container', bad)} must not set securityContext.privileged=true")


def _host_namespaces(spec):  # policy/check_hostNamespaces.go
    used = sorted(k for k in ("hostNetwork", "hostPID", "hostIPC") if spec.get(k))
    return used and ("host namespaces", ", ".join(used))


def _host_path(spec):  # policy/check_hostPathVolumes.go
    bad = [v["name"] for v in spec.get("volumes") or [] if "hostPath" in v]
    return bad and ("hostPath volumes", f"{'volume' if len(bad) == 1 else 'volumes'} {_join_quote(bad)}")


def _host_ports(spec):  # policy/check_hostPorts.go
    bad, ports = [], []
    for c in _every_container(spec):
        found = [str(p["hostPort"]) for p in c.get("ports") or [] if p.get("hostPort")]
        if found:
            bad.append(c["name"])
            ports += found
    ports = sorted(set(ports))  # a sets.String's List()
    return bad and (
        "hostPort",
        f"{_containers('container', bad)} {'uses' if len(bad) == 1 else 'use'} "
        f"{'hostPort' if len(ports) == 1 else 'hostPorts'} {', '.join(ports)}",
    )


def _capabilities_baseline(spec):  # policy/check_capabilities_baseline.go
    bad, added = [], set()
    for c in _every_container(spec):
        extra = [a for a in (_sc(c).get("capabilities") or {}).get("add") or [] if a not in _BASELINE_CAPABILITIES]
        if extra:
            bad.append(c["name"])
            added.update(extra)
    return bad and (
        "non-default capabilities",
        f"{_containers('container', bad)} must not include {_join_quote(sorted(added))} in "
        "securityContext.capabilities.add",
    )


# --- restricted ---


def _allow_privilege_escalation(spec):  # policy/check_allowPrivilegeEscalation.go:60-80
    bad = [c["name"] for c in _every_container(spec) if _sc(c).get("allowPrivilegeEscalation") is not False]
    return bad and (
        "allowPrivilegeEscalation != false",
        f"{_containers('container', bad)} must set securityContext.allowPrivilegeEscalation=false",
    )


def _capabilities_restricted(spec):  # policy/check_capabilities_restricted.go:72-129
    missing, adding, added = [], [], set()
    for c in _every_container(spec):
        capabilities = _sc(c).get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            missing.append(c["name"])
        extra = [a for a in capabilities.get("add") or [] if a != "NET_BIND_SERVICE"]
        if extra:
            adding.append(c["name"])
            added.update(extra)
    details = []
    if missing:
        details.append(f'{_containers("container", missing)} must set securityContext.capabilities.drop=["ALL"]')
    if adding:
        details.append(
            f"{_containers('container', adding)} must not include {_join_quote(sorted(added))} in "
            "securityContext.capabilities.add"
        )
    return details and ("unrestricted capabilities", "; ".join(details))


def _restricted_volumes(spec):  # policy/check_restrictedVolumes.go
    bad, kinds = [], set()
    for volume in spec.get("volumes") or []:
        kind = next((k for k in volume if k != "name"), "")
        if kind not in _RESTRICTED_VOLUMES:
            bad.append(volume["name"])
            kinds.add(kind)
    return bad and (
        "restricted volume types",
        f"{'volume' if len(bad) == 1 else 'volumes'} {_join_quote(bad)} "
        f"{'uses' if len(bad) == 1 else 'use'} restricted volume "
        f"{'type' if len(kinds) == 1 else 'types'} {_join_quote(sorted(kinds))}",
    )


def _pod_or_containers(spec, key: str, good) -> tuple[list, list, set]:
    """The shape runAsNonRoot and seccompProfile share: the pod sets a good value, or every
    container does. (bad setters, containers left unset without a good pod value, bad values)."""
    pod_value = (spec.get("securityContext") or {}).get(key)
    setters, explicit, implicit, values = [], [], [], set()
    if pod_value is not None and not good(pod_value):
        setters.append("pod")
        values.add(str(pod_value.get("type")) if isinstance(pod_value, dict) else str(pod_value))
    for c in _every_container(spec):
        value = _sc(c).get(key)
        if value is None:
            if pod_value is None or not good(pod_value):
                implicit.append(c["name"])
        elif not good(value):
            explicit.append(c["name"])
            values.add(str(value.get("type")) if isinstance(value, dict) else str(value))
    if explicit:
        setters.append(_containers("container", explicit))
    return setters, implicit, values


def _run_as_non_root(spec):  # policy/check_runAsNonRoot.go:61-133
    setters, implicit, _ = _pod_or_containers(spec, "runAsNonRoot", lambda v: v is True)
    if setters:
        return "runAsNonRoot != true", f"{' and '.join(setters)} must not set securityContext.runAsNonRoot=false"
    return implicit and (
        "runAsNonRoot != true",
        f"pod or {_containers('container', implicit)} must set securityContext.runAsNonRoot=true",
    )


def _run_as_user(spec):  # policy/check_runAsUser.go
    setters = ["pod"] if (spec.get("securityContext") or {}).get("runAsUser") == 0 else []
    bad = [c["name"] for c in _every_container(spec) if _sc(c).get("runAsUser") == 0]
    if bad:
        setters.append(_containers("container", bad))
    return setters and ("runAsUser=0", f"{' and '.join(setters)} must not set runAsUser=0")


def _seccomp_restricted(spec):  # policy/check_seccompProfile_restricted.go:62-137
    setters, implicit, values = _pod_or_containers(
        spec, "seccompProfile", lambda p: (p or {}).get("type") in ("RuntimeDefault", "Localhost")
    )
    if setters:
        return "seccompProfile", (
            f"{' and '.join(setters)} must not set securityContext.seccompProfile.type to {_join_quote(sorted(values))}"
        )
    return implicit and (
        "seccompProfile",
        f"pod or {_containers('container', implicit)} must set "
        'securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost"',
    )


# File order within each level, as registry.go runs them.
BASELINE = (_capabilities_baseline, _host_namespaces, _host_path, _host_ports, _privileged)
RESTRICTED = (
    _allow_privilege_escalation,
    _capabilities_restricted,
    _restricted_volumes,
    _run_as_non_root,
    _run_as_user,
    _seccomp_restricted,
)
# Checks marked Overlap (registry.go): restricted replaces them with its own (capabilities by
# capabilities_restricted, hostPath by restrictedVolumes).
_OVERLAPPED = (_capabilities_baseline, _host_path)


def evaluate(level: str, spec: dict) -> str:
    """The aggregated forbidden detail for a pod spec at a level; "" when it is allowed."""
    if level == "privileged":
        return ""
    checks = [c for c in BASELINE if level == "baseline" or c not in _OVERLAPPED]
    if level == "restricted":
        checks += RESTRICTED
    found = [result for check in checks if (result := check(spec))]
    return ", ".join(f"{reason} ({detail})" if detail else reason for reason, detail in found)


def policy(labels: dict, mode: str) -> str:
    """`level:version` for a mode (enforce, audit, warn); privileged:latest when unlabelled.
    An unknown level fails closed to restricted for enforce, open for audit and warn."""
    level = (labels or {}).get(f"{LABEL}{mode}", "privileged")
    if level not in LEVELS:
        level = "restricted" if mode == "enforce" else "privileged"
    version = (labels or {}).get(f"{LABEL}{mode}-version", "latest")
    return f"{level}:{version}"


def admit_pod(labels: dict, pod: dict) -> None:
    """Enforce mode for a pod create: 403 Forbidden with the real wording."""
    enforce = policy(labels, "enforce")
    detail = evaluate(enforce.split(":")[0], pod.get("spec") or {})
    if detail:
        name = pod["metadata"]["name"]
        raise ApiError(
            403,
            f'pods "{name}" is forbidden: violates PodSecurity "{enforce}": {detail}',
            details={"name": name, "kind": "pods"},
        )


def pod_controller_warnings(labels: dict, obj: dict) -> list[str]:
    """Warn mode for a workload (Deployment): never refused, warned per the warn label."""
    warn = policy(labels, "warn")
    template = ((obj.get("spec") or {}).get("template") or {}).get("spec")
    if template is None:
        return []
    detail = evaluate(warn.split(":")[0], template)
    return [f'would violate PodSecurity "{warn}": {detail}'] if detail else []
