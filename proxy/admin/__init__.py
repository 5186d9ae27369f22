"""The CLI's side of the admin API: commands that talk to a running ``semcache serve``.

client    AdminClient: the admin routes over HTTP, errors as one line
commands  ``semcache stats | flush | explain``
display   the admin API's answers as the lines the commands print
"""
