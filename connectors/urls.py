from django.urls import path

from . import views

urlpatterns = [
    path("auth/<slug:provider>/connect", views.connect, name="oauth-connect"),
    path("auth/<slug:provider>/callback", views.callback, name="oauth-callback"),
]
