"""The admin: sources with the lifecycle as actions (through the services), the log read-only."""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest

from catalog import services
from catalog.models import DeliveryStatus, Source, SourceEvent, project_today


class DeliveryStatusFilter(admin.SimpleListFilter):
    title = "delivery status"
    parameter_name = "delivery_status"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return list(DeliveryStatus.choices)

    def queryset(self, request: HttpRequest, queryset: QuerySet[Source]) -> QuerySet[Source]:
        today = project_today()
        lookups = {
            DeliveryStatus.RECEIVED: {"current_update": today},
            DeliveryStatus.AWAITING: {"current_update__gt": today},
            DeliveryStatus.DELAYED: {"current_update__lt": today},
            DeliveryStatus.UNKNOWN: {"current_update__isnull": True},
        }
        value = self.value()
        return queryset.filter(**lookups[value]) if value in lookups else queryset


def _transition_action(
    service: Callable[..., Source], name: str, description: str
) -> Callable[[admin.ModelAdmin, HttpRequest, QuerySet[Source]], None]:
    def action(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Source]) -> None:
        done = 0
        for source in queryset:
            try:
                service(actor=request.user.get_username(), source_id=source.pk)
            except ValidationError as error:
                modeladmin.message_user(request, f"{source}: {' '.join(error.messages)}", messages.ERROR)
            else:
                done += 1
        if done:
            modeladmin.message_user(request, f"{description}: {done} source(s).", messages.SUCCESS)

    action.__name__ = name
    return admin.action(description=f"{description} selected sources", permissions=["change"])(action)


@admin.register(Source)
class SourceAdmin(admin.ModelAdmin):
    list_display = (
        "data_vendor",
        "country",
        "panel",
        "panel_group",
        "status",
        "delivery_status",
        "next_status",
        "version",
        "created_at",
    )
    list_filter = ("status", "country", "data_vendor", "panel_group", DeliveryStatusFilter)
    search_fields = ("country", "data_vendor", "panel", "data_type", "created_by")
    readonly_fields = ("id", "created_at", "updated_at", "delivery_status", "next_status", "version")
    actions = (
        _transition_action(services.source_activate, "activate_sources", "Activate"),
        _transition_action(services.source_deactivate, "deactivate_sources", "Deactivate"),
        _transition_action(services.source_reactivate, "reactivate_sources", "Reactivate"),
    )

    def get_readonly_fields(self, request: HttpRequest, obj: Source | None = None) -> tuple[str, ...]:
        # After creation the status changes only through the actions, which check the lifecycle.
        return (*self.readonly_fields, "status") if obj is not None else self.readonly_fields


@admin.register(SourceEvent)
class SourceEventAdmin(admin.ModelAdmin):
    list_display = ("occurred_at", "kind", "source_id", "version", "actor")
    list_filter = ("kind",)
    search_fields = ("source_id", "actor")
    readonly_fields = ("id", "source_id", "kind", "version", "occurred_at", "actor", "snapshot")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: SourceEvent | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: SourceEvent | None = None) -> bool:
        return False
