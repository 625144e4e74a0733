// The socket helper's reconnect, resume and backoff logic against a fake WebSocket and
// fake timers (node --test, on the compiled dist/: `npm test` builds first).
import assert from "node:assert/strict";
import { test } from "node:test";

import { backoffDelayMs, connectDriverSocket, connectRiderSocket } from "../dist/index.js";

class FakeWebSocket {
  static instances = [];
  constructor(url) {
    this.url = new URL(url);
    this.readyState = 0;
    this.sent = [];
    this.closedWith = null;
    this.onopen = this.onmessage = this.onclose = this.onerror = null;
    FakeWebSocket.instances.push(this);
  }
  send(data) {
    assert.equal(this.readyState, 1, "send on a socket that is not open");
    this.sent.push(JSON.parse(data));
  }
  close(code, reason) {
    this.readyState = 3;
    this.closedWith = { code, reason };
  }
  // What the server side does.
  serverOpens() {
    this.readyState = 1;
    this.onopen?.({});
  }
  serverSends(frame) {
    this.onmessage?.({ data: JSON.stringify(frame) });
  }
  serverCloses(code, reason = "") {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }
}

function fakeTimers() {
  const pending = [];
  return {
    pending,
    setTimeout: (callback, ms) => {
      const timer = { callback, ms };
      pending.push(timer);
      return timer;
    },
    clearTimeout: (timer) => {
      const at = pending.indexOf(timer);
      if (at >= 0) pending.splice(at, 1);
    },
    runNext() {
      const timer = pending.shift();
      assert.ok(timer, "no timer pending");
      timer.callback();
      return timer.ms;
    },
  };
}

// The helper resolves the token before opening (it may be a function): let that settle.
const settle = () => new Promise((resolve) => setImmediate(resolve));

function setup(connect, extra = {}) {
  FakeWebSocket.instances = [];
  const timers = fakeTimers();
  const socket = connect({
    baseUrl: "https://api.example",
    token: "tok",
    WebSocket: FakeWebSocket,
    random: () => 1, // no jitter below the exponential value: delays are exact
    setTimeout: timers.setTimeout,
    clearTimeout: timers.clearTimeout,
    ...extra,
  });
  return { socket, timers, last: () => FakeWebSocket.instances.at(-1) };
}

test("connects to the rider socket with the token in the query string", async () => {
  const { socket, last } = setup(connectRiderSocket);
  await settle();
  assert.equal(last().url.protocol, "wss:");
  assert.equal(last().url.pathname, "/v1/riders/ws");
  assert.equal(last().url.searchParams.get("token"), "tok");
  assert.equal(last().url.searchParams.has("last_event_id"), false);
  socket.close();
});

test("resumes after a drop with the last event id seen, and types frames by type", async () => {
  const { socket, timers, last } = setup(connectRiderSocket);
  const seen = [];
  socket.on("trip.updated", (frame) => seen.push(frame.trip.status));
  await settle();
  last().serverOpens();
  last().serverSends({ event_id: 4, type: "trip.updated", trip: { status: "assigned" } });
  last().serverSends({ type: "driver.location", trip_id: "t", lat: 1, lng: 2, eta_s: null });
  last().serverSends({ event_id: 5, type: "trip.updated", trip: { status: "arrived" } });
  assert.deepEqual(seen, ["assigned", "arrived"]);
  assert.equal(socket.lastEventId, 5);

  last().serverCloses(1006);
  assert.equal(timers.pending.length, 1);
  timers.runNext();
  await settle();
  assert.equal(FakeWebSocket.instances.length, 2);
  assert.equal(last().url.searchParams.get("last_event_id"), "5");
  socket.close();
});

