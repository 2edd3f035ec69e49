"""Alerts: channel types and their settings, what each lifecycle event makes, the messages,
and sending one alert to one channel. The outbox that makes delivery reliable is an adapter's
(``stratoflow.adapters.local.alerts``)."""

from stratoflow.alerts._channels import (
    CHANNEL_TYPES,
    MAX_CHANNELS_PER_GROUP,
    SECRET_REF,
    Channel,
    ChannelType,
    MissingSecret,
    ResolveSecret,
    resolve_refs,
    secret_names,
    validate_channel,
)
from stratoflow.alerts._messages import AlertFacts
from stratoflow.alerts._outbox import MAX_CHANNELS, MAX_GROUPS, Backoff, Delivery, check_group
from stratoflow.alerts._rules import (
    RUN_EVENTS,
    TASK_EVENTS,
    Planned,
    SlaTimer,
    for_event,
    for_sla_miss,
    incident_key,
    planned_test_alert,
    run_link,
    sla_missed,
    sla_timers,
)
from stratoflow.alerts._send import DeliveryError, Sender, Skipped

__all__ = [
    "CHANNEL_TYPES",
    "MAX_CHANNELS",
    "MAX_CHANNELS_PER_GROUP",
    "MAX_GROUPS",
    "RUN_EVENTS",
    "SECRET_REF",
    "TASK_EVENTS",
    "AlertFacts",
    "Backoff",
    "Channel",
    "ChannelType",
    "Delivery",
    "DeliveryError",
    "MissingSecret",
    "Planned",
    "ResolveSecret",
    "Sender",
    "Skipped",
    "SlaTimer",
    "check_group",
    "for_event",
    "for_sla_miss",
    "incident_key",
    "planned_test_alert",
    "resolve_refs",
    "run_link",
    "secret_names",
    "sla_missed",
    "sla_timers",
    "validate_channel",
]
