from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from detectors.api import (
    FaceModelViewSet,
    LabelledClipViewSet,
    ModelRolloutViewSet,
    TrainingJobViewSet,
)
from devices.api import (
    DeploymentViewSet,
    DeviceViewSet,
    EdgeReleaseViewSet,
    RolloutViewSet,
    TelemetryView,
)
from emotions.api import SetReportViewSet
from emotions.comparison.api import ComparisonRunViewSet
from emotions.comparison.views import comparison_page
from emotions.views import (
    report_publish,
    report_rebuild,
    report_share,
    set_report_page,
    shared_report_page,
)
from fanapi import api as fan_api
from festival.api import (
    InvitationViewSet,
    MembershipViewSet,
    MyInvitationViewSet,
    OrganizationViewSet,
)
from festival.authentication import ObtainTokenView, RevokeTokenView, RotateTokenView
from festival.views import healthz, ping
from operations import booth, dashboard
from operations.api import FestivalViewSet
from stages.api import SetViewSet, StageViewSet

router = DefaultRouter()
router.register("organizations", OrganizationViewSet, basename="organization")
router.register("members", MembershipViewSet, basename="membership")
router.register("invitations", InvitationViewSet, basename="invitation")
router.register("my-invitations", MyInvitationViewSet, basename="my-invitation")
router.register("festivals", FestivalViewSet, basename="festival")
router.register("stages", StageViewSet, basename="stage")
router.register("sets", SetViewSet, basename="set")
router.register("devices", DeviceViewSet, basename="device")
router.register("reports", SetReportViewSet, basename="set-report")
router.register("deployments", DeploymentViewSet, basename="deployment")
router.register("rollouts", RolloutViewSet, basename="rollout")
router.register("edge-releases", EdgeReleaseViewSet, basename="edge-release")
router.register("face-models", FaceModelViewSet, basename="face-model")
router.register("face-model-rollouts", ModelRolloutViewSet, basename="face-model-rollout")
router.register("training-jobs", TrainingJobViewSet, basename="training-job")
router.register("labelled-clips", LabelledClipViewSet, basename="labelled-clip")
router.register("comparison-runs", ComparisonRunViewSet, basename="comparison-run")

public_urls = [
    path("festivals/<slug:slug>/live/", fan_api.FanLiveView.as_view(), name="fan-live"),
    path(
        "festivals/<slug:slug>/reports/",
        fan_api.FanSetReportListView.as_view(),
        name="fan-set-reports",
    ),
    path(
        "festivals/<slug:slug>/reports/<int:report_id>/",
        fan_api.FanSetReportDetailView.as_view(),
        name="fan-set-report",
    ),
    path("festivals/", fan_api.FanFestivalListView.as_view(), name="fan-festivals"),
    path("festivals/<slug:slug>/", fan_api.FanFestivalDetailView.as_view(), name="fan-festival"),
    path("festivals/<slug:slug>/stages/", fan_api.FanStageListView.as_view(), name="fan-stages"),
    path("festivals/<slug:slug>/lineup/", fan_api.FanLineupView.as_view(), name="fan-lineup"),
    path(
        "festivals/<slug:slug>/stages/<slug:stage_slug>/timeline/",
        fan_api.FanStageTimelineView.as_view(),
        name="fan-stage-timeline",
    ),
]

dashboard_urls = (
    [
        path("", dashboard.index, name="index"),
        path("<int:festival_id>/", dashboard.festival_page, name="festival"),
        path("<int:festival_id>/data.json", dashboard.festival_data, name="festival-data"),
        path("<int:festival_id>/reports/", dashboard.festival_reports, name="festival-reports"),
    ],
    "dashboard",
)

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="dashboard:index"), name="home"),
    path("dashboard/", include(dashboard_urls)),
    path("admin/", admin.site.urls),
    # The fan API first: Django tries patterns in order, and the polled /live should not walk the
    # ~100 router patterns before it (no router route starts with "public/").
    path("api/v1/public/", include(public_urls)),
    path("api/v1/", include(router.urls)),
    path("api/v1/telemetry/", TelemetryView.as_view(), name="telemetry"),
    path("api/v1/auth/token/", ObtainTokenView.as_view(), name="api-token"),
    path("api/v1/auth/token/rotate/", RotateTokenView.as_view(), name="api-token-rotate"),
    path("api/v1/auth/token/revoke/", RevokeTokenView.as_view(), name="api-token-revoke"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("screen/<str:key>/", booth.stage_screen, name="stage-screen"),
    path("screen/<str:key>/data.json", booth.stage_screen_data, name="stage-screen-data"),
    path("healthz", healthz, name="healthz"),
    path("ping", ping, name="ping"),
    path("reports/<int:report_id>/", set_report_page, name="set-report-page"),
    path("reports/<int:report_id>/publish/", report_publish, name="set-report-publish"),
    path("reports/<int:report_id>/rebuild/", report_rebuild, name="set-report-rebuild"),
    path("reports/<int:report_id>/share/", report_share, name="set-report-share"),
    path("shared/reports/<str:key>/", shared_report_page, name="shared-report-page"),
    path("comparisons/<int:run_id>/", comparison_page, name="comparison-page"),
]

admin.site.site_header = "StagePulse organizers"
admin.site.site_title = "StagePulse"
admin.site.index_title = "Festivals, lineup and cameras"
