from django import forms

from tenants.models import Scope


class ModelUploadForm(forms.Form):
    name = forms.CharField(max_length=63, help_text="Lowercase letters, digits and hyphens, e.g. digits-classifier")
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    file = forms.FileField(help_text="A self-contained .onnx file")


class DeployForm(forms.Form):
    model_version = forms.IntegerField(widget=forms.HiddenInput)
    name = forms.CharField(max_length=63, required=False, help_text="Defaults to the model name")


class ApiKeyForm(forms.Form):
    label = forms.CharField(max_length=120)
    scopes = forms.MultipleChoiceField(choices=Scope.choices, widget=forms.CheckboxSelectMultiple,
                                       initial=[Scope.INFER])
