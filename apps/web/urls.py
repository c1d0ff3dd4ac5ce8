from django.urls import path

from apps.web import views

urlpatterns = [
    path("", views.home, name="home"),
    path("runs/<int:run_id>/", views.run_detail, name="run-page"),
]
