from django.urls import path
from django.views.generic import RedirectView

from . import views

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="accounts"), name="home"),
    path("accounts/login/", views.LoginView.as_view(), name="login"),
    path("accounts/logout/", views.LogoutView.as_view(), name="logout"),
    path("accounts/signup/", views.signup, name="signup"),
    path("accounts/", views.accounts, name="accounts"),
    path("accounts/<int:pk>/disconnect", views.disconnect, name="account-disconnect"),
    path("accounts/<int:pk>/servers/<str:server_id>/test-message", views.server_message, name="server-test-message"),
    path("auth/<slug:provider>/connect", views.connect, name="oauth-connect"),
    path("auth/<slug:provider>/callback", views.callback, name="oauth-callback"),
    path("webhooks/<slug:provider>/events", views.events, name="provider-events"),
]
