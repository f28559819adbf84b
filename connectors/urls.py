from django.contrib.auth import views as auth_views
from django.urls import path
from django.views.generic import RedirectView

from . import views

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="accounts"), name="home"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/", views.accounts, name="accounts"),
    path("accounts/<int:pk>/disconnect", views.disconnect, name="account-disconnect"),
    path("auth/<slug:provider>/connect", views.connect, name="oauth-connect"),
    path("auth/<slug:provider>/callback", views.callback, name="oauth-callback"),
]
