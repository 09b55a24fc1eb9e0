// Drives the official Socket.IO client for the gateway tests: one JSON command per line
// on stdin, one JSON line per thing that happened on stdout.
//
// Commands: {"op":"connect","id","url","auth","transports"?}, {"op":"emit","id","event",
// "payload","ack"?}, {"op":"drop","id"} (closes the transport: the client reconnects and
// recovers), {"op":"close","id"}.
import { io } from "socket.io-client";
import readline from "node:readline";

const sockets = new Map();
const out = (line) => process.stdout.write(JSON.stringify(line) + "\n");

readline.createInterface({ input: process.stdin }).on("line", async (text) => {
  const command = JSON.parse(text);
  const { id } = command;
  switch (command.op) {
    case "connect": {
      const socket = io(command.url, {
        auth: command.auth,
        transports: command.transports ?? ["polling", "websocket"],
        forceNew: true,
        reconnectionDelay: 100,
        reconnectionDelayMax: 200,
      });
      sockets.set(id, socket);
      socket.on("connect", () =>
        out({ id, event: "connect", recovered: socket.recovered, transport: socket.io.engine.transport.name }));
      socket.on("connect_error", (error) =>
        out({ id, event: "connect_error", message: error.message, data: error.data ?? null }));
      socket.on("disconnect", (reason) => out({ id, event: "disconnect", reason }));
      socket.io.engine.on("upgrade", (transport) => out({ id, event: "upgrade", transport: transport.name }));
      socket.onAny((event, ...args) => out({ id, event, args }));
      break;
    }
    case "emit": {
      const socket = sockets.get(id);
      if (command.ack) {
        try {
          const answer = await socket.timeout(10000).emitWithAck(command.event, command.payload);
          out({ id, event: "ack", ack: command.ack, args: [answer] });
        } catch (error) {
          out({ id, event: "ack_timeout", ack: command.ack, message: String(error) });
        }
      } else {
        socket.emit(command.event, command.payload);
      }
      break;
    }
    case "drop":
      sockets.get(id).io.engine.close();
      break;
    case "close":
      sockets.get(id).disconnect();
      break;
  }
});
