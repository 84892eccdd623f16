"""Forms for the deployment pages. They only parse input; the services decide."""

from django import forms


class UndeployForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}),
        max_length=10000,
        help_text="Why the model stops serving; it goes into the audit log.",
    )


class RollbackForm(forms.Form):
    revision = forms.IntegerField(min_value=1, widget=forms.HiddenInput)
    justification = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}),
        max_length=10000,
        help_text="Reviewers read this: the rollback is approved like a promotion.",
    )


class RedeployForm(forms.Form):
    reason = forms.CharField(
        required=False,
        max_length=10000,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Optional: approvers read it where the environment requires approval.",
    )


class StopForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}),
        max_length=10000,
        help_text="Why this cannot wait for approval. The approvers are told at once.",
    )


class CanaryAbortForm(forms.Form):
    reason = forms.CharField(
        required=False,
        max_length=10000,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Optional: it goes into the rollout's reason and the audit log.",
    )
