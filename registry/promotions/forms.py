"""Forms for the promotion pages. They only parse input; the services decide."""

import re

from django import forms

from . import canary_plan, gates
from .models import Environment, RolloutStrategy

_THRESHOLD_LINE = re.compile(r"^(?P<metric>[^\s<>=]+)\s*(?P<op>>=|<=|==|>|<)\s*(?P<value>\S+)\Z")


def parse_threshold_lines(text: str) -> list[dict]:
    """ "accuracy >= 0.92" per line -> [{"metric": "accuracy", "op": ">=", "value": 0.92}]."""
    rules = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        match = _THRESHOLD_LINE.match(line)
        if match is None:
            raise forms.ValidationError(
                f"Line {number} “{line}”: write each threshold as metric op value, e.g. accuracy >= 0.92."
            )
        rule = match.groupdict()
        try:
            rules.extend(gates.validate_thresholds([rule]))
        except ValueError as exc:
            reason = str(exc).removeprefix("Threshold 1: ")
            raise forms.ValidationError(f"Line {number} “{line}”: {reason}") from None
    return rules


def threshold_lines(rules: list[dict]) -> str:
    return "\n".join(f"{r['metric']} {r['op']} {float(r['value']):g}" for r in rules or [])


class PromotionRequestForm(forms.Form):
    environment = forms.ModelChoiceField(queryset=Environment.objects.all(), empty_label=None)
    justification = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4}),
        max_length=10000,
        help_text="Why this version should go there; reviewers read this first.",
    )
    breaking_change = forms.BooleanField(
        required=False,
        label="This is a breaking change",
        help_text="Tick if clients of the live version must change their inputs.",
    )


class ReviewForm(forms.Form):
    comment = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False, max_length=10000)


class CancelForm(forms.Form):
    reason = forms.CharField(required=False, max_length=10000)


class CommentForm(forms.Form):
    body = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), label="Comment", max_length=10000)
    reply_to = forms.IntegerField(required=False, widget=forms.HiddenInput)


class AsOfForm(forms.Form):
    model = forms.CharField(max_length=1000)
    at = forms.DateTimeField(
        label="At",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S"],
    )


# The settings page's fields for the canary analysis -> the plan's settings they carry.
CANARY_ANALYSIS_FIELDS = {
    "canary_min_requests": "min_requests",
    "canary_max_error_rate_increase_pp": "max_error_rate_increase_pp",
    "canary_max_p95_ratio": "max_p95_ratio",
    "canary_max_error_rate_pct": "max_error_rate_pct",
    "canary_max_p95_ms": "max_p95_ms",
    "canary_inconclusive": "inconclusive",
}


def parse_canary_fields(strategy: str, steps_text: str, analysis: dict) -> tuple[dict, dict[str, str]]:
    """The settings page's canary fields -> (the plan as stored, {form field: error}).
    ``canary_plan.parse`` decides; its errors are put under the field that carries the value,
    a step's by its line (“Line 2 “10 % for 10 min”: weight must be greater than …”)."""
    lines = [(number, line.strip()) for number, line in enumerate(steps_text.splitlines(), start=1) if line.strip()]
    steps = []
    for number, line in lines:
        try:
            steps.append(canary_plan.parse_step_line(line))
        except ValueError as exc:
            return {}, {"canary_steps": f"Line {number} “{line}”: {exc}."}
    data = {"steps": steps, "analysis": {k: v for k, v in analysis.items() if v not in (None, "")}} if steps else {}
    try:
        return canary_plan.clean_policy(strategy, data), {}
    except canary_plan.PlanError as exc:
        parts = exc.path.split(".")
        if parts[1:2] == ["analysis"] and len(parts) == 3:
            field = next(f for f, key in CANARY_ANALYSIS_FIELDS.items() if key == parts[2])
            return {}, {field: exc.problem[:1].upper() + exc.problem[1:] + "."}
        if exc.path.startswith("canary_plan.steps[") and len(parts) == 3:
            number, line = lines[int(parts[1].removeprefix("steps[").removesuffix("]"))]
            return {}, {"canary_steps": f"Line {number} “{line}”: {parts[2]} {exc.problem}."}
        if exc.path == "canary_plan" and not steps:
            return {}, {"canary_steps": "A canary rollout needs at least one step, e.g. 10 % for 5 min."}
        return {}, {"canary_steps": f"{exc}."}


