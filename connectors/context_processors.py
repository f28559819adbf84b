from django.conf import settings


def discord_standin(request):
    """Every page says so when it talks to the local stand-in instead of Discord."""
    return {"discord_standin": settings.DISCORD_EMULATOR}
