"""The Slack connector passes the test kit every connector passes, against the Slack stand-in.

The kit runs with token rotation on, so that refreshes are exercised; two
more flows cover what differs: a long-lived token without rotation, and user
scopes (the account holds the person's token, the workspace the bot's).
"""

import pytest
from django.core import mail
from django.utils import timezone

from connectors.config import config_update
from connectors.models import AccountServer, ConnectedAccount
from connectors.registry import registry
from connectors.tokens import fresh_access_token
from tests.helpers import ConnectorConformance, account_admin_action, slack_harness

SLACK = "appmixer:slack"


class TestSlackConformance(ConnectorConformance):
    @pytest.fixture
    def harness(self, slack_standin):
        slack_standin.app.token_rotation = True
        return slack_harness(slack_standin, registry.get(SLACK))

    def test_a_rotating_bot_token_expires_in_twelve_hours_and_the_workspace_holds_it(self, stored, client_alice):
        self.connect(client_alice, stored)
        account = ConnectedAccount.objects.get()
        assert account.access_token.startswith("xoxe.xoxb-") and account.refresh_token.startswith("xoxe-1-")
        assert 43000 < (account.expires_at - timezone.now()).total_seconds() <= 43200
        server = AccountServer.objects.get(account=account)
        assert (server.server_id, server.name) == ("T0STANDIN01", "Stand-in Workspace")
        assert server.token == account.access_token and server.permission_names == ["chat:write", "channels:read"]

    def test_without_rotation_the_token_is_long_lived_and_used_without_a_call(self, stored, slack_standin,
                                                                              client_alice):
        slack_standin.app.token_rotation = False
        self.connect(client_alice, stored)
        account = ConnectedAccount.objects.get()
        assert account.access_token.startswith("xoxb-") and account.refresh_token == ""
        assert account.expires_at is None
        calls = len(slack_standin.calls)
        assert fresh_access_token(account) == account.access_token
        assert len(slack_standin.calls) == calls
        assert stored.connector.grant_info(account.access_token) == {"scopes": "chat:write channels:read",
                                                                     "expires": ""}

    def test_refresh_now_of_a_token_that_does_not_expire_checks_the_grant_and_marks_nothing(
        self, stored, slack_standin, alice, client_alice, admin_client, api
    ):
        slack_standin.app.token_rotation = False
        alice.email = "alice@example.com"
        alice.save()
        self.connect(client_alice, stored)
        account = ConnectedAccount.objects.get()

        page = account_admin_action(admin_client, "refresh_now", account)

        assert "This token does not expire; nothing to refresh. The grant check passed" in page
        account.refresh_from_db()
        assert account.status == ConnectedAccount.Status.ACTIVE and account.last_error == ""
        assert not mail.outbox
        answer = api.post(f"/api/v1/accounts/{account.pk}/token")
        assert answer.status_code == 200 and answer.json()["access_token"] == account.access_token

    def test_with_user_scopes_the_account_holds_the_persons_token_and_the_workspace_the_bots(
        self, stored, slack_standin, client_alice
    ):
        config_update(service_id=SLACK, values={"userScopes": "search:read,users:read"})
        self.connect(client_alice, stored)
        account = ConnectedAccount.objects.get()
        person, bot = sorted(slack_standin.grants, key=lambda grant: grant.kind != "user")
        assert (person.kind, bot.kind) == ("user", "bot")
        assert account.uid == person.user.id == "U0STANDIN01"
        assert account.access_token == person.access_token and account.access_token.startswith("xoxe.xoxp-")
        assert account.refresh_token == person.refresh_token and account.scopes == "search:read users:read"
        server = AccountServer.objects.get(account=account)
        assert server.token == bot.access_token and server.permission_names == ["chat:write", "channels:read"]
        assert stored.connector.grant_info(account.access_token)["scopes"] == "search:read users:read"

        ConnectedAccount.objects.filter(pk=account.pk).update(expires_at=timezone.now())
        fresh = fresh_access_token(account)
        assert fresh.startswith("xoxe.xoxp-") and slack_standin.access_token_valid(fresh)
        assert slack_standin.count("token.refresh_token") == 1
        assert AccountServer.objects.get(account=account).token == bot.access_token
