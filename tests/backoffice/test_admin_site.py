"""The admin says it is the Backoffice's, not Django's."""


def test_the_admin_is_branded_backoffice(admin_client):
    html = admin_client.get("/admin/").content.decode()

    assert "<title>Administration | Backoffice</title>" in html
    assert '<a href="/admin/">Backoffice</a>' in html
    assert "Django administration" not in html and "Django site admin" not in html
