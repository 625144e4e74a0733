// The rider and driver sockets (docs/websocket.md): connect with the token in the query
// string (browsers cannot set headers on a WebSocket), remember the last `event_id` seen,
// and after a drop reconnect with exponential backoff and jitter, resuming with
// `?last_event_id=` so the server replays what was missed (or sends `resync`). A driver
// who had gone online is put back online on every reconnection.
import type {
  DriverClientFrame,
  DriverServerFrame,
  RiderClientFrame,
  RiderServerFrame,
} from "./generated/frames.js";
import { resolveToken, type TokenSource } from "./client.js";

// Handler types written as methods are compared bivariantly, so the DOM's own WebSocket
// (whose handlers take a MessageEvent / CloseEvent) is a WebSocketConstructor.
type Handler<E> = { bivarianceHack(event: E): void }["bivarianceHack"];

/** What the helper needs of a WebSocket: the browser's, `ws`'s, or a fake in tests. */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: Handler<unknown> | null;
  onmessage: Handler<{ data: unknown }> | null;
  onclose: Handler<{ code: number; reason: string }> | null;
  onerror: Handler<unknown> | null;
}

export type WebSocketConstructor = new (url: string) => WebSocketLike;

/** WebSocket.OPEN: the same number everywhere. */
const OPEN = 1;

/**
 * Close codes after which reconnecting cannot help: 4401 (no valid token: not
 * authenticated, expired or revoked) and 4403 (wrong role, member suspended, removed or
 * not found). Get a new token (or stop) instead.
 */
export const FINAL_CLOSE_CODES: ReadonlySet<number> = new Set([4401, 4403]);

export interface BackoffOptions {
  /** Delay before the first reconnection attempt (default 500 ms). */
  initialMs?: number;
  /** The cap: no delay is longer (default 30 000 ms). */
  maxMs?: number;
  /** Growth per failed attempt (default 2). */
  factor?: number;
  /**
   * Fraction of each delay that is random (default 0.5: a delay lies between half and
   * all of the exponential value), so phones dropped together do not return together.
   */
  jitter?: number;
}

/**
 * The delay before reconnection attempt `attempt` (0 for the first): `initialMs ·
 * factor^attempt`, capped at `maxMs`, of which the `jitter` fraction is random.
 */
export function backoffDelayMs(
  attempt: number,
  options: BackoffOptions = {},
  random: () => number = Math.random,
): number {
  const initial = options.initialMs ?? 500;
  const max = options.maxMs ?? 30_000;
  const factor = options.factor ?? 2;
  const jitter = Math.min(Math.max(options.jitter ?? 0.5, 0), 1);
  const exponential = Math.min(max, initial * factor ** Math.max(0, attempt));
  return Math.round(exponential * (1 - jitter) + exponential * jitter * random());
}

export interface CloseInfo {
  code: number;
  reason: string;
  /** Whether the helper will connect again (false after close() or a 4401/4403). */
  willReconnect: boolean;
  /** When it will, after how long. */
  delayMs?: number;
}

export interface SocketOptions {
  /**
   * The api's origin, `https://…` or `wss://…` (`http` becomes `ws`, `https` `wss`).
   */
  baseUrl: string;
  /** The bearer token (or a function returning the current one, called per connection). */
  token: TokenSource;
  /**
   * Resume after this event id on the first connection (e.g. kept from a previous run of
   * the app). Later connections use the last event id this helper saw.
   */
  lastEventId?: number;
  backoff?: BackoffOptions;
  /** The WebSocket constructor; default the global one (browsers, Node.js ≥ 22). */
  WebSocket?: WebSocketConstructor;
  /** Source of randomness for the jitter (tests). */
  random?: () => number;
  /** Timers (tests). */
  setTimeout?: (callback: () => void, ms: number) => unknown;
  clearTimeout?: (handle: unknown) => void;
}

type FrameOfType<F, T> = Extract<F, { type: T }>;

/** A socket that reconnects and resumes by itself; `S` is what the server sends, `C` what it takes. */
export class CoopSocket<S extends { type: string }, C extends { type: string }> {
  private readonly path: string;
  private readonly options: SocketOptions;
  private readonly WebSocketCtor: WebSocketConstructor;
  private socket: WebSocketLike | null = null;
  private attempt = 0;
  private timer: unknown = null;
  private stopped = true;
  private generation = 0;
  private readonly frameHandlers = new Set<(frame: S) => void>();
  private readonly typedHandlers = new Map<string, Set<(frame: S) => void>>();
  private readonly openHandlers = new Set<() => void>();
  private readonly closeHandlers = new Set<(info: CloseInfo) => void>();
  private readonly errorHandlers = new Set<(error: unknown) => void>();
  /** The last `event_id` received: the resume point of the next connection. */
  lastEventId: number | undefined;

