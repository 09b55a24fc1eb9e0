// The Socket.IO 4 peer of `cargo xtask bench fanout`: the scenario xcore's gateway serves,
// with nothing else. A socket joins a room (`join`, acknowledged); a `send` to the room
// appends the message to a file, then emits it to every socket in the room (the sender's
// too, as xcore delivers to every subscribed member) and acknowledges it to the sender
// with its sequence number and time.
//
// Persistence: one JSON line per message through a write stream opened for appending;
// the message goes out once the stream's callback says the line was handed to the
// operating system (no fsync). There are no accounts, no authorization and no history:
// Socket.IO has none of its own.
//
// PORT (3000) and MESSAGES_FILE (messages.jsonl) configure it.

"use strict";

const fs = require("fs");
const { Server } = require("socket.io");

const port = Number(process.env.PORT || 3000);
const file = fs.createWriteStream(process.env.MESSAGES_FILE || "messages.jsonl", { flags: "a" });
const io = new Server(port, { transports: ["websocket"], serveClient: false });

let seq = 0;

io.on("connection", (socket) => {
  socket.on("join", (room, ack) => {
    socket.join(String(room));
    if (typeof ack === "function") ack();
  });
  socket.on("send", (body, ack) => {
    if (typeof body !== "string") return;
    seq += 1;
    const message = { seq, sender: socket.id, body, ts: new Date().toISOString() };
    file.write(JSON.stringify(message) + "\n", () => {
      // Every socket of the benchmark is in the one room it joined.
      for (const room of socket.rooms) {
        if (room !== socket.id) io.to(room).emit("message", message);
      }
      if (typeof ack === "function") ack({ seq: message.seq, ts: message.ts });
    });
  });
});

console.log(`socket.io listening on ${port}`);
