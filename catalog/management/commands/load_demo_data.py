"""Load realistic demo sources, each with the change history that real use would leave."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from catalog import services
from catalog.models import Source, SourceEvent, SourceStatus, project_today

ACTOR = "demo"
SEED = 20240521

COUNTRIES = ("France", "Germany", "Italy", "Spain", "United Kingdom", "Belgium", "Netherlands", "Poland")
PANELS_BY_VENDOR = {
    "IQVIA": ("Retail Pharmacy", "Hospital", "Prescriptions"),
    "Nielsen": ("Retail Scan", "Homescan"),
    "GfK": ("Consumer Panel", "Point of Sale"),
    "Kantar": ("Worldpanel", "Media Panel"),
    "Circana": ("Retail Tracking", "Consumer Network"),
}
PANEL_GROUPS = ("DKM", "PharmaScope", "GPI")
GRANULARITIES = ("National", "Regional", "Local")
DATA_TYPES = ("Sales", "Volume", "Prices", "Distribution", "Prescriptions")
SCOPES = ("", "OTC", "Rx", "Consumer Health", "Full market")

# (current_update, next_update) for a day and a random source. Every delivery status and
# every date-based data-library counter needs some ACTIVE sources in one of these shapes.
DeliveryDates = Callable[[date, random.Random], tuple[date | None, date | None]]
DELIVERY_PATTERNS: tuple[DeliveryDates, ...] = (
    # Received today, next delivery scheduled: RECEIVED, pending, completed.
    lambda today, rng: (today, today + timedelta(days=rng.randint(7, 30))),
    # Delivery dated ahead, as vendors sometimes announce: AWAITING, pending.
    lambda today, rng: (
        today + timedelta(days=rng.randint(1, 10)),
        today + timedelta(days=rng.randint(20, 40)),
    ),
    # Overdue: last delivery long ago, next one was due: DELAYED, in progress.
    lambda today, rng: (
        today - timedelta(days=rng.randint(35, 60)),
        today - timedelta(days=rng.randint(1, 7)),
    ),
    # Delivered recently, nothing scheduled: DELAYED, completed.
    lambda today, rng: (today - timedelta(days=rng.randint(2, 20)), None),
    # First delivery due but not received: UNKNOWN, in progress.
    lambda today, rng: (None, today - timedelta(days=rng.randint(1, 10))),
    # Nothing delivered, nothing scheduled: UNKNOWN, unscheduled.
    lambda today, rng: (None, None),
)

# (status at creation, the transitions and edits made afterwards, in order)
LIFECYCLES: tuple[tuple[SourceStatus, tuple[str, ...]], ...] = (
    (SourceStatus.ACTIVE, ()),
    (SourceStatus.ACTIVE, ("update",)),
    (SourceStatus.ACTIVE, ("deactivate",)),
    (SourceStatus.ACTIVE, ("deactivate", "reactivate")),
    (SourceStatus.INACTIVE, ("activate",)),
    (SourceStatus.INACTIVE, ()),
)

_STEPS: dict[str, Callable[..., Source]] = {
    "activate": services.source_activate,
    "deactivate": services.source_deactivate,
    "reactivate": services.source_reactivate,
}


class Command(BaseCommand):
    help = (
        "Load 36 demo sources over several countries and vendors, with every delivery status "
        "and a history of status changes. Does nothing when sources exist, unless --reset."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--reset",
            action="store_true",
            help="Delete every source and change event first, then load the demo data.",
        )

    def handle(self, *args: Any, reset: bool = False, **options: Any) -> None:
        # One transaction: a failure leaves the catalog as it was, and the changes are
        # published (by catalog.signals, on commit) only once all of them are in.
        with transaction.atomic():
            existing = Source.objects.count()
            if existing and not reset:
                self.stdout.write(f"Demo data is already present ({existing} sources); use --reset to reload it.")
                return
            if reset:
                # Deleting sources logs (and publishes) DELETED events; the log goes too,
                # so the reloaded catalog has only the demo history.
                Source.objects.all().delete()
                SourceEvent.objects.all().delete()
            # Seeded on purpose: demo data must be the same on every run, not unpredictable.
            rng = random.Random(SEED)  # noqa: S311
            sources = load_demo_sources(rng, project_today())
        active = sum(source.status == SourceStatus.ACTIVE for source in sources)
        self.stdout.write(
            self.style.SUCCESS(
                f"Loaded {len(sources)} demo sources ({active} active, {len(sources) - active} "
                f"inactive, {SourceEvent.objects.count()} change events)."
            )
        )


def load_demo_sources(rng: random.Random, today: date) -> list[Source]:
    """Create one source per delivery pattern and lifecycle, through the services."""
    plans = list(itertools.product(DELIVERY_PATTERNS, LIFECYCLES))
    rng.shuffle(plans)
    countries = [COUNTRIES[index % len(COUNTRIES)] for index in range(len(plans))]
    rng.shuffle(countries)
    sources = []
    for (dates, (status, steps)), country in zip(plans, countries, strict=True):
        current_update, next_update = dates(today, rng)
        vendor = rng.choice(sorted(PANELS_BY_VENDOR))
        source = services.source_create(
            actor=ACTOR,
            country=country,
            data_vendor=vendor,
            panel=rng.choice(PANELS_BY_VENDOR[vendor]),
            panel_group=rng.choice(PANEL_GROUPS),
            data_type=rng.choice(DATA_TYPES),
            granularity=rng.choice(GRANULARITIES),
            scope_of_subscription=rng.choice(SCOPES),
            end_date=today + timedelta(days=rng.randint(180, 900)),
            current_update=current_update,
            next_update=next_update,
            status=status,
        )
        for step in steps:
            if step == "update":
                # A subscription widened and renewed: a real edit, so always a change.
                granularity = GRANULARITIES[(GRANULARITIES.index(source.granularity) + 1) % 3]
                data = {"granularity": granularity, "end_date": source.end_date + timedelta(days=365)}
                source = services.source_update(actor=ACTOR, source_id=source.pk, data=data)
            else:
                source = _STEPS[step](actor=ACTOR, source_id=source.pk)
        sources.append(source)
    return sources
