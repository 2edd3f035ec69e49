"""Alert channels, alert groups, test alerts and the delivery log (the ``alerts`` routes).

Channel settings hold credentials only as ``{{ secrets.NAME }}`` references, so what these
routes return and what the audit log records never carries a credential: a literal value in
a credential setting is refused with a 400 naming the setting.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Literal, Protocol

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.openapi.params import Query
from pydantic import BaseModel, ConfigDict, Field

from stratoflow.alerts import CHANNEL_TYPES, MAX_CHANNELS_PER_GROUP, validate_channel
from stratoflow.api.models import MAX_ID_CHARS
from stratoflow.api.named_settings import NamedSettings, NamedView, NamePath, register_named
from stratoflow.api.replies import saved
from stratoflow.auth import Action

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from stratoflow.alerts import Channel, Delivery
    from stratoflow.ports import Clock


class AlertConfigStore(Protocol):
    """Channels, groups and the delivery log: the local runtime's ``AlertStore`` or the
    alert table on AWS (``stratoflow.adapters.aws.alerts.DynamoAlertStore``)."""

    def list_channels(self, project: str) -> list[Channel]: ...
    def put_channel(self, channel: Channel, now: datetime) -> bool: ...
    def delete_channel(self, project: str, name: str) -> None: ...
    def list_groups(self, project: str) -> dict[str, list[str]]: ...
    def set_group(
        self, project: str, name: str, channels: Sequence[str], now: datetime
    ) -> bool: ...
    def delete_group(self, project: str, name: str) -> None: ...
    def get(self, key: str, project: str, channel: str) -> Delivery: ...
    def list_deliveries(
        self,
        project: str,
        *,
        run_id: str | None = None,
        status: str | None = None,
        limit: int = 50,
        before: int | None = None,
    ) -> tuple[list[Delivery], int | None]: ...


class AlertsBackend(Protocol):
    """What the routes need of a runtime's alerts (``LocalAlerts``; ``AwsAlertsApi``)."""

    @property
    def store(self) -> AlertConfigStore: ...
    @property
    def clock(self) -> Clock: ...
    def test(self, project: str, group: str) -> list[tuple[str, str]]: ...
    def wait_settled(
        self, rows: Sequence[tuple[str, str]], project: str, timeout: float
    ) -> None: ...


TEST_WAIT_SECONDS = 15.0

AlertProjectQuery = Annotated[
    str, Query(min_length=1, max_length=200, description="The project the alerts belong to.")
]
RunIdQuery = Annotated[
    str | None, Query(min_length=1, max_length=MAX_ID_CHARS, description="Only this run's.")
]
StatusQuery = Annotated[
    Literal["pending", "retrying", "sent", "failed", "skipped"] | None,
    Query(description="Only deliveries in this status."),
]
PageQuery = Annotated[int, Query(ge=1, le=500, description="Page size.")]
CursorQuery = Annotated[
    int | None, Query(ge=1, le=2**62, description="Cursor: the `next` of the previous page.")
]


class ChannelBody(BaseModel):
    """A channel of a project; credentials only as `{{ secrets.NAME }}` references."""

    model_config = ConfigDict(extra="forbid")
    type: str = Field(max_length=32, description=f"One of: {', '.join(CHANNEL_TYPES)}.")
    url: str | None = Field(default=None, max_length=4096, description="The type's URL setting.")
    settings: dict[str, str] = Field(default_factory=dict, max_length=32)


class GroupBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    channels: list[str] = Field(min_length=1, max_length=MAX_CHANNELS_PER_GROUP)


class ChannelView(NamedView):
    pass


class ChannelList(BaseModel):
    channels: list[ChannelView]


class GroupView(BaseModel):
    project: str
    name: str
    channels: list[str]


class GroupList(BaseModel):
    groups: list[GroupView]


class DeliveryView(BaseModel):
    key: str
    project: str
    channel: str
    group: str
    event: str
    workflow: str
    run_id: str | None
    task_id: str | None
    action: str
    subject: str
    status: str
    attempts: int
    next_at: str | None
    last_error: str | None
    created_at: str
    sent_at: str | None


class DeliveryList(BaseModel):
    deliveries: list[DeliveryView]
    next: int | None = Field(description="Pass as ?cursor= to get the next (older) page.")


