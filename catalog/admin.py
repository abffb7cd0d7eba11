"""The admin: sources with the lifecycle as actions (through the services), the log read-only."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import FieldDoesNotExist, ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.text import capfirst

from catalog import services
from catalog.models import DeliveryStatus, Source, SourceEvent, parse_source_id, project_today


class DeliveryStatusFilter(admin.SimpleListFilter):
    """Filter on the delivery status, which is computed when read and never stored."""

    title = "delivery status"
    parameter_name = "delivery_status"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return list(DeliveryStatus.choices)

    def queryset(self, request: HttpRequest, queryset: QuerySet[Source]) -> QuerySet[Source]:
        # delivery_status_on as conditions on current_update, against the project's today.
        today = project_today()
        lookups = {
            DeliveryStatus.RECEIVED: {"current_update": today},
            DeliveryStatus.AWAITING: {"current_update__gt": today},
            DeliveryStatus.DELAYED: {"current_update__lt": today},
            DeliveryStatus.UNKNOWN: {"current_update__isnull": True},
        }
        value = self.value()
        return queryset.filter(**lookups[value]) if value in lookups else queryset


class SourceIdFilter(admin.SimpleListFilter):
    """Filter the change log on one source, whose id is typed in or followed from a link.

    A text box rather than a list of choices: the log names every source that ever existed.
    """

    title = "source id"
    parameter_name = "source_id"
    template = "admin/catalog/text_filter.html"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return []

    def has_output(self) -> bool:
        return True

    def queryset(self, request: HttpRequest, queryset: QuerySet[SourceEvent]) -> QuerySet[SourceEvent]:
        value = (self.value() or "").strip()
        if not value:
            return queryset
        source_id = parse_source_id(value)
        # No UUID names no source, as `source(id)` answers null in the API.
        return queryset.filter(source_id=source_id) if source_id is not None else queryset.none()

    def choices(self, changelist: ChangeList) -> Iterator[dict[str, Any]]:
        yield {
            "selected": not (self.value() or "").strip(),
            "query_string": changelist.get_query_string(remove=[self.parameter_name]),
            "value": self.value() or "",
            # The form replaces the query string: it carries the other filters, search and order.
            "other_params": [
                (name, value)
                for name, values in changelist.filter_params.items()
                if name != self.parameter_name
                for value in values
            ],
        }


def _transition_action(
    service: Callable[..., Source], name: str, description: str
) -> Callable[[admin.ModelAdmin, HttpRequest, QuerySet[Source]], None]:
    def action(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Source]) -> None:
        done = 0
        # One service call per source, each its own transaction: a refused transition changes
        # and publishes nothing for that source, and does not undo the others.
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


_TEXT_FIELDS = ("country", "data_vendor", "panel", "panel_group", "scope_of_subscription", "data_type", "granularity")
_DATES = ("end_date", "current_update", "next_update")
_COMPUTED = ("delivery_status", "next_status")
_RECORD = (
    "id",
    "version",
    "first_activated_at",
    "last_activated_at",
    "last_deactivated_at",
    "created_at",
    "updated_at",
    "change_log",
)


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
        "updated_at",
    )
    list_filter = ("status", "country", "data_vendor", "panel_group", DeliveryStatusFilter)
    search_fields = ("country", "data_vendor", "panel", "data_type", "created_by", "id")
    search_help_text = "Country, vendor, panel, data type, who created it, or the id (whole or in part)."
    readonly_fields = (*_COMPUTED, *_RECORD)
    actions = (
        _transition_action(services.source_activate, "activate_sources", "Activate"),
        _transition_action(services.source_deactivate, "deactivate_sources", "Deactivate"),
        _transition_action(services.source_reactivate, "reactivate_sources", "Reactivate"),
    )

    def get_fieldsets(self, request: HttpRequest, obj: Source | None = None) -> list[tuple[str | None, dict]]:
        if obj is None:  # nothing computed or recorded exists before the source does
            return [(None, {"fields": ("created_by", *_TEXT_FIELDS, *_DATES, "status")})]
        return [
            (None, {"fields": ("created_by", *_TEXT_FIELDS)}),
            ("Delivery", {"fields": (*_DATES, *_COMPUTED)}),
            (
                "Lifecycle",
                {
                    "fields": ("status", *_RECORD),
                    "description": "The status changes only through the actions of the list of sources "
                    "(activate, deactivate, reactivate), which check the lifecycle.",
                },
            ),
        ]

    def get_readonly_fields(self, request: HttpRequest, obj: Source | None = None) -> tuple[str, ...]:
        # A source may be created INACTIVE, as addSource allows; that is no transition. After
        # that the status changes only through the actions, which call the services that
        # check the lifecycle, and who created it is fixed, as in updateSource.
        return (*self.readonly_fields, "status", "created_by") if obj is not None else self.readonly_fields

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        return {"created_by": request.user.get_username(), **super().get_changeform_initial_data(request)}

    @admin.display(description="delivery status", ordering="current_update")
    def delivery_status(self, source: Source) -> str:
        return source.delivery_status.label

    @admin.display(description="next status", ordering="next_update")
    def next_status(self, source: Source) -> str:
        return source.next_status

    @admin.display(description="change log")
    def change_log(self, source: Source) -> SafeString:
        changes = SourceEvent.objects.filter(source_id=source.pk).count()
        url = reverse("admin:catalog_sourceevent_changelist")
        return format_html('<a href="{}?source_id={}">{} change(s)</a>', url, source.pk, changes)


@admin.register(SourceEvent)
class SourceEventAdmin(admin.ModelAdmin):
    list_display = ("sequence", "occurred_at", "kind", "source_link", "source_name", "version", "actor")
    list_filter = ("kind", SourceIdFilter)
    search_fields = ("source_id", "actor")
    search_help_text = "Source id (whole or in part), or the username of who made the change."
    # Newest first, by commit order: ids and times can disagree with the order changes
    # committed (and were delivered) in, so the list sorts on the sequence only.
    ordering = ("-sequence",)
    sortable_by = ("sequence",)
    fields = ("cursor", "sequence", "kind", "source_detail", "version", "occurred_at", "actor", "snapshot_table")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: SourceEvent | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: SourceEvent | None = None) -> bool:
        return False

    @admin.display(description="source id")
    def source_link(self, event: SourceEvent) -> SafeString:
        title = "Only this source's changes"
        return format_html('<a href="?source_id={}" title="{}">{}</a>', event.source_id, title, event.source_id)

    @admin.display(description="source")
    def source_name(self, event: SourceEvent) -> str:
        source = event.source
        return "(deleted)" if source is None else str(source)

    @admin.display(description="source")
    def source_detail(self, event: SourceEvent) -> SafeString:
        log = format_html(
            '<a href="{}?source_id={}">its change log</a>',
            reverse("admin:catalog_sourceevent_changelist"),
            event.source_id,
        )
        if not Source.objects.filter(pk=event.source_id).exists():
            return format_html("{} (deleted since; {})", event.source_id, log)
        url = reverse("admin:catalog_source_change", args=[event.source_id])
        return format_html('<a href="{}">{}</a> ({})', url, event.source_id, log)

    @admin.display(description="source as this change left it")
    def snapshot_table(self, event: SourceEvent) -> SafeString | str:
        if event.snapshot is None:
            return "None: this change deleted the source."
        rows = ((_label(name), "—" if value is None else value) for name, value in event.snapshot.items())
        return format_html("<table>{}</table>", format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", rows))


def _label(attname: str) -> str:
    try:
        return capfirst(Source._meta.get_field(attname).verbose_name)
    except FieldDoesNotExist:  # a field since removed from the model
        return attname
