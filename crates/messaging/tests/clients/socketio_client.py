"""Drives python-socketio's client for the gateway tests: one JSON command per line on
stdin, one JSON line per thing that happened on stdout (as socketio-client.mjs does).

Commands: {"op":"connect","id","url","namespace","auth","transports"?},
{"op":"emit","id","event","payload","ack"?}, {"op":"close","id"}.
"""

import json
import sys
import threading

import socketio

clients = {}
lock = threading.Lock()


def out(line):
    with lock:
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()


def connect(command):
    ident = command["id"]
    namespace = command.get("namespace", "/")
    client = socketio.Client(reconnection=False)
    clients[ident] = (client, namespace)

    @client.on("connect", namespace=namespace)
    def on_connect():
        out({"id": ident, "event": "connect", "transport": client.transport()})

    @client.on("connect_error", namespace=namespace)
    def on_connect_error(data):
        out({"id": ident, "event": "connect_error", "data": data})

    @client.on("disconnect", namespace=namespace)
    def on_disconnect(*reason):
        out({"id": ident, "event": "disconnect"})

    @client.on("*", namespace=namespace)
    def on_any(event, *args):
        out({"id": ident, "event": event, "args": list(args)})

    try:
        client.connect(
            command["url"],
            namespaces=[namespace],
            auth=command.get("auth"),
            transports=command.get("transports"),
            wait_timeout=10,
        )
    except socketio.exceptions.ConnectionError as error:
        out({"id": ident, "event": "connect_failed", "message": str(error)})


def emit(command):
    client, namespace = clients[command["id"]]
    if command.get("ack"):
        answer = client.call(command["event"], command.get("payload"), namespace=namespace, timeout=10)
        out({"id": command["id"], "event": "ack", "ack": command["ack"], "args": [answer]})
    else:
        client.emit(command["event"], command.get("payload"), namespace=namespace)


for text in sys.stdin:
    command = json.loads(text)
    if command["op"] == "connect":
        connect(command)
    elif command["op"] == "emit":
        threading.Thread(target=emit, args=(command,), daemon=True).start()
    elif command["op"] == "close":
        clients[command["id"]][0].disconnect()
for client, _ in clients.values():
    client.disconnect()
