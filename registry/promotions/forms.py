"""Forms for the promotion pages. They only parse input; the services decide."""

import re

from django import forms

from . import gates
from .models import Environment

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


class EnvironmentForm(forms.ModelForm):
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
            "request_ttl_hours",
            "webhook_url",
        ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not self.is_bound:
            self.initial["thresholds"] = threshold_lines(self.instance.metric_thresholds)
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
        return cleaned
