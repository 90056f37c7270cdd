"""Forms parse what the browser sends; the services decide whether it is acceptable."""
from decimal import Decimal, InvalidOperation

from django import forms

from billing.models import Enforcement as SpendEnforcement
from tenants.models import Hardware, Quota, Scope
from workers.models import KeepAlive


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
    # Empty: one CPU instance, and the batch size the service derives from the model.
    instances = forms.IntegerField(min_value=1, max_value=32767, required=False)
    hardware = forms.ChoiceField(choices=Hardware.choices, required=False)
    max_batch_size = forms.IntegerField(min_value=0, max_value=2**31 - 1, required=False, label="Max batch size")


class DeploymentSettingsForm(forms.Form):
    """A deployment's scaling and batching settings, all of them at once. The service checks
    how they fit together and against the plan."""

    min_instances = forms.IntegerField(min_value=0, max_value=32767, label="Min instances",
                                       help_text="0 lets it scale to zero when idle")
    max_instances = forms.IntegerField(min_value=1, max_value=32767, label="Max instances")
    replicas = forms.IntegerField(min_value=1, label="Replicas", help_text="Triton servers it runs on while warm")
    keepalive = forms.ChoiceField(choices=KeepAlive.choices, label="Keep-alive")
    keepalive_idle_s = forms.IntegerField(min_value=1, label="Idle seconds before unloading",
                                          help_text="Fixed policy; the adaptive one uses it while it learns")
    max_batch_size = forms.IntegerField(min_value=0, max_value=2**31 - 1, label="Max batch size")
    max_queue_delay_us = forms.IntegerField(min_value=0, label="Max queue delay (µs)")
    preferred_batch_sizes = forms.CharField(required=False, label="Preferred batch sizes", widget=forms.TextInput(
        attrs={"placeholder": "e.g. 4, 8", "autocomplete": "off"}))

    def clean_preferred_batch_sizes(self) -> list[int]:
        parts = [part.strip() for part in self.cleaned_data["preferred_batch_sizes"].split(",") if part.strip()]
        try:
            return [int(part) for part in parts]
        except ValueError:
            raise forms.ValidationError("Enter whole numbers separated by commas, e.g. 4, 8.") from None


class ScopeLimitsForm(forms.ModelForm):
    """The limits of one deployment or API key; an empty field is no limit of its own.
    Bound to a fresh Quota only so that the model's ranges are checked: the view saves
    through the quota service, never through this form."""

    class Meta:
        model = Quota
        # Pairs on the page: a rate and its burst, the two sizes, each budget and what happens when it runs out.
        fields = ("rate_per_second", "rate_burst", "max_concurrency", "max_payload_bytes", "monthly_requests",
                  "monthly_requests_enforcement", "monthly_compute_seconds", "monthly_compute_enforcement")
        labels = {
            "rate_per_second": "Requests per second", "rate_burst": "Burst", "max_concurrency": "In flight at once",
            "monthly_requests": "Requests per month", "monthly_requests_enforcement": "When reached",
            "monthly_compute_seconds": "Compute seconds per month", "monthly_compute_enforcement": "When reached",
            "max_payload_bytes": "Largest request body (bytes)",
        }


class ApiKeyForm(forms.Form):
    label = forms.CharField(max_length=120, widget=forms.TextInput(attrs={
        "placeholder": "e.g. production backend", "autocomplete": "off"}))
    scopes = forms.MultipleChoiceField(choices=Scope.choices, widget=forms.CheckboxSelectMultiple,
                                       initial=[Scope.INFER])


class SpendLimitForm(forms.Form):
    """The monthly spend limit as typed. Only the shape is checked here; billing.spend decides
    whether the amount is allowed (its cents, and the most the admins allow)."""

    amount = forms.CharField(required=False, max_length=20, label="Monthly spend limit",
                             help_text="Empty: no limit.",
                             widget=forms.TextInput(attrs={"inputmode": "decimal", "placeholder": "no limit",
                                                           "autocomplete": "off"}))
    enforcement = forms.ChoiceField(choices=SpendEnforcement.choices, label="When it is reached")

    def clean_amount(self):
        text = self.cleaned_data["amount"].strip().replace(",", "")
        if not text:
            return None
        try:
            amount = Decimal(text)
        except InvalidOperation:
            amount = None
        if amount is None or not amount.is_finite():
            raise forms.ValidationError("Give an amount such as 250 or 99.50, or leave it empty for no limit.")
        return amount
