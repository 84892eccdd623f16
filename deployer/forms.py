"""Forms for the deployment pages. They only parse input; the services decide."""

from django import forms


class UndeployForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), max_length=10000,
                             help_text="Why the model stops serving; it goes into the audit log.")


class RollbackForm(forms.Form):
    revision = forms.IntegerField(min_value=1, widget=forms.HiddenInput)
    justification = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), max_length=10000,
                                    help_text="Reviewers read this: the rollback is approved like a promotion.")
