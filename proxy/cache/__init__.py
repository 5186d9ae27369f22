"""The rules: what is asked (keys, tenancy), what may be served or stored (policy), and the
drivers that apply them in order for each cached route.

    pipeline    chat completions: exact lookup, semantic lookup, upstream, store
    miss        a chat request on its way upstream, and the copy of an entry's bytes
    embeddings  ``POST /v1/embeddings``, cached per input item
    coalesce    single flight: concurrent identical misses make one upstream call
    keys        tenant namespace + a hash of the canonical request (:mod:`proxy.canonical`)
    policy      cache-control: pure decisions, no I/O
    tenancy     who is asking, and their namespace
    feedback    ``POST /cache/feedback``: a served answer reported wrong
    answers     the responses the drivers and the handlers send: buffered bodies with their
                ``X-Cache`` headers, OpenAI-format errors, upstream answers relayed as they come

It imports the layers below (semantic, upstream, stores) and the shared top-level modules
(the typed requests of :mod:`proxy.requests` among them), never :mod:`proxy.http`.
"""
