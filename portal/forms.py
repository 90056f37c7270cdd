"""Forms parse what the browser sends; the services decide whether it is acceptable."""
from django import forms

from tenants.models import Scope


class ModelUploadForm(forms.Form):
    name = forms.CharField(
        max_length=63, help_text="Lowercase letters, digits and hyphens. An existing name gets a new version.",
        widget=forms.TextInput(attrs={"placeholder": "digits-classifier", "autocomplete": "off"}),
    )
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={
        "rows": 2, "placeholder": "What the model does, for your team"}))
    file = forms.FileField(label="ONNX file", help_text="A self-contained .onnx file (weights inside the file).",
                           widget=forms.ClearableFileInput(attrs={"accept": ".onnx"}))


class DeployForm(forms.Form):
    model_version = forms.IntegerField(min_value=1)
    name = forms.CharField(max_length=63, required=False)


class ApiKeyForm(forms.Form):
    label = forms.CharField(max_length=120, widget=forms.TextInput(attrs={
        "placeholder": "e.g. production backend", "autocomplete": "off"}))
    scopes = forms.MultipleChoiceField(choices=Scope.choices, widget=forms.CheckboxSelectMultiple,
                                       initial=[Scope.INFER])
