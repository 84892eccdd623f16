from django import forms


def parse_tag_lines(text: str) -> dict:
    """ "team=search\\nowner = ana" -> {"team": "search", "owner": "ana"}."""
    tags = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise forms.ValidationError(f"Line {number}: write each tag as key=value.")
        tags[key.strip()] = value.strip()
    return tags


def tag_lines(tags: dict) -> str:
    return "\n".join(f"{k}={v}" for k, v in sorted(tags.items()))


class TagsField(forms.CharField):
    widget = forms.Textarea(attrs={"rows": 3, "placeholder": "team=search\nowner=ana"})

    def __init__(self, **kwargs):
        kwargs.setdefault("required", False)
        kwargs.setdefault("help_text", "One key=value per line.")
        super().__init__(**kwargs)

    def clean(self, value):
        return parse_tag_lines(super().clean(value) or "")


class ModelCreateForm(forms.Form):
    name = forms.CharField(max_length=1000, help_text="Letters, digits, '.', '_' and '-'; at most 128 characters.")
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)
    tags = TagsField()


class VersionRegisterForm(forms.Form):
    source = forms.CharField(
        max_length=5000,
        help_text="models:/m-<id>, runs:/<run_id>/model, models:/<name>/<version>, or a URI under an allowed root.",
    )
    run_id = forms.CharField(
        required=False, label="Run id", help_text="Optional for models:/ sources; read from the URI for runs:/ sources."
    )
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)
    tags = TagsField()


class EditForm(forms.Form):
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 4}), required=False)
    tags = TagsField()

    def tag_changes(self, current: dict) -> dict:
        """Tags to set, and None for each tag the user deleted from the box."""
        wanted = self.cleaned_data["tags"]
        changes = {k: v for k, v in wanted.items() if current.get(k) != v}
        changes.update({k: None for k in current if k not in wanted and not k.startswith("modelgate.")})
        return changes
