"""The CLI's side of the admin API: commands that talk to a running ``semcache serve``.

client    AdminClient: the admin routes over HTTP, errors as one line
commands  ``semcache stats | flush | explain``
display   the admin API's answers as the lines the commands print
warm      ``semcache warm``: prompts sent through the proxy to fill the cache

``semcache doctor`` builds the app in process instead, so it is :mod:`proxy.doctor`, above it.
"""
