def banner(request):
    """Every page says so when it talks to the local stand-ins instead of the providers.

    The app is installed only while DISCORD_EMULATOR is on; base.html includes
    whatever site_banner names, without knowing of stand-ins.
    """
    return {"site_banner": "standin/banner.html"}