class EnvironmentForm(forms.ModelForm):
    rollout_strategy = forms.ChoiceField(
        label="Rollout strategy",
        choices=RolloutStrategy.choices,
        help_text="All at once replaces the live version in one go. A canary gives the new version a slice of "
        "the traffic step by step, judged against the live one at the end of each step.",
    )
    canary_steps = forms.CharField(
        label="Canary steps",
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "10 % for 5 min\n50 % for 10 min"}),
        help_text="One per line: the canary's share of the traffic (1 to 99 %, rising) and how long it holds "
        "(s, min or h). After the last step the new version takes all the traffic.",
    )
    canary_min_requests = forms.IntegerField(
        label="Canary requests needed per step",
        required=False,
        help_text="With fewer, the step is inconclusive.",
    )
    canary_inconclusive = forms.ChoiceField(
        label="When a step is inconclusive",
        required=False,
        choices=[("wait", "Wait for more requests"), ("pass", "Pass the step"), ("fail", "Fail the step")],
    )
    canary_max_error_rate_increase_pp = forms.FloatField(
        label="Error rate at most the live version's plus (percentage points)", required=False
    )
    canary_max_p95_ratio = forms.FloatField(label="p95 latency at most the live version's times", required=False)
    canary_max_error_rate_pct = forms.FloatField(
        label="Error rate ceiling (%)", required=False, help_text="Fails a step whatever the live version does."
    )
    canary_max_p95_ms = forms.FloatField(
        label="p95 latency ceiling (ms)", required=False, help_text="Fails a step whatever the live version does."
    )
    thresholds = forms.CharField(
        label="Metric thresholds",
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "accuracy >= 0.92"}),
        help_text="One per line: metric op value, with op one of >=, >, <=, <, ==.",
    )
    new_webhook_secret = forms.CharField(
        label="New webhook secret",
        required=False,
        max_length=200,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Leave empty to keep the current secret. It is never shown again once saved.",
    )
    clear_webhook_secret = forms.BooleanField(label="Remove the webhook secret", required=False)
    policy_reason = forms.CharField(
        label="Why the policy changes",
        required=False,
        max_length=10000,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="On a protected environment a policy change waits for a second admin, who reads this.",
    )
    webhook_url = forms.URLField(
        label="Webhook URL",
        required=False,
        max_length=200,
        assume_scheme="https",
        help_text="Receives a signed POST for every promotion event here.",
    )

    class Meta:
        model = Environment
        fields = [
            "name",
            "position",
            "alias",
            "protected",
            "required_approvals",
            "approver_group",
            "allow_self_approval",
            "require_previous",
            "require_signature",
            "require_compatible_signature",
            "require_servable",
            "rollout_strategy",
            "request_ttl_hours",
            "webhook_url",
        ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.is_bound and "rollout_strategy" not in self.data:
            # A post that does not name the strategy (a script written before canaries) keeps it.
            self.data = self.data.copy()
            self.data["rollout_strategy"] = self.instance.rollout_strategy
        if not self.is_bound:
            self.initial["thresholds"] = threshold_lines(self.instance.metric_thresholds)
            try:
                plan = canary_plan.parse(self.instance.canary_plan) if self.instance.canary_plan else None
            except canary_plan.PlanError:  # only a row written around the services: start afresh
                plan = None
            self.initial["canary_steps"] = canary_plan.step_lines(plan)
            analysis = (plan.analysis if plan else canary_plan.Analysis()).to_dict()
            for name, key in CANARY_ANALYSIS_FIELDS.items():
                self.initial[name] = analysis[key]
        if self.instance.pk and self.instance.spans.exists():
            # Versions are live under this alias: renaming it would orphan them in MLflow.
            self.fields["alias"].disabled = True
            self.fields["alias"].help_text = "Fixed: versions have been live under this alias."

    def clean_name(self):
        name = self.cleaned_data["name"]
        if name == "new":
            raise forms.ValidationError("'new' is reserved for the create page; choose another name.")
        return name

    def clean_thresholds(self):
        return parse_threshold_lines(self.cleaned_data.get("thresholds") or "")

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("protected") and cleaned.get("allow_self_approval"):
            self.add_error("allow_self_approval", "A protected environment cannot allow self-approval.")
        if cleaned.get("new_webhook_secret") and cleaned.get("clear_webhook_secret"):
            self.add_error("clear_webhook_secret", "Either set a new secret or remove it, not both.")
        if "rollout_strategy" in cleaned and not any(name in self.errors for name in CANARY_ANALYSIS_FIELDS):
            plan, errors = parse_canary_fields(
                cleaned["rollout_strategy"],
                cleaned.get("canary_steps") or "",
                {key: cleaned.get(name) for name, key in CANARY_ANALYSIS_FIELDS.items()},
            )
            for name, error in errors.items():
                self.add_error(name, error)
            cleaned["canary_plan"] = plan
        return cleaned

    def save(self, commit=True):
        # The plan is built from several fields (clean), not one model field.
        self.instance.canary_plan = self.cleaned_data["canary_plan"]
        return super().save(commit)