def _view(d: Delivery) -> DeliveryView:
    return DeliveryView.model_validate(d.view())


def register(
    app: APIGatewayRestResolver,
    alerts: AlertsBackend,
    *,
    allow: Callable[[Action, str, str], Any],
    record: Callable[..., None],
    responses: Callable[..., Any],
) -> None:
    store = alerts.store

    channels: NamedSettings[Channel, ChannelBody] = NamedSettings(
        kind="channel", path="/alerts/channels", tag="alerts",
        audit="alerts.channel", resource="alert-channel", project_query=AlertProjectQuery,
        body=ChannelBody, view=ChannelView, listing=ChannelList,
        summaries={
            "list": "The project's alert channels (credentials shown as their secret references)",
            "put": "Create or replace an alert channel",
            "delete": "Delete an alert channel (refused while a group holds it)",
        },
        items=store.list_channels, delete=store.delete_channel, delete_errors=(404, 409),
        validate=lambda project, name, body: validate_channel(
            project, name, body.type, body.settings, body.url
        ),
        put=lambda channel: store.put_channel(channel, alerts.clock.now()),
    )  # fmt: skip
    register_named(app, channels, allow=allow, record=record, responses=responses)

    @app.get(
        "/alerts/groups",
        summary="The project's alert groups",
        tags=["alerts"],
        responses=responses("The groups", 400),
    )
    def list_groups(project: AlertProjectQuery = "default") -> GroupList:
        allow(Action.READ, project, f"project {project!r}")
        return GroupList(
            groups=[
                GroupView(project=project, name=g, channels=chans)
                for g, chans in store.list_groups(project).items()
            ]
        )

    @app.put(
        "/alerts/groups/<name>",
        summary="Create or replace an alert group: the channels it alerts",
        tags=["alerts"],
        responses=responses("The group, replaced", 400, 404, 415, created="The group, created"),
    )
    def put_group(
        name: NamePath, body: GroupBody, project: AlertProjectQuery = "default"
    ) -> Response[GroupView]:
        allow(Action.ADMINISTER, project, f"project {project!r}")
        created = store.set_group(project, name, body.channels, alerts.clock.now())
        record("alerts.group.put", f"alert-group/{name}", project, channels=body.channels)
        return saved(created, GroupView(project=project, name=name, channels=body.channels))

    @app.delete(
        "/alerts/groups/<name>",
        summary="Delete an alert group",
        tags=["alerts"],
        responses=responses("Deleted", 404),
    )
    def delete_group(name: NamePath, project: AlertProjectQuery = "default") -> dict[str, str]:
        allow(Action.ADMINISTER, project, f"project {project!r}")
        store.delete_group(project, name)
        record("alerts.group.delete", f"alert-group/{name}", project)
        return {"deleted": name}

    @app.post(
        "/alerts/groups/<name>/test",
        summary="Send a test alert to every channel of a group; returns each delivery's status "
        f"after its first try (waits at most {TEST_WAIT_SECONDS:.0f} s)",
        tags=["alerts"],
        responses=responses("The test alert's deliveries", 404),
    )
    def test_group(name: NamePath, project: AlertProjectQuery = "default") -> DeliveryList:
        allow(Action.OPERATE, project, f"project {project!r}")
        rows = alerts.test(project, name)
        alerts.wait_settled(rows, project, TEST_WAIT_SECONDS)
        record("alerts.group.test", f"alert-group/{name}", project)
        return DeliveryList(
            deliveries=[_view(store.get(k, project, c)) for k, c in rows], next=None
        )

    @app.get(
        "/alerts",
        summary="Alerts and each channel's delivery status, newest first",
        tags=["alerts"],
        responses=responses("A page of deliveries; `next` is the cursor of the next", 400),
    )
    def list_alerts(
        project: AlertProjectQuery = "default",
        run_id: RunIdQuery = None,
        status: StatusQuery = None,
        limit: PageQuery = 50,
        cursor: CursorQuery = None,
    ) -> DeliveryList:
        allow(Action.READ, project, f"project {project!r}")
        page, nxt = store.list_deliveries(
            project, run_id=run_id, status=status, limit=limit, before=cursor
        )
        return DeliveryList(deliveries=[_view(d) for d in page], next=nxt)