  constructor(path: string, options: SocketOptions) {
    this.path = path;
    this.options = options;
    this.lastEventId = options.lastEventId;
    const ctor =
      options.WebSocket ??
      (typeof WebSocket === "undefined" ? undefined : WebSocket);
    if (ctor === undefined) {
      throw new Error("no global WebSocket here: pass one as the WebSocket option");
    }
    this.WebSocketCtor = ctor;
  }

  /** Whether a connection is open now. */
  get connected(): boolean {
    return this.socket !== null && this.socket.readyState === OPEN;
  }

  /** Connect (and keep reconnecting after drops until close()). */
  connect(): this {
    if (!this.stopped) return this;
    this.stopped = false;
    this.attempt = 0;
    void this.open();
    return this;
  }

  /** Close for good: no reconnection. */
  close(code = 1000, reason = "client closed"): void {
    this.stopped = true;
    this.generation++;
    this.clearTimer();
    const socket = this.socket;
    this.socket = null;
    if (socket) {
      socket.onopen = socket.onmessage = socket.onclose = socket.onerror = null;
      socket.close(code, reason);
      this.emitClose({ code, reason, willReconnect: false });
    }
  }

  /**
   * Send a frame. Returns false (and sends nothing) while disconnected: frames are not
   * queued, since a late `accept` or `location` is worse than none.
   */
  send(frame: C): boolean {
    this.remember(frame);
    if (!this.socket || this.socket.readyState !== OPEN) return false;
    this.socket.send(JSON.stringify(frame));
    return true;
  }

  /** Every frame the server sends. Returns a function that removes the handler. */
  onFrame(handler: (frame: S) => void): () => void {
    this.frameHandlers.add(handler);
    return () => this.frameHandlers.delete(handler);
  }

  /** Frames of one `type`, narrowed. Returns a function that removes the handler. */
  on<T extends S["type"]>(type: T, handler: (frame: FrameOfType<S, T>) => void): () => void {
    let handlers = this.typedHandlers.get(type);
    if (!handlers) this.typedHandlers.set(type, (handlers = new Set()));
    const untyped = handler as (frame: S) => void;
    handlers.add(untyped);
    return () => handlers.delete(untyped);
  }

  onOpen(handler: () => void): () => void {
    this.openHandlers.add(handler);
    return () => this.openHandlers.delete(handler);
  }

  onClose(handler: (info: CloseInfo) => void): () => void {
    this.closeHandlers.add(handler);
    return () => this.closeHandlers.delete(handler);
  }

  /** A frame that was not JSON, a handler that threw, a token function that failed. */
  onError(handler: (error: unknown) => void): () => void {
    this.errorHandlers.add(handler);
    return () => this.errorHandlers.delete(handler);
  }

  /** Hook for subclasses: a frame about to be sent (the driver socket remembers `status`). */
  protected remember(_frame: C): void {}

  /** Hook for subclasses: frames to send first on every new connection. */
  protected greeting(): C[] {
    return [];
  }

  private async url(): Promise<string> {
    const base = this.options.baseUrl.replace(/\/+$/, "").replace(/^http/, "ws");
    const url = new URL(base + this.path);
    const token = await resolveToken(this.options.token);
    if (token) url.searchParams.set("token", token);
    if (this.lastEventId !== undefined) {
      url.searchParams.set("last_event_id", String(this.lastEventId));
    }
    return url.toString();
  }

