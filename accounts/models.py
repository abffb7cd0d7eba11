"""API tokens: how integrators' scripts sign in."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class ApiToken(models.Model):
    """A named credential of one user; only a digest of the secret is stored."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    # The first characters of the secret, enough to tell tokens apart in the admin, never
    # enough to use one.
    prefix = models.CharField(max_length=12, editable=False)
    digest = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name = "API token"
        ordering = ["-created_at"]
        # Here for want of a model of its own: who may read /metrics (graph.metrics).
        permissions = [("view_metrics", "Can read the service's metrics")]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…, {self.user})"