test("after a resync the lower ids that follow are the resume point", async () => {
  const { socket, timers, last } = setup(connectRiderSocket, { lastEventId: 40 });
  await settle();
  assert.equal(last().url.searchParams.get("last_event_id"), "40");
  last().serverOpens();
  last().serverSends({ type: "resync", detail: "event ids restarted; refetch state" });
  last().serverSends({ event_id: 1, type: "trip.updated", trip: { status: "requested" } });
  last().serverCloses(1011);
  timers.runNext();
  await settle();
  assert.equal(last().url.searchParams.get("last_event_id"), "1");
  socket.close();
});

test("backs off exponentially up to the cap, and starts over once frames arrive", async () => {
  const { socket, timers, last } = setup(connectRiderSocket, {
    backoff: { initialMs: 100, factor: 2, maxMs: 1000 },
  });
  await settle();
  const delays = [];
  for (let i = 0; i < 6; i++) {
    last().serverCloses(1006); // refused at once: no frame, the backoff keeps growing
    delays.push(timers.runNext());
    await settle();
  }
  assert.deepEqual(delays, [100, 200, 400, 800, 1000, 1000]);

  last().serverOpens();
  last().serverSends({ type: "ok", ref: 1 });
  last().serverCloses(1012);
  assert.equal(timers.runNext(), 100);
  socket.close();
});

test("jitter keeps delays between half and all of the exponential value", () => {
  assert.equal(backoffDelayMs(3, { initialMs: 100 }, () => 0), 400);
  assert.equal(backoffDelayMs(3, { initialMs: 100 }, () => 1), 800);
  assert.equal(backoffDelayMs(20, {}, () => 1), 30_000);
  assert.equal(backoffDelayMs(0, { initialMs: 100, jitter: 1 }, () => 0), 0);
});

test("4401 and 4403 end the socket: no reconnection", async () => {
  for (const code of [4401, 4403]) {
    const { socket, timers, last } = setup(connectRiderSocket);
    const closes = [];
    socket.onClose((info) => closes.push(info));
    await settle();
    last().serverOpens();
    last().serverSends({ type: "error", code: "token-expired", detail: "expired" });
    last().serverCloses(code, "token-expired");
    assert.equal(timers.pending.length, 0);
    assert.deepEqual(closes, [{ code, reason: "token-expired", willReconnect: false }]);
    assert.equal(FakeWebSocket.instances.length, 1);
    socket.close();
  }
});

test("close() stops a pending reconnection", async () => {
  const { socket, timers, last } = setup(connectRiderSocket);
  await settle();
  last().serverCloses(1006);
  assert.equal(timers.pending.length, 1);
  socket.close();
  assert.equal(timers.pending.length, 0);
  assert.equal(FakeWebSocket.instances.length, 1);
});

test("a driver that was online is put back online after a reconnection", async () => {
  const { socket, timers, last } = setup(connectDriverSocket);
  await settle();
  assert.equal(last().url.pathname, "/v1/drivers/ws");
  assert.equal(socket.send({ type: "status", status: "online", id: 1 }), false); // not open yet
  last().serverOpens();
  assert.deepEqual(last().sent, [{ type: "status", status: "online" }]);
  assert.equal(socket.send({ type: "location", lat: 40.7, lng: -73.9 }), true);

  last().serverCloses(1006);
  timers.runNext();
  await settle();
  last().serverOpens();
  assert.deepEqual(last().sent, [{ type: "status", status: "online" }]);

  socket.send({ type: "status", status: "offline" });
  last().serverCloses(1006);
  timers.runNext();
  await settle();
  last().serverOpens();
  assert.deepEqual(last().sent, []);
  socket.close();
});

test("a frame that is not JSON is reported, not thrown, and the socket carries on", async () => {
  const { socket, last } = setup(connectRiderSocket);
  const errors = [];
  const frames = [];
  socket.onError((error) => errors.push(error));
  socket.onFrame((frame) => frames.push(frame.type));
  await settle();
  last().serverOpens();
  last().onmessage({ data: "not json" });
  last().serverSends({ type: "ok", ref: 2 });
  assert.equal(errors.length, 1);
  assert.deepEqual(frames, ["ok"]);
  socket.close();
});