  private async open(): Promise<void> {
    const generation = ++this.generation;
    let url: string;
    try {
      url = await this.url();
    } catch (error) {
      this.emitError(error);
      if (generation === this.generation && !this.stopped) this.scheduleReconnect(1006, "no token");
      return;
    }
    if (generation !== this.generation || this.stopped) return;
    const socket = new this.WebSocketCtor(url);
    this.socket = socket;
    socket.onopen = () => {
      if (socket !== this.socket) return;
      for (const frame of this.greeting()) socket.send(JSON.stringify(frame));
      for (const handler of this.openHandlers) this.call(handler);
    };
    socket.onmessage = (event) => {
      if (socket !== this.socket) return;
      this.receive(event.data);
    };
    socket.onerror = (event) => {
      if (socket === this.socket) this.emitError(event);
    };
    socket.onclose = (event) => {
      if (socket !== this.socket) return;
      this.socket = null;
      if (FINAL_CLOSE_CODES.has(event.code)) {
        this.stopped = true;
        this.emitClose({ code: event.code, reason: event.reason, willReconnect: false });
        return;
      }
      this.scheduleReconnect(event.code, event.reason);
    };
  }

  private receive(data: unknown): void {
    let frame: S;
    try {
      const text = typeof data === "string" ? data : new TextDecoder().decode(data as ArrayBuffer);
      frame = JSON.parse(text) as S;
    } catch (error) {
      this.emitError(error);
      return;
    }
    if (typeof frame !== "object" || frame === null || typeof frame.type !== "string") {
      this.emitError(new Error("a frame without a string type"));
      return;
    }
    // A frame was received: the connection works, so the next drop starts the backoff
    // from the beginning again (an open that is refused at once does not reset it).
    this.attempt = 0;
    const eventId = (frame as { event_id?: unknown }).event_id;
    // The last one seen, not the highest: after a mid-connection `resync` ("event ids
    // restarted") ids continue from a lower number, and the next resume must use those.
    if (typeof eventId === "number" && Number.isInteger(eventId)) this.lastEventId = eventId;
    for (const handler of this.frameHandlers) this.call(handler, frame);
    for (const handler of this.typedHandlers.get(frame.type) ?? []) this.call(handler, frame);
  }

  private scheduleReconnect(code: number, reason: string): void {
    const delayMs = backoffDelayMs(this.attempt, this.options.backoff, this.options.random);
    this.attempt++;
    this.emitClose({ code, reason, willReconnect: true, delayMs });
    if (this.stopped) return; // a close handler called close()
    const setTimer = this.options.setTimeout ?? ((cb: () => void, ms: number) => setTimeout(cb, ms));
    this.timer = setTimer(() => {
      this.timer = null;
      if (!this.stopped) void this.open();
    }, delayMs);
  }

  private clearTimer(): void {
    if (this.timer === null) return;
    const clearTimer =
      this.options.clearTimeout ??
      ((handle: unknown) => clearTimeout(handle as ReturnType<typeof setTimeout>));
    clearTimer(this.timer);
    this.timer = null;
  }

  private call<A extends unknown[]>(handler: (...args: A) => void, ...args: A): void {
    try {
      handler(...args);
    } catch (error) {
      this.emitError(error);
    }
  }

  private emitClose(info: CloseInfo): void {
    for (const handler of this.closeHandlers) this.call(handler, info);
  }

  private emitError(error: unknown): void {
    for (const handler of this.errorHandlers) {
      try {
        handler(error);
      } catch {
        // An error handler that throws has nowhere left to report to.
      }
    }
  }
}

/** `GET /v1/riders/ws`: trip updates and the driver's position; only `ack` goes up. */
export class RiderSocket extends CoopSocket<RiderServerFrame, RiderClientFrame> {
  constructor(options: SocketOptions) {
    super("/v1/riders/ws", options);
  }
}

/** `GET /v1/drivers/ws`: offers, trip events, fare votes and demand maps. */
export class DriverSocket extends CoopSocket<DriverServerFrame, DriverClientFrame> {
  private online = false;

  constructor(options: SocketOptions) {
    super("/v1/drivers/ws", options);
  }

  /** Whether the driver last asked to be online (re-sent on every reconnection). */
  get wantsOnline(): boolean {
    return this.online;
  }

  protected override remember(frame: DriverClientFrame): void {
    if (frame.type === "status") this.online = frame.status === "online";
  }

  protected override greeting(): DriverClientFrame[] {
    // When its last socket closes a driver goes offline, and reconnecting alone does not
    // bring it back (docs/websocket.md, "Drivers: presence follows the socket").
    return this.online ? [{ type: "status", status: "online" }] : [];
  }
}

export function connectRiderSocket(options: SocketOptions): RiderSocket {
  return new RiderSocket(options).connect();
}

export function connectDriverSocket(options: SocketOptions): DriverSocket {
  return new DriverSocket(options).connect();
}
