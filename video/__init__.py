"""Screen-to-screen video between service windows (屏对屏), tied to a case and recorded.

Media (aiortc; knows no storage and no signaling):
    `sources`   what a window sends: test camera and tone, a shared PDF page or image, devices
    `endpoint`  one side of a call: the peer connection, its tracks, counters and timeouts
    `recorder`  both directions into live Matroska, in a thread; `summarize` reads one back
    `ice`       ICE servers from the node configuration

Signaling and storage, at the node:
    `units`, `convert`  the call's messages and events, and their protobuf forms
    `calls`     the call's state at one node, its federation handlers, timers and events
    `cases`     the one question asked of the cases domain: which node holds a case
    `models`, `recordings`  tables, and recordings sealed by SHA-256 into the case file
    `component` the node component (registered in node/components.py)

The window's process:
    `session`   runs one call through the node's local API (`tongban video call` / `answer`)
    `story`     the act `make demo` plays
"""
