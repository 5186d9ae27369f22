"""The face: thin handlers per route, request validation, and response building.

handlers   reads and validates a request, hands it to a driver in :mod:`proxy.cache`
validate   request bodies -> typed requests (:mod:`proxy.requests`), or a 400 that never
           reaches the upstream
responses  JSON bodies with raw headers, OpenAI-format errors, relayed upstream streams
server     uvicorn's HTTP protocol sending a response's head with its first body bytes
"""
