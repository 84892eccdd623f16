"""Reads of environments, promotion requests and what was live where, shared by the pages,
the API and the deployer. Views never query the ORM themselves."""

from django.contrib.auth.models import Group
from django.db.models import Exists, OuterRef, Prefetch, Q, QuerySet

from console.accounts.roles import APPROVER
from console.errors import NotFound
from registry.models import ModelVersion

from .models import Comment, Environment, LiveSpan, PolicyChange, PromotionRequest, Review, WebhookDelivery


def environment_get(name: str) -> Environment:
    env = Environment.objects.filter(name=name).first()
    if env is None:
        raise NotFound(f"Environment {name!r} does not exist.")
    return env


def environment_list() -> QuerySet[Environment]:
    """Every environment in path order, approver group loaded."""
    return Environment.objects.select_related("approver_group")


def environments_exist() -> bool:
    return Environment.objects.exists()


def environment_list_with_live() -> list[Environment]:
    """Every environment, each with ``live_now``: the spans serving there now, by model name."""
    environments = list(environment_list())
    live: dict[int, list[LiveSpan]] = {}
    for span in LiveSpan.objects.filter(ended_at__isnull=True).select_related("model").order_by("model__name"):
        live.setdefault(span.environment_id, []).append(span)
    for env in environments:
        env.live_now = live.get(env.pk, [])
    return environments


def previous_environment(env: Environment) -> Environment | None:
    return Environment.objects.filter(position__lt=env.position).order_by("-position").first()


def approver_group(env: Environment) -> Group | None:
    return env.approver_group or Group.objects.filter(name=APPROVER).first()


def is_approver(user, env: Environment) -> bool:
    """The one rule for who may review requests in ``env``: a member of its approver group.
    Superusers and admins are not approvers unless they are in that group."""
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    group = approver_group(env)
    return group is not None and user.groups.filter(pk=group.pk).exists()


def live_span(*, environment: Environment, model, at=None) -> LiveSpan | None:
    """What served ``model`` in ``environment`` at time ``at`` (now if None)."""
    spans = LiveSpan.objects.filter(environment=environment, model=model)
    if at is None:
        return spans.filter(ended_at__isnull=True).first()
    return (
        spans.filter(started_at__lte=at)
        .filter(Q(ended_at__isnull=True) | Q(ended_at__gt=at))
        .order_by("-started_at", "-id")
        .first()
    )


def live_version(span: LiveSpan) -> ModelVersion | None:
    """The mirrored version a live span names (None if the mirror no longer has it)."""
    return ModelVersion.objects.filter(model_id=span.model_id, version=span.version_number).first()


def span_list(*, environment: Environment, model=None) -> QuerySet[LiveSpan]:
    """What was live in ``environment`` (of ``model`` only, if given), newest first."""
    spans = LiveSpan.objects.filter(environment=environment).select_related("model", "request")
    if model is not None:
        spans = spans.filter(model=model)
    return spans.order_by("-started_at", "-id")


def span_model_names(environment: Environment) -> list[str]:
    """The names of the models ever live in ``environment``, sorted."""
    return sorted(set(LiveSpan.objects.filter(environment=environment).values_list("model__name", flat=True)))


def was_live(*, environment: Environment, model, version_number: int) -> bool:
    return LiveSpan.objects.filter(environment=environment, model=model, version_number=version_number).exists()


def request_list(*, state: str = "", environment: str = "", model: str = "", requested_by: str = ""):
    qs = PromotionRequest.objects.select_related("model", "version", "environment", "requested_by")
    if state:
        qs = qs.filter(state=state)
    if environment:
        qs = qs.filter(environment__name=environment)
    if model:
        qs = qs.filter(model__name=model)
    if requested_by:
        qs = qs.filter(requested_by__username=requested_by)
    return qs


def request_get(pk: int, *, discussion: bool = False) -> PromotionRequest:
    """One request with its model, version, environment and requester; with ``discussion``,
    its reviews and comments too (``req.reviews.all()``, ``req.comments.all()``), each with
    its author, in two more queries."""
    qs = request_list()
    if discussion:
        qs = qs.prefetch_related(
            Prefetch("reviews", queryset=Review.objects.select_related("reviewer")),
            Prefetch("comments", queryset=Comment.objects.select_related("author")),
        )
    req = qs.filter(pk=pk).first()
    if req is None:
        raise NotFound(f"Promotion request #{pk} does not exist.")
    return req


def open_request_list() -> QuerySet[PromotionRequest]:
    """Requests still waiting for a decision or for the deployer (those that can be cancelled), newest first."""
    return request_list().filter(state__in=PromotionRequest.CANCELLABLE).order_by("-created_at", "-id")


def _waiting_for(user) -> Q:
    """Pending requests waiting for this user's review: in an environment whose approver group
    the user is in, not requested by them (unless self-approval is allowed there), and not yet
    reviewed by them. The user's groups are read in subqueries, so it costs no query of its own."""
    groups = Group.objects.filter(user=user)
    in_group = Q(environment__approver_group__in=groups.values("id")) | (
        Q(environment__approver_group__isnull=True) & Q(Exists(groups.filter(name=APPROVER)))
    )
    own = Q(requested_by=user) & (Q(environment__allow_self_approval=False) | Q(environment__protected=True))
    reviewed = Q(Exists(Review.objects.filter(request=OuterRef("pk"), reviewer=user)))
    return Q(state=PromotionRequest.PENDING) & in_group & ~own & ~reviewed


def inbox(user):
    """Requests waiting for this user's review (``_waiting_for``), oldest first."""
    return request_list().filter(_waiting_for(user)).order_by("created_at", "id")


def inbox_count(user) -> int:
    """How many requests wait for this user's review, for the navigation: one query."""
    return PromotionRequest.objects.filter(_waiting_for(user)).count()


def aliases_in_motion(model) -> set[str]:
    """Aliases a rollout is moving right now (a request for ``model`` is deploying): MLflow's
    alias moves first and the live span follows a moment later, so in between neither is drift."""
    return set(
        PromotionRequest.objects.filter(model=model, state=PromotionRequest.DEPLOYING).values_list(
            "environment__alias", flat=True
        )
    )


def alias_drift(model) -> list[dict]:
    """Environment aliases that MLflow points somewhere Modelgate did not put them."""
    drifts = []
    live = {s.environment_id: s.version_number for s in LiveSpan.objects.filter(model=model, ended_at__isnull=True)}
    moving = aliases_in_motion(model)
    for env in Environment.objects.all():
        if env.alias in moving:
            continue
        expected = live.get(env.id)
        actual = model.aliases.get(env.alias)
        if actual != expected:
            drifts.append({"environment": env.name, "alias": env.alias, "expected": expected, "actual": actual})
    return drifts


def policy_change_list(environment: Environment) -> QuerySet[PolicyChange]:
    """Policy changes proposed for ``environment``, newest first, with who proposed and decided."""
    return environment.policy_changes.select_related("environment", "proposed_by", "decided_by")


def delivery_list(environment: Environment) -> QuerySet[WebhookDelivery]:
    """Webhook deliveries to ``environment``'s URL, newest first."""
    return WebhookDelivery.objects.filter(environment=environment)
