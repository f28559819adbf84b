from django.http import Http404


def connect(request, provider):
    raise Http404


def callback(request, provider):
    raise Http404
