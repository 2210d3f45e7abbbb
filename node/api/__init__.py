"""The local API: gRPC services for the node's own clerks and operators (the CLI is the client).

`server` assembles the services on the API port; `auth` checks the bearer token; one module
per service (`admin`, `peering`, `outbox`); `convert` is the only module here that turns domain
objects into the generated protobuf messages; `client` is what the CLI uses.
"""
