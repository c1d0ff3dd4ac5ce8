"""The pages' URLs; our own checks use `/`, `/login/`, `/datasets/`, `/runs/new/`, `/runs/<id>/`,
`/compare/?runs=<id>,<id>`, `/models/` and `/chat/<model_version_id>/`."""

from django.contrib.auth import views as auth_views
from django.urls import path

from apps.web import views

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="web-login"),
    path("logout/", auth_views.LogoutView.as_view(), name="web-logout"),
    path("signup/", views.signup, name="signup"),
    path("datasets/", views.dataset_list, name="datasets-page"),
    path("datasets/<int:dataset_id>/", views.dataset_detail, name="dataset-page"),
    path("datasets/<int:dataset_id>/samples/<int:index>.png", views.dataset_sample_image, name="dataset-sample"),
    path("datasets/<int:dataset_id>/delete/", views.dataset_delete, name="dataset-delete"),
    path("runs/new/", views.run_new, name="run-new"),
    path("runs/<int:run_id>/", views.run_detail, name="run-page"),
    path("runs/<int:run_id>/cancel/", views.run_cancel, name="run-cancel-page"),
    path("compare/", views.compare, name="compare-page"),
    path("models/", views.model_list, name="models-page"),
    path("models/<int:model_id>/update/", views.model_update, name="model-update-page"),
    path("chat/<int:model_version_id>/", views.chat, name="chat-page"),
]
